"""``pendra --no-ui``: the worker in the foreground, logs to stderr and the rotating log file."""

from __future__ import annotations

import asyncio
import logging

from worker.errors import PendraError

log = logging.getLogger("worker")


def run_headless() -> int:
    """Run until SIGTERM/SIGINT (drain, exit 0). Errors are PendraErrors with their exit codes."""
    from worker.keys import load_worker_key
    from worker.logs import configure_logging, redaction_filter
    from worker.runtime import Worker
    from worker.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, log_dir=settings.logs_dir)
    key = load_worker_key(settings.resolved_key_file)
    redaction_filter().add_secret(key.text)
    log.info(
        "pendra worker starting: control plane %s, worker id %s, models in %s",
        settings.api_url,
        key.worker_id,
        settings.models_dir,
    )
    worker = Worker(settings, key)
    worker.enable_operations()
    try:
        code = asyncio.run(worker.run(handle_signals=True))
    except PendraError as exc:
        log.error("pendra worker stopped: %s", exc.message)  # the CLI prints it with the hint
        raise
    log.info("pendra worker stopped")
    return code

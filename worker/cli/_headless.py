"""``pendra --no-ui``: the worker in the foreground, logs to stderr and the rotating log file."""

from __future__ import annotations

import asyncio
import logging

from worker.errors import PendraError

log = logging.getLogger("worker")


def run_headless() -> int:
    """Run until SIGTERM/SIGINT (drain, exit 0). Errors are PendraErrors with their exit codes."""
    from worker.identity import ensure_worker_id
    from worker.keys import load_configured_key
    from worker.logs import configure_logging, redaction_filter
    from worker.runtime import Worker
    from worker.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, log_dir=settings.logs_dir)
    for warning in settings.warnings:
        log.warning("settings: %s", warning)
    key = load_configured_key(settings)
    for form in key.secret_forms():
        redaction_filter().add_secret(form)
    settings, note = ensure_worker_id(settings)
    if note:
        log.info("%s", note)
    log.info(
        "pendra worker %s (%s) starting: control plane %s, key %s, models in %s",
        settings.worker_name,
        settings.worker_id,
        settings.server_url,
        key.key_id,
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

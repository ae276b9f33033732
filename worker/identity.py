"""The worker's own identity: a stable ``worker_id`` and a friendly ``worker_name``.

``worker_id`` (``WORKER_ID`` / ``worker_id`` in config.yaml) is generated the first time the
worker starts — ``wrk-`` and 12 random hex digits — and saved to config.yaml, so restarts,
re-installs that keep the home, and a new key keep the same id. Several workers may share one
key; each keeps its own id. ``worker_name`` defaults to the host name.

The key's fingerprint (``wk_…``, :attr:`worker.keys.WorkerKey.key_id`) is a different thing: it
names the key, not the machine.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from worker.errors import ConfigError
from worker.settings import Settings, with_values

WORKER_ID_PREFIX = "wrk-"


def new_worker_id() -> str:
    return WORKER_ID_PREFIX + secrets.token_hex(6)


def ensure_worker_id(settings: Settings) -> tuple[Settings, str | None]:
    """Settings with a ``worker_id``: the configured one, or a new one saved to config.yaml.

    Returns the settings and a note for the user when an id was created (or could not be saved:
    then the id lasts only for this run, and the note says how to pin one).
    """
    if settings.worker_id:
        return settings, None
    from worker.config_file import update_config

    worker_id = new_worker_id()
    updated = with_values(settings, worker_id=worker_id)
    try:
        notes = update_config(settings.config_file, {"worker_id": worker_id})
    except ConfigError as exc:
        return updated, (
            f"worker id {worker_id} could not be saved ({exc.message}); it changes on every "
            "start until WORKER_ID is set"
        )
    sources = {**updated.sources, "worker_id": f"worker_id in {settings.config_file}"}
    saved = f"this worker's id is {worker_id} (saved to {settings.config_file})"
    return replace(updated, sources=sources), "; ".join([saved, *notes])

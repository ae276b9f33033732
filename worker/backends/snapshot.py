"""The backends of this machine, found once, for commands that run without a worker.

``pendra backends`` and ``pendra models`` ask the running worker when there is one; otherwise they
use this: the built-in backend (listing the modelstore without loading any model or starting a
watcher) plus one discovery pass over the external kinds, described as in the status document.
"""

from __future__ import annotations

import logging
from typing import Any

from worker.backends.base import Backend
from worker.settings import Settings

log = logging.getLogger(__name__)


async def _one_shot_builtin(settings: Settings) -> Backend | None:
    if not settings.builtin_enabled:
        return None
    try:
        from worker.backends.pendra import PendraBackend
    except ImportError as exc:  # a build without llama-cpp-python
        log.warning("the built-in backend is not available: %s", exc)
        return None
    backend = PendraBackend(settings, watch=False)
    await backend.refresh()
    return backend


async def describe_backends_once(settings: Settings) -> list[dict[str, Any]]:
    """Every backend kind (found, unreachable or disabled) with its models, closed afterwards."""
    from worker.backends.discovery import describe_all, discover_backends

    registry = await discover_backends(settings, builtin=await _one_shot_builtin(settings))
    try:
        return describe_all(registry, settings)
    finally:
        for backend in registry:
            await backend.close()

"""Where the app gets the catalogue: through the running worker, else from the control plane.

The worker fetches the catalogue from the control plane it is connected to and keeps the last good
copy, so asking it shows the catalogue that installs are resolved against, whatever this shell's
settings say (``pendra attach`` in a shell without ``APP_SERVER_WS_URL``, or with another one).
Only when no worker answers (setup before Start, a stopped worker) does the app fetch the
catalogue itself, with this home's cached copy as the offline fallback. A worker that answers but
cannot give a catalogue is an error that says so: the app never shows another control plane's
catalogue behind the back of the worker that will install from it.

The two ways are passed in as callables, so the order and the messages are tested without
sockets; :class:`pendra_tui.services.LiveCatalogue` passes the real ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

WORKER = "worker"
"""The catalogue came from the running worker (fresh, or the worker's cached copy)."""
CONTROL_PLANE = "control plane"
"""No worker answered: the app fetched it (or read this home's cached copy) itself."""

OLD_WORKER_CODE = "not_found"
"""What a worker from before ``GET /v1/catalogue`` answers that route with."""


@dataclass(frozen=True)
class SourcedCatalogue:
    catalogue: Any
    """A ``worker.catalogue.Catalogue``."""
    source: str
    """:data:`WORKER` or :data:`CONTROL_PLANE`."""


async def fetch_catalogue(
    from_worker: Callable[[], Awaitable[Any]],
    from_control_plane: Callable[[], Awaitable[Any]],
) -> SourcedCatalogue:
    """The catalogue through the running worker; from the control plane only when none answers.

    Raises ``PendraError``: the worker's failure, worded as the worker's (:func:`worker_failure`),
    or the control plane's ``CatalogueError`` when no worker runs and no cached copy exists.
    """
    from worker.errors import NoWorkerRunning, PendraError

    try:
        return SourcedCatalogue(await from_worker(), WORKER)
    except NoWorkerRunning:
        pass
    except PendraError as exc:
        if exc.code != OLD_WORKER_CODE:
            raise worker_failure(exc) from None
    return SourcedCatalogue(await from_control_plane(), CONTROL_PLANE)


def worker_failure(error: Any) -> Any:
    """A ``PendraError`` from the worker, said as what it is (pure): the worker could not get the
    catalogue from its control plane (offline with no cached copy), or asking the worker failed
    (a timeout, an unreadable answer, a socket of another user)."""
    from worker.errors import PendraError

    if error.code == "catalogue_error":
        message = f"the running worker could not get it from its control plane: {error.message}"
    else:
        message = f"asking the running worker for it failed: {error.message}"
    return PendraError(message, hint=error.hint)

"""What the admin server needs from the worker: the :class:`AdminTarget` protocol.

``worker.runtime.Worker`` implements it. Each method may be plain or ``async`` (the server awaits
whatever comes back), and may return a dict, a dataclass or anything with ``as_dict()``; the server
turns it into JSON. One method is optional: ``rotate_workload_key()`` (private inference); a target
without it answers that route with ``not_supported``. Errors are
:class:`~worker.errors.PendraError` subclasses: the client re-raises them with their message and
hint.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, runtime_checkable

from worker.events import EventBus

MaybeAwaitable = Any | Awaitable[Any]


@runtime_checkable
class AdminTarget(Protocol):
    events: EventBus

    def status(self) -> MaybeAwaitable:
        """The docs/status.md status document (exactly those keys; more allowed)."""

    def install(self, ref: str, backend: str | None) -> MaybeAwaitable:
        """Start (or join) an install; returns the job (at least ``id`` and ``ref``)."""

    def cancel_install(self, job_id: str) -> MaybeAwaitable:
        """Cancel a running install job."""

    def uninstall(self, ref: str, backend: str | None) -> MaybeAwaitable:
        """Remove a model where its backend allows it."""

    def refresh_backends(self) -> MaybeAwaitable:
        """Re-run discovery now; returns the backends as in the status document."""

    def drain(self) -> MaybeAwaitable:
        """Stop taking new requests, finish the ones in flight."""

    def log_tail(self, n: int) -> MaybeAwaitable:
        """The last ``n`` log lines (already redacted)."""

    def catalogue(self) -> MaybeAwaitable:
        """The catalogue from the worker's control plane (or its cached copy), as
        :func:`worker.catalogue.catalogue_document` gives it."""


# Optional on a target (the server answers without them): ``history_doc()`` (the metrics
# history), ``recent_requests(limit)`` (request metadata, newest first) and ``retry_link()``
# (reconnect to the control plane now).

"""The recent requests this worker served: metadata only, bounded, for the dashboard and the CLI.

The router opens a :class:`RequestTrace` when a request arrives and closes it when the request ends;
:class:`RequestLog` keeps the running ones and the last ``capacity`` finished ones, and publishes a
``"request"`` event at both ends. A record holds what an operator needs to see where time and
tokens go (model, backend, token counts, time to first token, rate, outcome, duration) and
nothing of what was asked or answered: there is no field a prompt or a completion could go in.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.events import EventBus

DEFAULT_CAPACITY = 200
"""Finished requests kept: a few minutes of a busy worker, a day of a quiet one."""

MAX_LISTED = 1000
"""The most records one ``recent()`` call returns."""

MAX_MODEL_CHARS = 128
"""A model name is what the client sent; longer ones are cut so a record stays small."""


def _model_name(model: str) -> str:
    return model if len(model) <= MAX_MODEL_CHARS else model[: MAX_MODEL_CHARS - 1] + "…"


@dataclass
class RequestRecord:
    """One request as the dashboard lists it. Times are seconds; ``started_at`` is Unix time."""

    id: str
    kind: str
    """``chat``, ``embeddings``, ``images`` or ``transcription``."""
    model: str
    stream: bool
    started_at: float
    backend: str | None = None
    status: str = "running"
    """``running``, then ``ok``, ``failed`` or ``cancelled``."""
    error: str | None = None
    """The error code of a failed request (``model_not_found``, ``backend_error`` …), never its
    message: messages can quote the request."""
    tokens_in: int | None = None
    tokens_out: int | None = None
    ttft_s: float | None = None
    """Time to the first generated token (streams only)."""
    duration_s: float | None = None

    @property
    def tokens_per_s(self) -> float | None:
        """Generation rate: output tokens over the time spent generating them (after the first
        token for a stream, the whole request otherwise)."""
        if not self.tokens_out or self.duration_s is None:
            return None
        generating = self.duration_s - (self.ttft_s or 0.0)
        if generating <= 0:
            return None
        return self.tokens_out / generating

    def as_dict(self) -> dict[str, Any]:
        rate = self.tokens_per_s
        return {
            "id": self.id,
            "kind": self.kind,
            "model": self.model,
            "backend": self.backend,
            "stream": self.stream,
            "status": self.status,
            "error": self.error,
            "started_at": round(self.started_at, 3),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "ttft_s": None if self.ttft_s is None else round(self.ttft_s, 4),
            "tokens_per_s": None if rate is None else round(rate, 2),
            "duration_s": None if self.duration_s is None else round(self.duration_s, 4),
        }


@dataclass
class RequestTrace:
    """The open record of one request; the router calls these as the request moves along."""

    record: RequestRecord
    log: RequestLog
    started: float
    """Monotonic clock at the start."""
    _done: bool = field(default=False, repr=False)

    def routed(self, backend: str, model: str | None = None) -> None:
        """The request found its backend (and the model id that backend knows it by)."""
        self.record.backend = backend
        if model:
            self.record.model = _model_name(model)

    def first_token(self) -> None:
        """The first generated token left the backend (called once per stream; later calls are
        ignored)."""
        if self.record.ttft_s is None:
            self.record.ttft_s = max(0.0, self.log.clock() - self.started)

    def finish(
        self,
        status: str,
        *,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        error: str | None = None,
    ) -> None:
        """Close the record once: ``ok``, ``failed`` (with the error code) or ``cancelled``."""
        if self._done:
            return
        self._done = True
        record = self.record
        record.status = status
        record.error = error
        record.tokens_in = tokens_in
        record.tokens_out = tokens_out
        record.duration_s = max(0.0, self.log.clock() - self.started)
        self.log._finished(self)


class RequestLog:
    """Running requests plus the last ``capacity`` finished ones, newest first."""

    def __init__(
        self,
        events: EventBus | None = None,
        *,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.events = events
        self.clock = clock
        self.wall = wall
        self._running: dict[str, RequestTrace] = {}
        self._finished_records: deque[RequestRecord] = deque(maxlen=max(1, capacity))
        self._ids = itertools.count(1)

    def begin(self, kind: str, model: str, *, stream: bool = False) -> RequestTrace:
        record = RequestRecord(
            id=f"r{next(self._ids)}",
            kind=kind,
            model=_model_name(model),
            stream=stream,
            started_at=self.wall(),
        )
        trace = RequestTrace(record, self, self.clock())
        self._running[record.id] = trace
        self._publish(record)
        return trace

    def recent(self, limit: int = DEFAULT_CAPACITY) -> list[dict[str, Any]]:
        """Running requests (oldest first), then finished ones (newest first), at most ``limit``."""
        limit = max(0, min(limit, MAX_LISTED))
        running = [trace.record for trace in self._running.values()]
        finished = list(reversed(self._finished_records))
        return [record.as_dict() for record in (running + finished)[:limit]]

    @property
    def running(self) -> int:
        return len(self._running)

    def _finished(self, trace: RequestTrace) -> None:
        self._running.pop(trace.record.id, None)
        self._finished_records.append(trace.record)
        self._publish(trace.record)

    def _publish(self, record: RequestRecord) -> None:
        if self.events is not None:
            self.events.publish("request", request=record.as_dict())

"""Work inside a runner: the jobs an engine runs, and the outbox their output leaves through.

An engine thread owns the llama.cpp context. A job carries the prepared input (prompt tokens,
sampling parameters, embedding inputs) and a cancel flag the engine checks between steps. Its
output — text deltas, the finish, an error, embedding vectors — is not sent token by token: the
engine appends entries to its :class:`Outbox` and flushes once per step, so one step of eight
generating sequences leaves as one frame.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.backends.pendra import wire
from worker.backends.pendra.params import ChatParams
from worker.errors import PendraError


class Sink(Protocol):
    """Where a runner's output goes: a socket to the worker, or the worker's own event loop."""

    def control(self, message: dict[str, Any]) -> None: ...

    def events(self, entries: list[wire.Entry]) -> None: ...


class Outbox:
    """Entries of the current step (engine thread only); :meth:`flush` sends them in one go."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._entries: list[wire.Entry] = []

    def add(self, job: int, kind: int, payload: Any) -> None:
        self._entries.append((job, kind, payload))

    def flush(self) -> None:
        if self._entries:
            entries, self._entries = self._entries, []
            self.sink.events(entries)


def error_payload(error: BaseException) -> dict[str, Any]:
    if isinstance(error, PendraError):
        return {
            "code": error.code,
            "message": error.message,
            "hint": error.hint,
            "status": error.http_status,
            "param": error.param,
        }
    return {"code": "model_error", "message": str(error) or type(error).__name__, "status": 500}


@dataclass
class Job:
    """Base: identity, the outbox, the cancel flag and the once-only finish."""

    job_id: int
    outbox: Outbox
    on_finish: Callable[[int], None] = lambda _job: None
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: bool = False

    def fail(self, error: BaseException) -> None:
        if self.finished:
            return
        self.outbox.add(self.job_id, wire.ERROR, error_payload(error))
        self._finish()

    def discard(self) -> None:
        """Finish without output: the worker cancelled this job and listens no more."""
        if not self.finished:
            self._finish()

    def _finish(self) -> None:
        self.finished = True
        self.on_finish(self.job_id)


@dataclass
class ChatJob(Job):
    params: ChatParams | None = None
    prompt: list[int] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    max_new: int = 0
    capped: bool = False  # max_tokens was lowered to what fits in the context
    grammar: str | None = None  # GBNF the answer must follow (structured output, tool calls)
    visible: frozenset[int] = frozenset()  # control tokens written as text (tool-call markers)
    cached_tokens: int = 0  # prompt tokens whose KV was reused from an earlier request

    def text(self, text: str) -> None:
        if text:
            self.outbox.add(self.job_id, wire.TEXT, text)

    def token_info(self, info: dict[str, Any]) -> None:
        """Per-token extras (log probabilities), sent before the token's text."""
        self.outbox.add(self.job_id, wire.TOKEN_INFO, info)

    def done(self, finish_reason: str, completion_tokens: int) -> None:
        if self.finished:
            return
        payload: dict[str, Any] = {
            "finish_reason": finish_reason,
            "prompt_tokens": len(self.prompt),
            "completion_tokens": completion_tokens,
            "cached_tokens": self.cached_tokens,
        }
        if self.capped and finish_reason == "length":
            payload["capped_max_tokens"] = self.max_new
        self.outbox.add(self.job_id, wire.DONE, payload)
        self._finish()

    @property
    def reserve(self) -> int:
        """KV cells this job may need at most: its prompt plus its answer budget."""
        return len(self.prompt) + self.max_new


@dataclass
class EmbedJob(Job):
    inputs: list[list[int]] = field(default_factory=list)

    def result(self, vectors: list[list[float]]) -> None:
        if self.finished:
            return
        tokens = sum(len(t) for t in self.inputs)
        self.outbox.add(self.job_id, wire.EMBEDDINGS, wire.Embeddings(vectors, tokens))
        self._finish()

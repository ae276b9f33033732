"""Dispatches OpenAI-shaped requests to the backend that serves the model, and counts them.

The router is the only path from the link (and any local ingress) to the backends. It resolves the
model through the :class:`~worker.backends.registry.BackendRegistry`, enforces the worker's
in-flight cap (``max_concurrent``, across all backends: a request over it is refused at once with
:class:`~worker.errors.WorkerBusy`, 503 ``worker_busy``, which the control plane reads as "send it
elsewhere or later"), bounds how many requests each backend runs at once (the rest wait their
turn, so a burst cannot overload a backend; a backend that bounds each of its models itself,
``admits_itself``, is left to do it), and keeps the counters the status document, heartbeats and
the dashboard show: in flight, served, failed, refused busy and a tokens-per-second rate over a
sliding window. Counter changes are published as ``requests`` events, at most a few times a
second while tokens stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from worker.backends.base import Backend, StreamChunk, TranscriptionRequest
from worker.backends.registry import BackendRegistry
from worker.errors import BadRequest, Cancelled, WorkerBusy
from worker.events import EventBus
from worker.request_check import first_problem
from worker.request_log import RequestLog, RequestTrace
from worker.token_progress import reporting_to

T = TypeVar("T")

DEFAULT_LIMIT = 8
RATE_WINDOW_S = 10.0
PUBLISH_INTERVAL_S = 0.5


@dataclass(frozen=True)
class RequestCounters:
    in_flight: int
    served: int
    failed: int
    cancelled: int
    tokens_total: int
    tokens_per_s: float
    rejected_busy: int = 0
    max_concurrent: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "in_flight": self.in_flight,
            "max_concurrent": self.max_concurrent,
            "served": self.served,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "rejected_busy": self.rejected_busy,
            "tokens_total": self.tokens_total,
            "tokens_per_s": round(self.tokens_per_s, 2),
        }


class TokenRate:
    """Tokens per second over a sliding window; pure apart from the clock it is given."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, int]] = deque()
        self._sum = 0

    def add(self, now: float, tokens: int) -> None:
        self._events.append((now, tokens))
        self._sum += tokens
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        return self._sum / self.window_s

    def _trim(self, now: float) -> None:
        cutoff = now - self.window_s
        while self._events and self._events[0][0] < cutoff:
            self._sum -= self._events.popleft()[1]


def check_stream_flag(body: Mapping[str, Any]) -> None:
    """``stream`` is a JSON boolean (or absent/null): ``"yes"`` or ``1`` is a 400, not coerced."""
    value = body.get("stream")
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"'stream' must be true or false, got {value!r}", param="stream")


def model_of(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest(
            "The request has no model.", hint='add "model": "<id>" (see GET /v1/models)'
        )
    return model


class Router:
    """Routes requests by model id; the in-flight cap; per-backend limits; request counters."""

    def __init__(
        self,
        registry: BackendRegistry,
        events: EventBus | None = None,
        *,
        limits: Mapping[str, int] | None = None,
        default_limit: int = DEFAULT_LIMIT,
        max_in_flight: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.events = events
        self.max_in_flight = max_in_flight
        """The worker's cap on requests in flight across all backends (None: no cap)."""
        self._rejected_busy = 0
        self._limits = dict(limits or {})
        self._default_limit = default_limit
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._clock = clock
        self._rate = TokenRate()
        self._in_flight = 0
        self._served = 0
        self._failed = 0
        self._cancelled = 0
        self._tokens_total = 0
        self._last_publish = 0.0
        self.request_log = RequestLog(events)
        """The recent requests (metadata only) behind the dashboard's requests table."""

    # -- counters --------------------------------------------------------------------------------
    def counters(self) -> RequestCounters:
        return RequestCounters(
            in_flight=self._in_flight,
            served=self._served,
            failed=self._failed,
            cancelled=self._cancelled,
            tokens_total=self._tokens_total,
            tokens_per_s=self._rate.rate(self._clock()),
            rejected_busy=self._rejected_busy,
            max_concurrent=self.max_in_flight,
        )

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _publish(self, force: bool = False) -> None:
        if self.events is None:
            return
        now = self._clock()
        if not force and now - self._last_publish < PUBLISH_INTERVAL_S:
            return
        self._last_publish = now
        self.events.publish("requests", **self.counters().as_dict())

    def _begin(self) -> None:
        """Take an in-flight slot, or refuse at once when the worker is at its cap."""
        cap = self.max_in_flight
        if cap is not None and self._in_flight >= cap:
            self._rejected_busy += 1
            self._publish()
            raise WorkerBusy(
                f"This worker is busy: it runs at most {cap} request(s) at once "
                f"(max_concurrent) and all are in use.",
                hint="send the request to another worker, or retry when one finishes",
            )
        self._in_flight += 1
        self._publish(force=True)

    def _end(self, outcome: str, tokens: int = 0) -> None:
        self._in_flight -= 1
        if outcome == "served":
            self._served += 1
        elif outcome == "cancelled":
            self._cancelled += 1
        else:
            self._failed += 1
        self._tokens_total += tokens
        self._publish(force=True)

    def _count_tokens(self, tokens: int) -> None:
        self._rate.add(self._clock(), tokens)
        self._publish()

    # -- dispatch --------------------------------------------------------------------------------
    def limit_for(self, kind: str) -> int:
        return self._limits.get(kind, self._default_limit)

    def _semaphore(self, backend: Backend) -> asyncio.Semaphore | contextlib.nullcontext[None]:
        if getattr(backend, "admits_itself", False):
            return contextlib.nullcontext()  # it bounds each of its models itself
        sem = self._semaphores.get(backend.kind)
        if sem is None:
            sem = self._semaphores[backend.kind] = asyncio.Semaphore(self.limit_for(backend.kind))
        return sem

    def _resolve(
        self, body: Mapping[str, Any], trace: RequestTrace | None = None
    ) -> tuple[Backend, dict[str, Any]]:
        problem = first_problem(dict(body))
        if problem is not None:
            raise BadRequest(problem.message, param=problem.param)
        backend, model_id = self.registry.resolve(model_of(body))
        if trace is not None:
            trace.routed(backend.kind, model_id)
        return backend, {**body, "model": model_id}

    async def _unary(
        self,
        kind: str,
        body: Mapping[str, Any],
        call: Callable[[Backend, dict[str, Any]], Awaitable[T]],
    ) -> T:
        self._begin()
        trace = self.request_log.begin(kind, _model_name(body))
        outcome, tokens, tokens_in, error = "failed", 0, None, None
        generated = 0  # counted into the rate while the answer was generated

        def count_generated(count: int) -> None:
            nonlocal generated
            generated += count
            self._count_tokens(count)

        try:
            backend, routed = self._resolve(body, trace)
            async with self._semaphore(backend):
                with reporting_to(count_generated):
                    result = await call(backend, routed)
            tokens = _usage_tokens(result)
            tokens_in = _usage_tokens(result, "prompt_tokens")
            if tokens > generated:
                self._count_tokens(tokens - generated)
            outcome = "served"
            return result
        except (asyncio.CancelledError, Cancelled):
            outcome = "cancelled"
            raise
        except Exception as exc:
            error = _error_code(exc)
            raise
        finally:
            self._end(outcome, tokens)
            trace.finish(
                _TRACE_STATUS[outcome],
                tokens_in=tokens_in or None,
                tokens_out=tokens if outcome == "served" else None,
                error=error,
            )

    async def chat(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A non-streamed chat completion."""

        async def call(backend: Backend, routed: dict[str, Any]) -> dict[str, Any]:
            check_stream_flag(body)
            return await backend.chat(routed)

        return await self._unary("chat", {**body, "stream": False}, call)

    async def completions(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A non-streamed legacy text completion."""

        async def call(backend: Backend, routed: dict[str, Any]) -> dict[str, Any]:
            check_stream_flag(body)
            return await backend.completions(routed)

        return await self._unary("completions", {**body, "stream": False}, call)

    async def embeddings(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._unary("embeddings", body, lambda b, r: b.embeddings(r))

    async def images(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._unary("images", body, lambda b, r: b.images(r))

    async def transcription(self, request: TranscriptionRequest) -> dict[str, Any] | str:
        async def call(backend: Backend, routed: dict[str, Any]) -> dict[str, Any] | str:
            request.model = routed["model"]
            return await backend.transcription(request)

        return await self._unary("transcription", {"model": request.model}, call)

    def chat_stream(self, body: Mapping[str, Any]) -> AsyncIterator[StreamChunk]:
        """A streamed chat completion; closing this iterator cancels the generation.

        The backend's slot is held for the whole stream. Token accounting uses the usage the
        backend reports; a backend that reports none is counted one token per content chunk.
        """
        return self._stream("chat", body, lambda backend, routed: backend.chat_stream(routed))

    def completions_stream(self, body: Mapping[str, Any]) -> AsyncIterator[StreamChunk]:
        """A streamed legacy text completion (as :meth:`chat_stream`)."""
        return self._stream(
            "completions", body, lambda backend, routed: backend.completions_stream(routed)
        )

    async def _stream(
        self,
        kind: str,
        body: Mapping[str, Any],
        open_stream: Callable[[Backend, dict[str, Any]], AsyncIterator[StreamChunk]],
    ) -> AsyncIterator[StreamChunk]:
        self._begin()
        trace = self.request_log.begin(kind, _model_name(body), stream=True)
        outcome, counted, reported, prompt, error = "failed", 0, None, None, None
        stream: AsyncIterator[StreamChunk] | None = None
        try:
            check_stream_flag(body)
            backend, routed = self._resolve({**body, "stream": True}, trace)
            async with self._semaphore(backend):
                stream = open_stream(backend, routed)
                async for chunk in stream:
                    if chunk.usage is not None:
                        reported = chunk.usage.completion_tokens
                        prompt = chunk.usage.prompt_tokens
                    elif chunk.finish_reason is None:
                        if not counted:
                            trace.first_token()
                        counted += 1
                        self._count_tokens(1)
                    yield chunk
            outcome = "served"
        except (asyncio.CancelledError, GeneratorExit, Cancelled):
            outcome = "cancelled"
            raise
        except Exception as exc:
            error = _error_code(exc)
            raise
        finally:
            if stream is not None and hasattr(stream, "aclose"):
                with contextlib.suppress(Exception):
                    await stream.aclose()
            tokens = reported if reported is not None else counted
            self._end(outcome, tokens)
            trace.finish(
                _TRACE_STATUS[outcome], tokens_in=prompt or None, tokens_out=tokens, error=error
            )


_TRACE_STATUS = {"served": "ok", "failed": "failed", "cancelled": "cancelled"}
"""Router outcomes as the request log words them."""


def _model_name(body: Mapping[str, Any]) -> str:
    """The model as asked for, for the request log (``?`` when the request names none)."""
    model = body.get("model")
    return model if isinstance(model, str) and model else "?"


def _error_code(exc: BaseException) -> str:
    """The code of a PendraError (``model_not_found`` …), else the exception's class name."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and code else type(exc).__name__


def _usage_tokens(result: Any, field: str = "completion_tokens") -> int:
    """A count from the result's ``usage`` (generated tokens by default; embeddings count 0)."""
    if isinstance(result, dict):
        usage = result.get("usage")
        if isinstance(usage, dict):
            value = usage.get(field, 0)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0
    return 0

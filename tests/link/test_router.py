"""Router: resolution, the models filter, the in-flight cap, per-backend concurrency, counters
and token rate, cancellation."""

from __future__ import annotations

import asyncio
import json

import pytest
from link_fakes import FAKE_EMBED, FAKE_MODEL, FakeBackend

from worker.backends.base import StreamChunk
from worker.backends.registry import BackendRegistry
from worker.errors import BadRequest, ModelNotFound, WorkerBusy
from worker.events import EventBus
from worker.link.streaming import pump_stream
from worker.router import RATE_WINDOW_S, Router, TokenRate
from worker.token_progress import report_generated

pytestmark = pytest.mark.timeout(30)


async def _router(backend: FakeBackend, **kwargs: object) -> Router:
    await backend.refresh()
    return Router(BackendRegistry([backend]), EventBus(), **kwargs)  # type: ignore[arg-type]


def _body(prompt: str, **extra: object) -> dict[str, object]:
    return {"model": FAKE_MODEL, "messages": [{"role": "user", "content": prompt}], **extra}


async def test_unary_and_counters() -> None:
    router = await _router(FakeBackend())
    events = router.events.subscribe(kinds={"requests"})  # type: ignore[union-attr]
    reply = await router.chat(_body("a"))
    assert reply["choices"][0]["message"]["content"].startswith("a-0")
    emb = await router.embeddings({"model": FAKE_EMBED, "input": "xyz"})
    assert emb["data"][0]["embedding"][0] == 3.0
    with pytest.raises(ModelNotFound):
        await router.chat({"model": "nope", "messages": []})
    with pytest.raises(BadRequest, match="no model"):
        await router.chat({"messages": []})
    c = router.counters()
    assert (c.in_flight, c.served, c.failed, c.tokens_total) == (0, 2, 2, 5)
    first = await events.get()
    assert first["kind"] == "requests" and first["in_flight"] == 1


async def test_per_backend_concurrency_limit() -> None:
    backend = FakeBackend(words=5, delay_s=0.01)
    router = await _router(backend, default_limit=2)
    peak = 0

    async def one(i: int) -> None:
        nonlocal peak
        async for _ in router.chat_stream(_body(f"p{i}")):
            peak = max(peak, backend.started - backend.finished - backend.closed_early)

    await asyncio.gather(*(one(i) for i in range(6)))
    assert peak <= 2 and backend.finished == 6
    assert router.counters().served == 6 and router.counters().tokens_total == 30


async def test_closing_a_stream_cancels_the_backend_and_counts_it() -> None:
    backend = FakeBackend(words=100, delay_s=0.001)
    router = await _router(backend)
    stream = router.chat_stream(_body("c"))
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert backend.closed_early == 1
    c = router.counters()
    assert (c.in_flight, c.cancelled, c.served) == (0, 1, 0)


async def test_in_flight_cap_refuses_at_once_across_backends() -> None:
    """max_concurrent counts every backend together; over it the answer is busy, not a queue."""
    slow = FakeBackend(words=1000, delay_s=0.01)
    await slow.refresh()
    other = FakeBackend()
    other.kind = "other"  # type: ignore[misc]
    await other.refresh()
    router = Router(BackendRegistry([slow, other]), EventBus(), max_in_flight=2)
    first = router.chat_stream(_body("a"))
    second = router.chat_stream({**_body("b"), "model": f"other/{FAKE_MODEL}"})
    await first.__anext__()
    await second.__anext__()
    assert router.in_flight == 2
    with pytest.raises(WorkerBusy, match="at most 2") as info:
        await router.chat(_body("c"))
    assert info.value.http_status == 503 and info.value.code == "worker_busy"
    with pytest.raises(WorkerBusy):
        await router.chat_stream(_body("d")).__anext__()
    counters = router.counters()
    assert (counters.rejected_busy, counters.failed, counters.in_flight) == (2, 0, 2)
    await first.aclose()  # type: ignore[attr-defined]
    reply = await router.chat(_body("e"))  # a slot is free again
    assert reply["choices"][0]["message"]["content"].startswith("e-0")
    await second.aclose()  # type: ignore[attr-defined]
    assert router.counters().as_dict()["max_concurrent"] == 2


async def test_models_filter_limits_routing_and_advertising() -> None:
    backend = FakeBackend()
    await backend.refresh()
    registry = BackendRegistry([backend], models_filter=[FAKE_MODEL])
    assert [advertised for _b, _m, advertised in registry.advertised_models()] == [FAKE_MODEL]
    router = Router(registry, EventBus())
    assert (await router.chat(_body("x")))["model"] == FAKE_MODEL
    with pytest.raises(ModelNotFound, match="models setting leaves it out") as info:
        await router.embeddings({"model": FAKE_EMBED, "input": "x"})
    assert FAKE_MODEL in (info.value.hint or "")
    qualified = BackendRegistry([backend], models_filter=[f"fake/{FAKE_EMBED}"])
    assert [a for _b, _m, a in qualified.advertised_models()] == [FAKE_EMBED]
    assert qualified.resolve(f"fake/{FAKE_EMBED}")[1] == FAKE_EMBED


def test_token_rate_window() -> None:
    rate = TokenRate(window_s=10)
    rate.add(0.0, 50)
    rate.add(5.0, 50)
    assert rate.rate(5.0) == 10.0
    assert rate.rate(12.0) == 5.0
    assert rate.rate(20.0) == 0.0


class ReportingBackend(FakeBackend):
    """Reports 3 tokens as generated, then holds its whole answer (5 tokens of usage) until
    ``release`` is set: a long non-streamed generation, paused in the middle."""

    def __init__(self) -> None:
        super().__init__()
        self.reported = asyncio.Event()
        self.release = asyncio.Event()

    async def chat(self, body: dict[str, object]) -> dict[str, object]:  # type: ignore[override]
        report_generated(3)
        self.reported.set()
        await self.release.wait()
        return await super().chat(body)  # type: ignore[arg-type]


async def test_a_whole_answer_counts_into_the_rate_while_it_is_generated() -> None:
    backend = ReportingBackend()
    router = await _router(backend, clock=lambda: 100.0)
    request = asyncio.create_task(router.chat(_body("a")))
    await backend.reported.wait()
    # still generating: the tokens so far are in the rate, the total waits for the usage
    counters = router.counters()
    assert counters.in_flight == 1
    assert counters.tokens_per_s == 3 / RATE_WINDOW_S and counters.tokens_total == 0
    backend.release.set()
    await request
    counters = router.counters()
    # the final usage (5) counts once: the 3 already in the rate and the 2 that were not
    assert counters.tokens_per_s == 5 / RATE_WINDOW_S and counters.tokens_total == 5


def test_tokens_reported_outside_a_request_go_nowhere() -> None:
    report_generated(7)  # no request set a reporter: nothing to count, nothing raised


async def _chunks(n: int, delay_s: float = 0.0):  # type: ignore[no-untyped-def]
    for i in range(n):
        if delay_s:
            await asyncio.sleep(delay_s)
        yield StreamChunk(json.dumps({"i": i}))


async def test_pump_sends_one_frame_per_chunk_when_the_link_keeps_up() -> None:
    frames: list[str] = []
    sent = asyncio.Event()

    async def send(text: str) -> None:
        frames.append(text)
        sent.set()

    async def paced():  # type: ignore[no-untyped-def]
        """The next chunk only once the previous one is on the link: a link that keeps up."""
        for i in range(5):
            sent.clear()
            yield StreamChunk(json.dumps({"i": i}))
            await sent.wait()

    summary = await pump_stream("r", paced(), send)
    assert summary.chunks == 5 and summary.frames == 5
    assert [json.loads(f)["data"] for f in frames] == [[{"i": i}] for i in range(5)]


async def test_pump_coalesces_when_the_link_is_slow_and_bounds_the_queue() -> None:
    frames: list[list[dict[str, int]]] = []

    async def slow_send(text: str) -> None:
        frames.append(json.loads(text)["data"])
        await asyncio.sleep(0.02)

    summary = await pump_stream("r", _chunks(200), slow_send, queue_chunks=16)
    flat = [item["i"] for frame in frames for item in frame]
    assert flat == list(range(200))  # nothing lost, order kept
    assert summary.frames < 40 and max(len(f) for f in frames) <= 17


async def test_pump_reraises_the_backend_error_after_sending_what_it_had() -> None:
    async def failing():  # type: ignore[no-untyped-def]
        yield StreamChunk('{"i": 0}')
        raise RuntimeError("boom")

    frames: list[str] = []

    async def send(text: str) -> None:
        frames.append(text)

    with pytest.raises(RuntimeError, match="boom"):
        await pump_stream("r", failing(), send)
    assert len(frames) == 1


async def test_pump_sends_the_lead_with_the_first_frame_and_what_is_already_there() -> None:
    """The stream's start frame leaves in one write with the first chunk frame, and chunks the
    backend already produced join that first frame (one wake-up of the control plane)."""
    together: list[list[str]] = []
    alone: list[str] = []

    async def send(text: str) -> None:
        alone.append(text)

    async def send_together(texts: list[str]) -> None:
        together.append(list(texts))

    first = StreamChunk(json.dumps({"i": -1}))
    summary = await pump_stream(
        "r", _chunks(3), send, first=first, lead="START", send_together=send_together
    )
    assert len(together) == 1 and together[0][0] == "START"
    sent = [json.loads(together[0][1])["data"], *(json.loads(f)["data"] for f in alone)]
    assert [item["i"] for frame in sent for item in frame] == [-1, 0, 1, 2]
    assert len(sent[0]) > 1  # the chunks that were ready joined the first frame
    assert summary.chunks == 4


async def test_pump_without_send_together_sends_the_lead_first() -> None:
    frames: list[str] = []

    async def send(text: str) -> None:
        frames.append(text)

    await pump_stream("r", _chunks(1), send, first=StreamChunk('{"i": -1}'), lead="START")
    assert frames[0] == "START" and json.loads(frames[1])["data"][0] == {"i": -1}

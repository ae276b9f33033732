"""The link end to end, in process: real sandbox, real WebSocket link, real router and runtime.

Only the model is fake here (``FakeBackend``), so the tests can run 64 streams at once and time
drains precisely; tests/link/test_link_process.py runs the real built-in backend in processes.
"""

from __future__ import annotations

import asyncio

import openai
import pytest
from link_fakes import (
    FAKE_EMBED,
    FAKE_MODEL,
    FakeBackend,
    RunningWorker,
    Sandbox,
    expected_words,
    start_sandbox,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)


def client(sandbox: Sandbox, **kwargs: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=sandbox.url + "/v1", api_key=sandbox.api_key, max_retries=0, **kwargs
    )


async def test_chat_stream_and_embeddings_through_the_link(
    sandbox: Sandbox, running: RunningWorker
) -> None:
    api = client(sandbox)
    reply = await api.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "hello"}]
    )
    assert reply.choices[0].message.content == " ".join(expected_words("hello", 5))
    assert reply.usage is not None and reply.usage.completion_tokens == 5

    stream = await api.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "s"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == " ".join(expected_words("s", 5))

    emb = await api.embeddings.create(model=FAKE_EMBED, input=["ab", "abcd"])
    assert [d.embedding[0] for d in emb.data] == [2.0, 4.0]

    models = await api.models.list()
    assert {m.id for m in models.data} == {FAKE_MODEL, FAKE_EMBED}
    counters = running.worker.router.counters()
    assert (counters.served, counters.failed, counters.in_flight) == (3, 0, 0)
    await api.close()


async def test_64_concurrent_streams_all_complete_unmixed(sandbox: Sandbox) -> None:
    backend = FakeBackend(words=20, delay_s=0.002)
    worker = await start_worker(sandbox, backend, env={"PENDRA_PARALLEL": "64"})
    api = client(sandbox)

    async def one(i: int) -> str:
        stream = await api.chat.completions.create(
            model=FAKE_MODEL, messages=[{"role": "user", "content": f"p{i}"}], stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream])

    results = await asyncio.gather(*(one(i) for i in range(64)))
    for i, text in enumerate(results):
        assert text == " ".join(expected_words(f"p{i}", 20)), f"stream {i} lost or mixed"
    assert backend.finished == 64 and backend.closed_early == 0
    assert worker.worker.router.counters().served == 64
    assert await worker.stop() == 0
    await api.close()


async def test_errors_are_openai_shaped(sandbox: Sandbox, running: RunningWorker) -> None:
    api = client(sandbox)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        await api.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    bad = openai.AsyncOpenAI(base_url=sandbox.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad.models.list()
    # A model the catalogue knows but no connected worker serves: 503, not 404.
    with pytest.raises(openai.InternalServerError) as info:
        await api.chat.completions.create(
            model="known-model", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 503
    await api.close()
    await bad.close()


async def test_no_worker_connected_is_503(sandbox: Sandbox) -> None:
    api = client(sandbox)
    with pytest.raises(openai.InternalServerError, match="No worker is connected") as info:
        await api.chat.completions.create(
            model=FAKE_MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 503
    await api.close()


async def test_least_in_flight_balancing_across_two_workers(sandbox: Sandbox) -> None:
    from worker.keys import generate_key

    second_key = generate_key()
    sandbox.hub.accepted_keys.add(second_key.public_key)
    gate = asyncio.Event()  # every stream stays in flight until all eight have been routed
    slow_a, slow_b = FakeBackend(words=30, gate=gate), FakeBackend(words=30, gate=gate)
    room = {"MAX_CONCURRENT": "4"}  # each worker takes four at once: all eight are in flight
    a = await start_worker(sandbox, slow_a, env=room)
    b = await start_worker(sandbox, slow_b, key=second_key, env=room)
    await wait_for(lambda: len(sandbox.hub.workers) == 2, what="two workers")
    api = client(sandbox)

    async def one(i: int) -> None:
        stream = await api.chat.completions.create(
            model=FAKE_MODEL, messages=[{"role": "user", "content": f"x{i}"}], stream=True
        )
        async for _ in stream:
            pass

    streams = asyncio.gather(*(one(i) for i in range(8)))
    await wait_for(lambda: slow_a.started + slow_b.started == 8, what="eight streams routed")
    gate.set()
    await streams
    assert slow_a.started == 4 and slow_b.started == 4
    await a.stop()
    await b.stop()
    await api.close()


async def test_client_going_away_cancels_the_generation(sandbox: Sandbox) -> None:
    backend = FakeBackend(words=500, delay_s=0.01)
    worker = await start_worker(sandbox, backend)
    api = client(sandbox)
    stream = await api.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "c"}], stream=True
    )
    got = 0
    async for _ in stream:
        got += 1
        if got == 3:
            break
    await stream.close()
    await wait_for(lambda: backend.closed_early == 1, what="the backend stream to be closed")
    await wait_for(lambda: worker.worker.router.in_flight == 0, what="in_flight back to 0")
    assert worker.worker.router.counters().cancelled == 1
    await worker.stop()
    await api.close()


async def test_sandbox_restart_mid_stream_fails_cleanly_then_worker_reconnects() -> None:
    box = await start_sandbox()
    backend = FakeBackend(words=1000, delay_s=0.01)
    worker = await start_worker(box, backend)
    api = client(box)
    stream = await api.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "r"}], stream=True
    )
    received = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk)

    consumer = asyncio.create_task(consume())
    await wait_for(lambda: len(received) >= 3, what="the first chunks")
    await box.stop()
    with pytest.raises((openai.APIError, Exception)) as info:
        await asyncio.wait_for(consumer, 10)
    assert not isinstance(info.value, asyncio.TimeoutError)
    await wait_for(lambda: backend.closed_early == 1, what="the worker to cancel the stream")
    await wait_for(lambda: worker.worker.state == "offline", what="the link to go offline")

    again = await start_sandbox(box.key, port=box.port)
    await wait_for(lambda: bool(again.hub.workers), timeout_s=15, what="the reconnect")
    api2 = client(again)
    reply = await api2.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "after"}], max_tokens=3
    )
    assert reply.choices[0].message.content == "after-0 after-1 after-2"
    assert worker.worker.state == "connected"
    assert await worker.stop() == 0
    await again.stop()
    await api.close()
    await api2.close()


async def test_drain_lets_the_stream_finish_then_stops(sandbox: Sandbox) -> None:
    backend = FakeBackend(words=40, delay_s=0.02)
    worker = await start_worker(sandbox, backend)
    api = client(sandbox)
    stream = await api.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "d"}], stream=True
    )
    parts: list[str] = []

    async def consume() -> None:
        async for c in stream:
            parts.append(c.choices[0].delta.content or "")

    consumer = asyncio.create_task(consume())
    await wait_for(lambda: len(parts) >= 2, what="the stream to start")
    worker.worker.request_stop()
    await wait_for(
        lambda: any(w.draining for w in sandbox.hub.workers.values()), what="draining frame"
    )
    # While draining, the sandbox routes nothing new to it.
    with pytest.raises(openai.InternalServerError):
        await api.chat.completions.create(
            model=FAKE_MODEL, messages=[{"role": "user", "content": "new"}]
        )
    await consumer
    assert "".join(parts) == " ".join(expected_words("d", 40))
    assert await asyncio.wait_for(worker.task, 10) == 0
    assert backend.closed_early == 0
    await api.close()

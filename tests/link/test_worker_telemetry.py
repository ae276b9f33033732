"""What the dashboard reads from the worker: the request log, the metrics history, host readings,
and the link's reason and countdown while it waits to reconnect (with "retry now").

The router, the history, the admin socket, the sandbox and the link are the real ones; the fast
fake backend stands in for a model because the tests are about the bookkeeping around it.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest
from link_fakes import FAKE_EMBED, FAKE_MODEL, FakeBackend, start_sandbox, wait_for, worker_settings

from worker.admin.client import AdminClient
from worker.backends.registry import BackendRegistry
from worker.errors import ModelNotFound
from worker.events import EventBus
from worker.history import MetricsHistory
from worker.host_metrics import HostProbe
from worker.link.backoff import Backoff
from worker.request_log import RequestLog
from worker.router import Router
from worker.runtime import Worker

pytestmark = pytest.mark.timeout(60)

SECRET_PROMPT = "the-launch-codes-are-0000"
"""A prompt that must never show up in a request record or event."""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _body(prompt: str = SECRET_PROMPT, **extra: Any) -> dict[str, Any]:
    return {"model": FAKE_MODEL, "messages": [{"role": "user", "content": prompt}], **extra}


async def _router(backend: FakeBackend, clock: Clock | None = None) -> Router:
    await backend.refresh()
    kwargs: dict[str, Any] = {"clock": clock} if clock else {}
    return Router(BackendRegistry([backend]), EventBus(), **kwargs)


async def test_every_request_is_recorded_with_metadata_and_never_its_text() -> None:
    router = await _router(FakeBackend(words=6))
    events = router.events.subscribe(kinds={"request"})  # type: ignore[union-attr]
    async for _ in router.chat_stream(_body()):
        pass
    await router.chat(_body(max_tokens=3))
    await router.embeddings({"model": FAKE_EMBED, "input": SECRET_PROMPT})
    with pytest.raises(ModelNotFound):
        await router.chat({"model": "no-such-model", "messages": []})
    stream = router.chat_stream(_body())
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]

    recent = router.request_log.recent()
    assert [r["status"] for r in recent] == ["cancelled", "failed", "ok", "ok", "ok"]
    cancelled, failed, embedded, unary, streamed = recent
    assert streamed["kind"] == "chat" and streamed["stream"] is True
    assert streamed["backend"] == "fake" and streamed["model"] == FAKE_MODEL
    assert (streamed["tokens_in"], streamed["tokens_out"]) == (1, 6)
    assert streamed["ttft_s"] is not None and streamed["duration_s"] >= streamed["ttft_s"]
    assert (unary["tokens_out"], unary["stream"], unary["ttft_s"]) == (3, False, None)
    assert embedded["kind"] == "embeddings" and embedded["tokens_out"] == 0
    assert failed["error"] == "model_not_found" and failed["backend"] is None
    assert failed["model"] == "no-such-model"
    assert cancelled["status"] == "cancelled"

    published = []
    while True:
        try:
            published.append(events._queue.get_nowait())
        except asyncio.QueueEmpty:
            break
    assert len(published) == 10  # a start and an end for each of the five
    everything = json.dumps(recent) + json.dumps(published)
    assert SECRET_PROMPT not in everything
    assert "launch" not in everything


async def test_the_request_log_is_bounded_and_lists_running_requests_first() -> None:
    log = RequestLog(capacity=3)
    for i in range(5):
        log.begin("chat", f"m{i}").finish("ok", tokens_out=i)
    running = log.begin("chat", "busy", stream=True)
    listed = log.recent()
    assert [r["model"] for r in listed] == ["busy", "m4", "m3", "m2"]
    assert listed[0]["status"] == "running" and log.running == 1
    running.finish("ok", tokens_out=1)
    running.finish("failed")  # a second finish changes nothing
    assert log.recent(2)[0]["status"] == "ok" and log.running == 0


def test_a_huge_model_name_is_cut_in_the_record() -> None:
    log = RequestLog()
    log.begin("chat", "x" * 100_000).finish("failed", error="model_not_found")
    assert len(log.recent()[0]["model"]) == 128


def test_tokens_per_s_is_the_generation_rate() -> None:
    clock = Clock()
    log = RequestLog(clock=clock)
    trace = log.begin("chat", "m", stream=True)
    clock.now += 0.5
    trace.first_token()
    clock.now += 2.0
    trace.finish("ok", tokens_in=10, tokens_out=50)
    record = log.recent()[0]
    assert record["ttft_s"] == 0.5 and record["duration_s"] == 2.5
    assert record["tokens_per_s"] == 25.0


async def test_the_published_rate_falls_to_zero_when_requests_stop() -> None:
    """One source of truth: every sample carries the router's own sliding-window rate, so a
    dashboard shows 0 tok/s once the window has passed, without any new request."""
    clock = Clock()
    router = await _router(FakeBackend(words=20), clock)
    events = EventBus()
    subscription = events.subscribe(kinds={"metrics"})
    history = MetricsHistory(
        counters=lambda: router.counters().as_dict(), events=events, interval_s=2.0
    )
    async for _ in router.chat_stream(_body()):
        pass
    busy = history.sample_now()
    assert busy["tokens_per_s"] == pytest.approx(2.0)  # 20 tokens over the 10 s window
    assert busy["served"] == 1 and busy["in_flight"] == 0
    clock.now += 11
    idle = history.sample_now()
    assert idle["tokens_per_s"] == 0.0
    published = [subscription._queue.get_nowait() for _ in range(2)]
    assert [event["sample"]["tokens_per_s"] for event in published] == [2.0, 0.0]


def test_history_keeps_the_window_oldest_first_and_publishes_loaded_models() -> None:
    events = EventBus()
    subscription = events.subscribe(kinds={"metrics"})
    ticks = iter(range(100))
    loaded = [{"id": "gemma3:270m", "slots": 4, "slots_in_use": 1}]
    history = MetricsHistory(
        counters=lambda: {"in_flight": 1, "tokens_per_s": 3.0},
        gpus=lambda: [{"index": 0, "name": "X", "utilization": 50.0, "memory_used": 1}],
        host=lambda: {"cpu_percent": 12.5},
        loaded=lambda: {"pendra": loaded},
        events=events,
        interval_s=2.0,
        window_s=10.0,
        wall=lambda: float(next(ticks)),
    )
    for _ in range(8):
        history.sample_now()
    doc = history.as_dict()
    assert doc["interval_s"] == 2.0 and doc["window_s"] == 10.0
    assert [s["ts"] for s in doc["samples"]] == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert doc["samples"][-1]["gpus"] == [
        {"index": 0, "utilization": 50.0, "memory_used": 1, "memory_total": None}
    ]
    assert doc["samples"][-1]["host"] == {"cpu_percent": 12.5}
    event = subscription._queue.get_nowait()
    assert event["loaded"] == {"pendra": loaded} and "loaded" not in event["sample"]


def test_host_probe_reads_this_machine_and_this_process() -> None:
    probe = HostProbe()
    first = probe.read()
    assert first.cpu_percent is None  # CPU use is a difference: no value before a second read
    assert first.memory_total and first.memory_used and 0 < first.memory_used <= first.memory_total
    assert first.process_rss and first.process_threads and first.process_threads >= 1
    second = probe.read()
    assert second.cpu_percent is not None and 0.0 <= second.cpu_percent <= 100.0
    assert second.process_cpu_percent is not None and second.process_cpu_percent >= 0.0
    assert set(second.as_dict()) >= {"cpu_percent", "memory_used", "process_rss", "pid"}


async def test_admin_api_serves_history_and_recent_requests_of_a_running_worker() -> None:
    sandbox = await start_sandbox()
    worker = Worker(worker_settings(sandbox.url), sandbox.key, backends=[FakeBackend(words=4)])
    worker.enable_operations(gpu=False)
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: worker.state == "connected", what="the link")
        async with httpx.AsyncClient(base_url=sandbox.url, timeout=30) as http:
            reply = await http.post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {sandbox.api_key}"},
                json=_body(stream=True),
            )
            assert reply.status_code == 200
        client = AdminClient.for_settings(worker.settings)
        recent = await client.recent_requests(10)
        assert recent and recent[0]["status"] == "ok" and recent[0]["tokens_out"] == 4
        assert SECRET_PROMPT not in json.dumps(recent)
        await wait_for(
            lambda: any(s.get("served") == 1 for s in worker.history.samples()),
            what="a sample after the request",
        )
        history = await client.history()
        assert history["interval_s"] == 2.0 and history["window_s"] == 900.0
        last = history["samples"][-1]
        assert last["served"] == 1 and last["host"]["memory_total"] > 0 and last["gpus"] == []
        status = await client.status()
        assert status["host"]["pid"] == last["host"]["pid"]
        assert status["worker"]["link"]["reason"] is None
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)
        await sandbox.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_offline_link_says_why_and_when_and_retries_at_once_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing listens at first: the link says why it is offline and counts down a long wait;
    once the control plane is up, "retry now" connects without waiting the backoff out."""
    import worker.link.client as link_client

    monkeypatch.setattr(link_client, "Backoff", lambda: Backoff(base_s=60, rand=lambda: 1.0))
    # a key a sandbox accepts (this one is thrown away); started before the port is picked, so
    # it cannot be listening on the port meant to have nothing behind it
    sandbox_key = (await start_sandbox()).key
    port = _free_port()
    settings = worker_settings(f"http://127.0.0.1:{port}")
    worker = Worker(settings, sandbox_key, backends=[FakeBackend()])
    worker.enable_operations(gpu=False)
    states = worker.events.subscribe(kinds={"state"})
    task = asyncio.create_task(worker.run())
    sandbox = None
    try:
        await wait_for(lambda: worker.link is not None and worker.link.retry_at, what="a wait")
        client = AdminClient.for_settings(settings)
        link = (await client.status())["worker"]["link"]
        assert link["reason"].startswith(f"cannot reach ws://127.0.0.1:{port}")
        assert 50 < link["retry_in_s"] <= 60 and link["attempt"] == 1
        offline = await asyncio.wait_for(_next_state(states, "offline"), 5)
        assert offline["link"]["reason"] == link["reason"]

        sandbox = await start_sandbox(sandbox_key, port=port)
        answer = await client.retry_link()
        assert answer["retrying"] is True
        await wait_for(lambda: worker.state == "connected", timeout_s=10, what="the retry")
        assert (await client.status())["worker"]["link"]["reason"] is None
        assert (await client.retry_link())["retrying"] is False  # nothing to skip now
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)
        if sandbox is not None:
            await sandbox.stop()


async def _next_state(subscription: Any, state: str) -> dict[str, Any]:
    while True:
        event = await subscription.get()
        if event.get("state") == state:
            return event

"""max_concurrent end to end: the worker declares it, refuses over it (worker_busy), and the
sandbox holds requests back until a slot frees. worker_id and worker_name in the registration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from link_fakes import FAKE_MODEL, FakeBackend, Sandbox, start_worker, wait_for

from worker.keys import generate_key
from worker.protocol import ErrorFrame, Request, ResponseStart
from worker.sandbox.hub import Channel, WorkerHub

pytestmark = pytest.mark.timeout(60)


class CountingBackend(FakeBackend):
    """Records the most streams it ever ran at once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.active = 0
        self.peak = 0

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[Any]:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            async for chunk in super().chat_stream(body):
                yield chunk
        finally:
            self.active -= 1


def _stream_request(request_id: str, prompt: str) -> Request:
    body = {"model": FAKE_MODEL, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    return Request(id=request_id, kind="chat", stream=True, body=body)


async def test_the_worker_answers_busy_over_its_cap(sandbox: Sandbox) -> None:
    backend = FakeBackend(words=10_000, delay_s=0.01)
    running = await start_worker(sandbox, backend, env={"MAX_CONCURRENT": "1"})
    try:
        connection = next(iter(sandbox.hub.workers.values()))
        assert connection.hello.max_concurrency == 1 and connection.capacity == 1
        first = Channel(connection, "r-1")
        connection.channels["r-1"] = first
        await connection.send(_stream_request("r-1", "long").dump())
        assert isinstance(await first.next(10), ResponseStart)
        # Sent past the hub's own accounting, as a control plane that ignores the cap would:
        second = Channel(connection, "r-2")
        connection.channels["r-2"] = second
        await connection.send(_stream_request("r-2", "more").dump())
        reply = await second.next(10)
        assert isinstance(reply, ErrorFrame)
        assert (reply.code, reply.status) == ("worker_busy", 503)
        assert "max_concurrent" in reply.message
        assert running.worker.router.counters().rejected_busy == 1
        await second.close()
        await first.close()  # cancels the long stream on the worker
        await wait_for(lambda: running.worker.router.in_flight == 0, what="the cancel")
    finally:
        await running.stop()


async def test_the_sandbox_holds_requests_until_a_slot_frees(sandbox: Sandbox) -> None:
    backend = CountingBackend(words=20, delay_s=0.005)
    running = await start_worker(sandbox, backend, env={"MAX_CONCURRENT": "2"})
    api = openai.AsyncOpenAI(base_url=sandbox.url + "/v1", api_key=sandbox.api_key, max_retries=0)
    try:

        async def one(i: int) -> int:
            stream = await api.chat.completions.create(
                model=FAKE_MODEL,
                messages=[{"role": "user", "content": f"p{i}"}],
                stream=True,
            )
            return sum([1 async for _ in stream])

        counts = await asyncio.gather(*(one(i) for i in range(6)))
        assert all(n >= 20 for n in counts)
        assert 1 <= backend.peak <= 2  # never more than the cap
        assert running.worker.router.counters().rejected_busy == 0  # nothing was over-sent
    finally:
        await api.close()
        await running.stop()


async def test_registration_carries_the_worker_id_and_name(sandbox: Sandbox) -> None:
    running = await start_worker(
        sandbox, FakeBackend(), env={"WORKER_ID": "wrk-lab1", "WORKER_NAME": "lab box é"}
    )
    try:
        async with httpx.AsyncClient() as http:
            listed = (await http.get(sandbox.url + "/api/v1/workers")).json()["workers"]
            (entry,) = listed
            assert entry["worker_id"] == "wrk-lab1" and entry["worker_name"] == "lab box é"
            assert entry["key_id"] == sandbox.key.key_id and entry["max_concurrency"] == 1
            reply = await http.post(
                sandbox.url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {sandbox.api_key}"},
                json={"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}]},
            )
        assert reply.status_code == 200
        assert reply.headers["X-Worker-Id"] == "wrk-lab1"
        assert reply.headers["X-Worker-Name"] == "lab box ?"  # headers are ASCII
        status = running.worker.status()["worker"]
        assert (status["worker_id"], status["worker_name"]) == ("wrk-lab1", "lab box é")
        assert running.worker.link is not None and running.worker.link.worker_id == "wrk-lab1"
    finally:
        await running.stop()


async def test_workers_sharing_a_key_stay_apart_and_no_key_takes_over_another(
    sandbox: Sandbox,
) -> None:
    from link_fakes import worker_settings

    from worker.runtime import Worker

    one = await start_worker(sandbox, FakeBackend(), env={"WORKER_ID": "wrk-a"})
    two = await start_worker(sandbox, FakeBackend(), env={"WORKER_ID": "wrk-b"})
    try:
        await wait_for(lambda: len(sandbox.hub.workers) == 2, what="two workers")
        assert {(w.key_id, w.worker_id) for w in sandbox.hub.workers.values()} == {
            (sandbox.key.key_id, "wrk-a"),
            (sandbox.key.key_id, "wrk-b"),
        }
        # Another key claiming wrk-a is refused; wrk-a keeps its one connection.
        intruder_key = generate_key()
        sandbox.hub.accepted_keys.add(intruder_key.public_key)
        intruder = Worker(
            worker_settings(sandbox.url, WORKER_ID="wrk-a"), intruder_key, backends=[FakeBackend()]
        )
        assert intruder.link is None
        await intruder.start()
        assert intruder.link is not None
        await wait_for(lambda: intruder.link.backoff.attempt >= 1, what="a refused attempt")  # type: ignore[union-attr]
        await intruder.stop()
        assert sandbox.hub.workers["wrk-a"].key_id == sandbox.key.key_id
        assert one.worker.link is not None and one.worker.link.connections == 1
        assert intruder.link.connections == 0  # type: ignore[union-attr]  # refused, retried
    finally:
        for running in (two, one):
            await running.stop()


async def test_a_request_waiting_for_a_slot_survives_a_link_drop(sandbox: Sandbox) -> None:
    """Queued behind a long stream when the link drops: it waits for the worker to come back
    (instead of failing with no_worker) and is served on the new connection."""
    from worker.link.backoff import Backoff

    backend = FakeBackend(words=10_000, delay_s=0.01)
    running = await start_worker(sandbox, backend, env={"MAX_CONCURRENT": "1"})
    assert running.worker.link is not None
    running.worker.link.backoff = Backoff(base_s=0.05, cap_s=0.2)
    headers = {"Authorization": f"Bearer {sandbox.api_key}"}
    body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "q"}], "max_tokens": 3}
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            long = await http.send(
                http.build_request(
                    "POST",
                    sandbox.url + "/v1/chat/completions",
                    headers=headers,
                    json={**body, "stream": True, "max_tokens": 10_000},
                ),
                stream=True,
            )
            assert long.status_code == 200
            queued = asyncio.create_task(
                http.post(sandbox.url + "/v1/chat/completions", headers=headers, json=body)
            )
            connection = next(iter(sandbox.hub.workers.values()))
            await wait_for(lambda: sandbox.hub.waiting == 1, what="the request to wait for a slot")
            await connection.ws.close(code=1011, message=b"test drop")  # the link drops
            reply = await asyncio.wait_for(queued, 20)
            await long.aclose()
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"].startswith("q-0")
        assert running.worker.link.connections == 2
    finally:
        await running.stop()


async def test_waits_for_room_end_cleanly_when_cancelled_as_room_changes() -> None:
    """Requests waiting for a slot are cancelled (clients hang up, the sandbox stops) in the same
    instant as a slot frees: every wait ends, none with an error of its own, and a later change
    still wakes a new waiter."""
    hub = WorkerHub([generate_key().public_key])
    waiters = [asyncio.create_task(hub.wait_for_change(30)) for _ in range(40)]
    await asyncio.sleep(0)  # all of them waiting
    hub.room_changed()
    for task in waiters[::2]:
        task.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results), results
    later = asyncio.create_task(hub.wait_for_change(30))
    await asyncio.sleep(0)
    hub.room_changed()
    await asyncio.wait_for(later, 5)


async def test_a_request_abandoned_while_it_is_sent_frees_its_slot(sandbox: Sandbox) -> None:
    """The sandbox cancels a handler whose client hung up; when that happens while the request is
    still going out on the WebSocket (another frame holds the socket), its slot is freed at once
    and a cancel follows it, rather than the slot staying taken for good."""
    running = await start_worker(sandbox, FakeBackend(), env={"MAX_CONCURRENT": "1"})
    try:
        connection = next(iter(sandbox.hub.workers.values()))
        async with connection._send_lock:  # another request's frame is being written
            opening = asyncio.create_task(connection.open(_stream_request("r-gone", "x")))
            await wait_for(lambda: "r-gone" in connection.channels, what="the slot taken")
            assert not connection.has_room
            opening.cancel()  # its client hung up
            with pytest.raises(asyncio.CancelledError):
                await opening
            assert "r-gone" not in connection.channels and connection.has_room
        # the slot serves the next request
        async with httpx.AsyncClient(base_url=sandbox.url, timeout=30) as client:
            reply = await client.post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {sandbox.api_key}"},
                json={"model": FAKE_MODEL, "messages": [{"role": "user", "content": "next"}]},
            )
        assert reply.status_code == 200, reply.text
    finally:
        await running.stop()

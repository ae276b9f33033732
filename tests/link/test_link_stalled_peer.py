"""A control plane that stops reading (hung, or its host overloaded) while the worker streams
to it: the worker's socket buffers fill and its sends block. Asked to stop, the worker still
ends its drain at the deadline and exits.

The real in-process sandbox, worker runtime and link; between them a TCP proxy on loopback that
can freeze: it stops reading what the worker sends, as a hung control plane would. The backend
is the link tests' fake (large words, so the buffers fill within a second).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from link_fakes import FAKE_MODEL, FakeBackend, Sandbox, wait_for, worker_settings

from worker.backends.base import StreamChunk
from worker.runtime import Worker

pytestmark = pytest.mark.timeout(90)

DRAIN_S = 1.0


class FreezingProxy:
    """Forwards TCP both ways between the worker and the sandbox until :meth:`freeze`, after
    which it reads nothing more from the worker."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self.frozen.set()

    async def _serve(self, worker_r: asyncio.StreamReader, worker_w: asyncio.StreamWriter) -> None:
        sandbox_r, sandbox_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        for pipe in (
            self._pipe(worker_r, sandbox_w, from_worker=True),
            self._pipe(sandbox_r, worker_w, from_worker=False),
        ):
            task = asyncio.create_task(pipe)
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_worker: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                if from_worker and self.frozen.is_set():
                    await asyncio.Event().wait()  # hung: the worker's bytes pile up
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        writer.close()

    async def close(self) -> None:
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            self._server.close()


class CountingBackend(FakeBackend):
    """The fake backend, counting the chunks its streams have handed on."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.handed_on = 0

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        async with contextlib.aclosing(super().chat_stream(body)) as chunks:
            async for chunk in chunks:
                yield chunk
                self.handed_on += 1  # counted once the worker took it: stops when sends block


async def test_a_stop_ends_at_the_drain_deadline_when_the_control_plane_stops_reading(
    sandbox: Sandbox,
) -> None:
    proxy = FreezingProxy(sandbox.port)
    await proxy.start()
    # the URL the worker dials is the proxy's, as `pendra sandbox --public-url` would name it
    sandbox.hub.public_urls += (f"ws://127.0.0.1:{proxy.port}",)
    settings = worker_settings(
        f"http://127.0.0.1:{proxy.port}",
        PENDRA_DRAIN_TIMEOUT=str(DRAIN_S),
        # The link's pings would find the hung peer in 1.5 heartbeats and drop the connection
        # (which ends the stream too); a long heartbeat keeps the stop itself under test.
        PENDRA_HEARTBEAT_INTERVAL="120",
    )
    backend = CountingBackend(words=100_000)
    worker = Worker(settings, sandbox.key, backends=[backend])
    run = asyncio.create_task(worker.run())
    client = httpx.AsyncClient(timeout=60)
    received = 0

    async def consume() -> None:
        nonlocal received
        body = {
            "model": FAKE_MODEL,
            "messages": [{"role": "user", "content": "w" * 32768}],  # 32 KiB words
            "stream": True,
        }
        headers = {"Authorization": f"Bearer {sandbox.api_key}"}
        async with client.stream(
            "POST", f"{sandbox.url}/v1/chat/completions", json=body, headers=headers
        ) as response:
            async for chunk in response.aiter_bytes():
                received += len(chunk)

    consumer: asyncio.Task[None] | None = None
    try:
        await wait_for(
            lambda: (sandbox.hub.workers and worker.state == "connected") or run.done(),
            what="the link",
        )
        consumer = asyncio.create_task(consume())
        await wait_for(lambda: received > 0, what="the stream to start")
        proxy.freeze()
        # Wait until the worker's sends block: the stream stops handing on chunks.
        last = -1
        while backend.handed_on != last:
            last = backend.handed_on
            await asyncio.sleep(0.5)
        assert not run.done() and worker.router.in_flight == 1, worker.router.counters()

        worker.request_stop()
        # drain deadline (1 s) plus the link's close grace (5 s); far less than this bound
        assert await asyncio.wait_for(run, 30) == 0
        assert backend.closed_early == 1  # the blocked stream was cut at the deadline
    finally:
        if consumer is not None:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
        await client.aclose()
        if not run.done():
            worker.request_stop()
            worker.request_stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run, 10)
        await proxy.close()

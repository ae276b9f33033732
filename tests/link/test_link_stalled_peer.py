"""A control plane that stops reading (hung, or its host overloaded): the worker's socket
buffers fill and its sends block. Draining for a stop must still end at its deadline.

The peer is a real aiohttp WebSocket server on loopback whose handler accepts the socket and
then never reads from it; the worker's side is a real client socket and the link's session.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from worker.backends.registry import BackendRegistry
from worker.link.session import Session
from worker.router import Router

pytestmark = pytest.mark.timeout(60)

FRAME = "x" * (256 * 1024)


@pytest.fixture
async def stalled_url() -> AsyncIterator[str]:
    finished = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        await finished.wait()  # never reads: aiohttp stops reading once its queue is full
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        finished.set()
        await runner.cleanup()


async def test_drain_ends_at_its_deadline_when_sends_block(stalled_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(stalled_url)
        session = Session(ws, router=Router(BackendRegistry()))
        sent = 0

        async def fill() -> None:
            nonlocal sent
            while True:
                await session.send(FRAME)  # holds the send lock while it blocks
                sent += 1

        filler = asyncio.create_task(fill())
        try:
            # wait until the sends stop progressing: the buffers are full
            last = -1
            while sent != last:
                last = sent
                await asyncio.sleep(0.5)
            assert not filler.done()
            # The draining notice cannot be sent (a blocked send holds the lock): the drain
            # gives up on it at its deadline instead of waiting for ever.
            assert await asyncio.wait_for(session.drain(0.5), 20) == 0
        finally:
            filler.cancel()
            await asyncio.gather(filler, return_exceptions=True)
            # the peer will never take the queued bytes: cut the connection so it can close
            sock = ws.get_extra_info("socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)

"""The emulator base: a real aiohttp server on 127.0.0.1 with a request log and fault knobs.

Each backend kind has its own module (``ollama``, ``lmstudio`` …) whose server follows the facts in
the project's backend research (ports aside: emulators listen where they are told, port 0 = any).
Use one as an async context manager::

    async with OllamaEmulator() as ollama:
        ollama.url  # "http://127.0.0.1:PORT"

or ``url = await emulator.start(port=0, host="127.0.0.1")`` and ``await emulator.stop()``.
Benchmarks and other test suites may import them (``from tests.emulators import …``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Faults:
    """Ways to make a stream or an answer misbehave (all off by default)."""

    die_after_chunks: int | None = None  # drop the connection after N streamed chunks
    chunk_delay_s: float = 0.0  # pause before each streamed chunk (slow stream)
    endless: bool = False  # stream chunks until the client goes away
    invalid_json: bool = False  # stream/answer a body that is not JSON
    huge_line_bytes: int = 0  # one streamed content chunk of this many bytes
    pull_error_after: int | None = None  # Ollama pull: error line after N progress lines
    chat_error: tuple[int, Any] | None = None  # answer chat with (status, JSON body)


@dataclass
class Recorded:
    method: str
    path: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class Emulator:
    """Base class: subclasses add routes in :meth:`setup_routes`."""

    kind = "emulator"

    def __init__(self, *, faults: Faults | None = None) -> None:
        self.faults = faults if faults is not None else Faults()
        self.requests: list[Recorded] = []
        self.disconnects = 0  # streams the client closed early
        self.install_gate: asyncio.Event | None = None
        """When set to an Event, an install pauses midway (after some progress) until it is set,
        so a test can look at the install while it runs. ``None``: installs run straight through."""
        self.streams_completed = 0
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.host = ""
        self.port = 0
        self.app = web.Application(middlewares=[self._record], client_max_size=64 * 1024 * 1024)
        self.setup_routes(self.app)

    def setup_routes(self, app: web.Application) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.content_type == "application/json" and request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = await request.text()
        self.requests.append(Recorded(request.method, request.path, body, dict(request.headers)))
        return await handler(request)

    def open_connections(self) -> int:
        """Client connections this server holds open right now (idle keep-alive ones too)."""
        server = self._runner.server if self._runner is not None else None
        return len(server.connections) if server is not None else 0

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]

    def bodies(self, path: str) -> list[Any]:
        return [r.body for r in self.requests if r.path == path]

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.host, self.port = host, server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- stream helpers -------------------------------------------------------------------------
    async def stream_lines(
        self,
        request: web.Request,
        lines: Any,
        *,
        content_type: str,
        prefix: str = "",
        suffix: str = "\n",
    ) -> web.StreamResponse:
        """Write each item of ``lines`` (an iterable of text) framed, applying the faults."""
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        sent = 0
        try:
            for text in lines:
                if text is HOLD:
                    await self.hold_install()
                    continue
                if self.faults.chunk_delay_s:
                    await asyncio.sleep(self.faults.chunk_delay_s)
                if (
                    self.faults.die_after_chunks is not None
                    and sent >= self.faults.die_after_chunks
                ):
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await response.write(f"{prefix}{text}{suffix}".encode())
                sent += 1
                await asyncio.sleep(0)
            await response.write_eof()
            self.streams_completed += 1
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        return response

    async def hold_install(self) -> None:
        """Wait here while :attr:`install_gate` is closed."""
        if self.install_gate is not None:
            await self.install_gate.wait()


HOLD = object()
"""An item of :meth:`Emulator.stream_lines` that writes nothing and waits for the install gate."""


def reply(make: Any) -> Any:
    """An async handler from a one-line ``lambda request: response``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return make(request)

    return handler

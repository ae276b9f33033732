"""Two men in the middle for the private-inference tests, each on 127.0.0.1 in its own thread.

``RecordingProxy`` forwards TCP byte for byte and keeps everything that crossed it, in both
directions: what an observer on that leg (or the control plane itself) could read. WebSocket
frames from a client are masked, so :func:`readable` also unmasks the frames it finds — a
recording that only held masked bytes would prove nothing.

``TamperingRelay`` is an HTTP relay that changes what the control plane sends back, the ways a
hostile relay could: flip a byte of a sealed frame, drop the last sealed frame, slip in a chunk of
its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web


class _LoopThread:
    """An event loop running in a daemon thread; ``call`` runs a coroutine on it and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Connection:
    upstream: bytearray = field(default_factory=bytearray)
    """Bytes the client sent (towards the control plane)."""
    downstream: bytearray = field(default_factory=bytearray)
    """Bytes the control plane sent back."""


class RecordingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections: list[Connection] = []
        self._lock = threading.Lock()
        self._runner = _LoopThread()
        self._server: asyncio.Server = self._runner.call(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record = Connection()
        with self._lock:
            self.connections.append(record)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, into: bytearray
        ) -> None:
            try:
                while data := await src.read(65536):
                    with self._lock:
                        into.extend(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(
            pump(reader, up_writer, record.upstream), pump(up_reader, writer, record.downstream)
        )

    def readable(self) -> bytes:
        """Everything an observer of this leg could read: the raw bytes of every connection in
        both directions, plus the unmasked payloads of the WebSocket frames among them."""
        with self._lock:
            records = [(bytes(c.upstream), bytes(c.downstream)) for c in self.connections]
        parts: list[bytes] = []
        for upstream, downstream in records:
            for data in (upstream, downstream):
                parts.append(data)
                parts.extend(websocket_payloads(data))
        return b"\n".join(parts)

    def close(self) -> None:
        self._server.close()
        self._runner.close()


def websocket_payloads(data: bytes) -> list[bytes]:
    """The payloads of the WebSocket frames after an HTTP upgrade in ``data``, unmasked (RFC 6455
    §5.2). Empty for a connection that was not upgraded."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0 or b"upgrade: websocket" not in data[:head_end].lower():
        return []
    position, payloads = head_end + 4, []
    while position + 2 <= len(data):
        second = data[position + 1]
        length, position = second & 0x7F, position + 2
        if length == 126:
            length, position = int.from_bytes(data[position : position + 2], "big"), position + 2
        elif length == 127:
            length, position = int.from_bytes(data[position : position + 8], "big"), position + 8
        mask = b""
        if second & 0x80:
            mask, position = data[position : position + 4], position + 4
        payload = data[position : position + length]
        position += length
        if mask:
            key = (mask * (len(payload) // 4 + 1))[: len(payload)]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
                len(payload), "big"
            )
        payloads.append(payload)
    return payloads


def _flip(ciphertext_b64: str) -> str:
    raw = bytearray(base64.b64decode(ciphertext_b64))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _sealed(event: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(event)
    except ValueError:
        return None
    return obj.get("pendra_encrypted") if isinstance(obj, dict) else None


Transform = Callable[[list[str]], list[str]]


def flip_second_sealed_frame(events: list[str]) -> list[str]:
    out, seen = [], 0
    for event in events:
        sealed = _sealed(event)
        if sealed is not None:
            seen += 1
            if seen == 2:
                event = json.dumps(
                    {"pendra_encrypted": {**sealed, "ciphertext": _flip(sealed["ciphertext"])}}
                )
        out.append(event)
    return out


def drop_last_sealed_frame(events: list[str]) -> list[str]:
    last = max(i for i, e in enumerate(events) if _sealed(e) is not None)
    return events[:last] + events[last + 1 :]


def inject_unsealed_chunk(events: list[str]) -> list[str]:
    first = next(i for i, e in enumerate(events) if _sealed(e) is not None)
    chunk = {
        "id": "chatcmpl-relay",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gemma-3-270m",
        "choices": [
            {"index": 0, "delta": {"content": "injected by the relay"}, "finish_reason": None}
        ],
    }
    return [*events[: first + 1], json.dumps(chunk), *events[first + 1 :]]


class TamperingRelay:
    """Relays HTTP to the control plane; ``stream_transform`` rewrites a stream's ``data:`` events,
    ``flip_unary`` flips a byte of a non-streamed sealed reply."""

    def __init__(self, target_url: str) -> None:
        self.target_url = target_url
        self.stream_transform: Transform | None = None
        self.flip_unary = False
        self._runner = _LoopThread()
        self._site_runner: web.AppRunner = self._runner.call(self._start())
        self.port = next(a[1] for a in self._site_runner.addresses if isinstance(a, tuple))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _start(self) -> web.AppRunner:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in {"host", "content-length", "transfer-encoding", "connection"}
        }
        body = await request.read()
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.target_url + request.path_qs, data=body, headers=headers
            ) as upstream,
        ):
            content_type = upstream.headers.get("Content-Type", "")
            keep = {k: v for k, v in upstream.headers.items() if k.lower().startswith("x-")}
            if content_type.startswith("text/event-stream"):
                text = (await upstream.read()).decode()
                events = [
                    line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")
                ]
                if self.stream_transform is not None:
                    events = self.stream_transform(events)
                response = web.StreamResponse(
                    status=upstream.status, headers={**keep, "Content-Type": content_type}
                )
                await response.prepare(request)
                await response.write("".join(f"data: {e}\n\n" for e in events).encode())
                await response.write_eof()
                return response
            raw = await upstream.read()
            if self.flip_unary and content_type.startswith("application/json"):
                obj = json.loads(raw)
                if isinstance(obj, dict) and isinstance(obj.get("pendra_encrypted"), dict):
                    sealed = obj["pendra_encrypted"]
                    obj["pendra_encrypted"] = {**sealed, "ciphertext": _flip(sealed["ciphertext"])}
                    raw = json.dumps(obj).encode()
            return web.Response(
                body=raw, status=upstream.status, headers={**keep, "Content-Type": content_type}
            )

    def close(self) -> None:
        self._runner.call(self._site_runner.cleanup())
        self._runner.close()

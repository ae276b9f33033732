"""Just enough HTTP/1.1 for the admin API, on a Unix socket, with asyncio's streams alone.

The admin API is a handful of routes, JSON bodies of a few KiB, one request per connection (the
client opens a connection per call) and one long-lived NDJSON stream. A full web framework would
cost the idle worker more memory than everything else it does at idle, so this module parses one
request (request line, headers, a ``Content-Length`` body), hands it to the server's dispatcher,
and writes the answer with ``Connection: close``. A stream has no length: it ends when the
connection closes. Anything outside that — chunked request bodies, oversized headers or bodies,
a malformed request line — gets a plain 4xx error and the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_HEADER_BYTES = 16 * 1024
REQUEST_TIMEOUT_S = 30.0
"""A client that has not sent its whole request by then is cut off (a stuck or hostile peer)."""


class HttpError(Exception):
    """A request this server cannot take: answered with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    """As sent (percent-encoded): routes match whole segments, then each part is decoded."""
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    peer: Any = None
    """The connection's socket (for the peer's credentials)."""
    match_info: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not."""
        return json.loads(self.body.decode("utf-8"))


class Responder:
    """Writes the one answer to a request: a whole body, or a stream of chunks."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.started = False

    def _head(self, status: int, headers: Mapping[str, str]) -> bytes:
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        lines = [f"HTTP/1.1 {status} {reason}".rstrip()]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def send(self, status: int, body: bytes, content_type: str) -> None:
        self.started = True
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        self._writer.write(self._head(status, headers) + body)
        await self._writer.drain()

    async def start_stream(self, content_type: str) -> None:
        """Send the head of an answer whose body runs until the connection closes."""
        self.started = True
        headers = {"Content-Type": content_type, "Cache-Control": "no-store"}
        self._writer.write(self._head(200, headers))
        await self._writer.drain()

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()


Dispatch = Callable[[Request, Responder], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader, max_body: int) -> Request:
    """One request from ``reader``; :class:`HttpError` for anything this server does not take."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HttpError(431, "the request headers are too large") from None
    except asyncio.IncompleteReadError:
        raise HttpError(400, "the request ended before its headers did") from None
    if len(head) > MAX_HEADER_BYTES:
        raise HttpError(431, "the request headers are too large")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "malformed request line")
    method, target, _version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HttpError(411, "send the body with a Content-Length")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise HttpError(400, "Content-Length is not a number") from None
    if length < 0:
        raise HttpError(400, "Content-Length is negative")
    if length > max_body:
        raise HttpError(413, f"the request body is over {max_body} bytes")
    try:
        body = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError:
        raise HttpError(400, "the request ended before its body did") from None
    url = urlsplit(target)
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    return Request(method.upper(), url.path, query, headers, body)


async def handle_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    dispatch: Dispatch,
    *,
    max_body: int,
    on_error: Callable[[HttpError], tuple[bytes, str]],
) -> None:
    """Read one request, dispatch it, close. ``on_error`` renders a refused request's body."""
    responder = Responder(writer)
    try:
        try:
            request = await asyncio.wait_for(read_request(reader, max_body), REQUEST_TIMEOUT_S)
        except HttpError as exc:
            body, content_type = on_error(exc)
            await responder.send(exc.status, body, content_type)
            return
        except asyncio.TimeoutError:
            return
        request.peer = writer.get_extra_info("socket")
        await dispatch(request, responder)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # the client went away
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()

"""One request to a backend → parsed JSON, raw text, or a clear error.

Every failure becomes a :class:`~worker.errors.PendraError` the router can relay: connection trouble
and timeouts are :class:`BackendUnavailable` (503), an error answer is :class:`BackendFailed` with
the backend's status and message, a body that is not the JSON it should be is BackendFailed (502).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from worker.backends.upstream_errors import backend_failed, error_in_body
from worker.errors import BackendFailed, BackendUnavailable

MAX_ERROR_BODY = 64 * 1024


def unavailable(kind: str, url: str, exc: BaseException) -> BackendUnavailable:
    """A BackendUnavailable naming the backend, the URL and the network-level reason."""
    if isinstance(exc, asyncio.TimeoutError):
        reason = "timed out"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        reason = f"cannot connect ({exc.os_error.strerror or exc.os_error})"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        reason = "the server closed the connection"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        reason = "the response was cut off"
    else:
        reason = str(exc) or type(exc).__name__
    return BackendUnavailable(
        f"The {kind} backend at {url} is not reachable: {reason}.",
        hint=f"check that {kind} is running; the worker keeps serving other backends",
    )


async def read_error(kind: str, response: aiohttp.ClientResponse) -> BackendFailed:
    """Read (a bounded amount of) an error answer and turn it into BackendFailed."""
    try:
        raw = await response.content.read(MAX_ERROR_BODY)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        raw = b""
    return backend_failed(kind, response.status, raw.decode("utf-8", errors="replace"))


def parse_json(kind: str, url: str, raw: bytes) -> Any:
    """Parse a backend's JSON answer; a 2xx answer carrying an error envelope is an error too."""
    try:
        body = json.loads(raw)
    except ValueError:
        preview = raw[:120].decode("utf-8", errors="replace")
        raise BackendFailed(
            f"{kind} at {url} answered with something that is not JSON: {preview!r}"
        ) from None
    message = error_in_body(body)
    if message:
        raise BackendFailed(f"{kind} answered: {message}")
    return body


async def request(
    session: aiohttp.ClientSession,
    kind: str,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    data: Any = None,
    timeout: aiohttp.ClientTimeout | None = None,
    expect_json: bool = True,
) -> Any:
    """Send one request; return the parsed JSON (or text when ``expect_json`` is false)."""
    try:
        async with session.request(
            method, url, json=json_body, data=data, timeout=timeout
        ) as response:
            if response.status >= 400:
                raise await read_error(kind, response)
            raw = await response.read()
            if not expect_json:
                return raw.decode("utf-8", errors="replace")
            if not raw.strip():
                return None
            return parse_json(kind, url, raw)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise unavailable(kind, url, exc) from None


async def probe(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    timeout: aiohttp.ClientTimeout,
    json_body: Any = None,
) -> tuple[int, bytes, str] | None:
    """A verification probe: (status, body, content type), or None when nothing answers."""
    try:
        async with session.request(method, url, timeout=timeout, json=json_body) as response:
            body = await response.content.read(1024 * 1024)
            return response.status, body, response.headers.get("Content-Type", "")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
        return None


def json_or_none(body: bytes) -> Any:
    """Parse probe bytes; None for anything that is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return None

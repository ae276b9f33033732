"""The opening of a link session: challenge, signed proof of the key, hello, welcome.

The control plane speaks first with a fresh nonce and the protocol versions it accepts. The worker
picks the highest version both speak (none in common: :class:`UpgradeRequired`, final), signs the
transcript of nonce, server id, its public key, the version and the endpoint it dialled, and sends
its hello. The control plane answers ``welcome`` or an ``error`` (``auth_failed`` is final).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp

from worker import __version__
from worker.keys import WorkerKey
from worker.link.errors import AuthRejected, LinkProtocolError, UpgradeRequired
from worker.protocol import (
    CLOSE_AUTH_FAILED,
    CLOSE_UPGRADE_REQUIRED,
    Auth,
    Challenge,
    ErrorFrame,
    FrameError,
    Hello,
    Welcome,
    audience,
    auth_transcript,
    parse_server_frame,
)

HANDSHAKE_TIMEOUT_S = 15.0


async def _receive(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> object:
    message = await ws.receive(timeout=timeout_s)
    if message.type != aiohttp.WSMsgType.TEXT:
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            raise_for_close(ws.close_code)
            raise LinkProtocolError(f"the control plane closed the link (code {ws.close_code})")
        raise LinkProtocolError(f"unexpected {message.type.name} message during the handshake")
    try:
        return parse_server_frame(message.data)
    except FrameError as exc:
        raise LinkProtocolError(f"bad handshake frame: {exc.message}") from None


def choose_version(offered: Sequence[int], supported: Sequence[int]) -> int:
    common = set(offered) & set(supported)
    if not common:
        raise UpgradeRequired(
            "The control plane does not support this worker's protocol version "
            f"(it speaks {sorted(offered)}, this worker {sorted(supported)})."
        )
    return max(common)


def raise_for_close(code: int | None) -> None:
    """The final close codes (docs/protocol.md): a revoked key or an unsupported version."""
    if code == CLOSE_AUTH_FAILED:
        raise AuthRejected("The control plane rejected the worker key (close code 4401).")
    if code == CLOSE_UPGRADE_REQUIRED:
        raise UpgradeRequired("The control plane requires a newer worker (close code 4426).")


def raise_for_error(frame: ErrorFrame) -> None:
    if frame.code == "auth_failed":
        raise AuthRejected(f"The control plane rejected the worker key: {frame.message}")
    if frame.code == "upgrade_required":
        raise UpgradeRequired(f"The control plane requires a newer worker: {frame.message}")
    raise LinkProtocolError(f"the control plane refused the link: {frame.code}: {frame.message}")


async def handshake(
    ws: aiohttp.ClientWebSocketResponse,
    *,
    key: WorkerKey,
    url: str,
    hello: Hello,
    supported: Sequence[int],
    timeout_s: float = HANDSHAKE_TIMEOUT_S,
) -> Welcome:
    """Authenticate and register on an open socket; returns the control plane's welcome."""
    try:
        first = await _receive(ws, timeout_s)
    except asyncio.TimeoutError:
        raise LinkProtocolError("the control plane sent no challenge") from None
    if isinstance(first, ErrorFrame):
        raise_for_error(first)
    if not isinstance(first, Challenge):
        raise LinkProtocolError(f"expected a challenge, got {getattr(first, 'type', '?')}")
    version = choose_version(first.versions, supported)
    signature = key.sign(
        auth_transcript(
            protocol=version,
            nonce=first.nonce,
            server_id=first.server_id,
            public_key=key.public_key,
            audience=audience(url),
        )
    )
    await ws.send_str(
        Auth(
            protocol=version,
            public_key=key.public_key,
            signature=signature,
            worker_version=__version__,
        ).dump()
    )
    await ws.send_str(hello.model_copy(update={"protocol": version}).dump())
    try:
        answer = await _receive(ws, timeout_s)
    except asyncio.TimeoutError:
        raise LinkProtocolError("the control plane did not answer the hello") from None
    if isinstance(answer, ErrorFrame):
        raise_for_error(answer)
    if not isinstance(answer, Welcome):
        raise LinkProtocolError(f"expected a welcome, got {getattr(answer, 'type', '?')}")
    return answer

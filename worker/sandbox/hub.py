"""The control plane's worker side, as the sandbox implements it: accept, verify, route frames.

Each worker dials in over WebSocket; the hub sends a challenge, checks the signed transcript
against the public keys it accepts, takes the hello and welcomes the worker. The transcript's
audience is checked against the URLs the hub is configured to serve
(:attr:`WorkerHub.public_urls`), never against the ``Host`` header the client sent: a server that
relays a worker's handshake from another address must not choose what its signature is checked
against. A worker is known by the ``worker_id`` of its hello (its key's fingerprint when it sends
none): several workers may share a key, each with its own id, and an id connected with one key is
refused to any other. After that the hub keeps the worker's advertised models and load, and relays
request frames out and response frames back into per-request channels that the OpenAI ingress
reads. It sends a worker at most the ``max_concurrency`` requests its hello declared; more wait for
a free slot (backpressure), and a worker that still answers ``worker_busy`` gets the request again
when a slot frees. A frame it cannot use is answered with an error frame; a worker that disconnects
fails its open requests at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import WSMsgType, web

from worker.keys import verify_signature, worker_id_for
from worker.protocol import (
    CLOSE_AUTH_FAILED,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REPLACED,
    CLOSE_UPGRADE_REQUIRED,
    MAX_FRAME_BYTES,
    SUPPORTED_VERSIONS,
    AdvertisedModel,
    Auth,
    Cancel,
    Challenge,
    Draining,
    ErrorFrame,
    FrameError,
    Heartbeat,
    Hello,
    InstallCommand,
    Load,
    Pong,
    Request,
    StatusPush,
    UninstallCommand,
    Welcome,
    WorkloadKeys,
    audience,
    auth_transcript,
    parse_worker_frame,
    split_chunk_frame,
)
from worker.sandbox.private_relay import register_keys

log = logging.getLogger(__name__)

CHANNEL_FRAMES = 4096
"""Frames buffered per request for a slow HTTP client before the request is cut off."""
HANDSHAKE_TIMEOUT_S = 15.0
NONCE_TTL_S = 120.0
MAX_PENDING_NONCES = 1024
RECONNECT_GRACE_S = 10.0
"""How long a request waiting for a free slot keeps waiting after its workers disconnect."""
_ids = itertools.count(1)


class Channel:
    """The frames of one request as they come back from the worker."""

    def __init__(self, connection: WorkerConnection, request_id: str) -> None:
        self.connection = connection
        self.id = request_id
        self.queue: asyncio.Queue[Any] = asyncio.Queue(CHANNEL_FRAMES)
        self.finished = False

    def deliver(self, frame: Any) -> None:
        if self.queue.full():
            # The HTTP client is not reading: cut the request off rather than buffer without end.
            self.connection.close_channel(self.id, cancel=True)
            self.queue.get_nowait()
            frame = ErrorFrame(
                id=self.id, code="client_too_slow", message="the client stopped reading", status=499
            )
        self.queue.put_nowait(frame)

    async def next(self, timeout_s: float) -> Any:
        if not self.queue.empty():  # the common case while streaming: no timer, no extra task
            return self.queue.get_nowait()
        return await asyncio.wait_for(self.queue.get(), timeout=timeout_s)

    async def close(self) -> None:
        """Done with this request: if the worker has not finished it, cancel it there."""
        await self.connection.release(self.id, cancel=not self.finished)


class WorkerConnection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        worker_id: str,
        hello: Hello,
        *,
        key_id: str | None = None,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        self.ws = ws
        self.worker_id = worker_id
        self.key_id = key_id or worker_id
        self.hello = hello
        self.capacity = max(1, hello.max_concurrency)
        self._on_release = on_release
        self.models: dict[str, AdvertisedModel] = {m.id: m for m in hello.models}
        self.load = Load()
        self.draining = False
        self.connected_at = time.time()
        self.channels: dict[str, Channel] = {}
        self._send_lock = asyncio.Lock()
        self._background: set[asyncio.Future[None]] = set()
        self.frames_rejected = 0
        self.reported_errors: deque[ErrorFrame] = deque(maxlen=100)
        self.workload_keys: dict[str, str] = {}
        """kid → public key (base64) of the private-inference keys this worker registered."""

    @property
    def in_flight(self) -> int:
        return len(self.channels)

    @property
    def has_room(self) -> bool:
        return self.in_flight < self.capacity

    def serves(self, model: str) -> bool:
        return model in self.models

    def _released(self) -> None:
        if self._on_release is not None:
            self._on_release()

    async def send(self, text: str) -> None:
        async with self._send_lock:
            await self.ws.send_str(text)

    async def open(self, frame: Request | InstallCommand | UninstallCommand) -> Channel:
        """Send ``frame`` and return the channel its answers arrive on."""
        channel = Channel(self, frame.id)
        self.channels[frame.id] = channel
        try:
            await self.send(frame.dump())
        except BaseException:
            # Not sent (the socket is closing), or sent while its client hung up: free the slot,
            # and cancel a request the worker may already have. A command runs on regardless.
            self.close_channel(frame.id, cancel=isinstance(frame, Request))
            raise
        return channel

    def close_channel(self, request_id: str, *, cancel: bool) -> None:
        channel = self.channels.pop(request_id, None)
        if channel is not None:
            self._released()
        if channel is not None and cancel and not self.ws.closed:
            task = asyncio.ensure_future(self._send_quietly(Cancel(id=request_id).dump()))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def release(self, request_id: str, *, cancel: bool) -> None:
        channel = self.channels.pop(request_id, None)
        if channel is not None:
            self._released()
        if channel is not None and cancel and not self.ws.closed:
            await self._send_quietly(Cancel(id=request_id).dump())

    async def _send_quietly(self, text: str) -> None:
        with contextlib.suppress(Exception):
            await self.send(text)

    def fail_all(self, message: str) -> None:
        for request_id, channel in list(self.channels.items()):
            if channel.queue.full():
                channel.queue.get_nowait()
            channel.queue.put_nowait(
                ErrorFrame(id=request_id, code="worker_disconnected", message=message, status=502)
            )
        self.channels.clear()
        self._released()

    def describe(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "worker_name": self.hello.worker_name,
            "key_id": self.key_id,
            "version": self.hello.worker_version,
            "models": sorted(self.models),
            "in_flight": self.in_flight,
            "max_concurrency": self.capacity,
            "draining": self.draining,
            "workload_keys": sorted(self.workload_keys),
            "load": self.load.model_dump(),
            "hardware": self.hello.hardware.model_dump(),
        }


class WorkerHub:
    def __init__(
        self,
        accepted_keys: Iterable[str],
        *,
        versions: Iterable[int] = SUPPORTED_VERSIONS,
        server_id: str | None = None,
        heartbeat_interval_s: float | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        public_urls: Iterable[str] = (),
    ) -> None:
        self.accepted_keys = set(accepted_keys)
        self.public_urls: tuple[str, ...] = tuple(public_urls)
        """The base URLs workers are told to dial (``APP_SERVER_WS_URL``); signatures name one."""
        self.versions = sorted(set(versions))
        self.server_id = server_id or "sandbox-" + secrets.token_hex(4)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.max_frame_bytes = max_frame_bytes
        self.workers: dict[str, WorkerConnection] = {}
        """Connected workers by ``worker_id``."""
        # Set, and replaced by a fresh one, at every room_changed(). No lock: a waiter takes the
        # current event before it looks for room, so a change in between still wakes it (there is
        # no await between the look and the wait), and cancelling Event.wait() is always clean.
        self._changed = asyncio.Event()
        self.waiting = 0
        """Requests waiting for a free slot right now."""
        self._nonces: dict[str, tuple[str, float]] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self.auth_failures = 0

    # -- routing ---------------------------------------------------------------------------------
    def candidates(self, model: str, worker_id: str | None = None) -> list[WorkerConnection]:
        """Workers that serve ``model`` and are not draining (only ``worker_id``, when given)."""
        return [
            w
            for w in self.workers.values()
            if w.serves(model) and not w.draining and worker_id in (None, w.worker_id)
        ]

    def pick(self, model: str, worker_id: str | None = None) -> WorkerConnection | None:
        """The least-loaded worker serving ``model`` that has room (None when none has)."""
        found = [w for w in self.candidates(model, worker_id) if w.has_room]
        return (
            min(found, key=lambda w: (w.in_flight / w.capacity, w.load.in_flight))
            if found
            else None
        )

    def room_changed(self) -> None:
        """A request slot freed up or a worker came or went: wake whoever waits for room."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for_change(self, timeout_s: float) -> None:
        """Until the next :meth:`room_changed`, or ``timeout_s``."""
        changed = self._changed
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout=timeout_s)

    async def wait_for_room(
        self, model: str, timeout_s: float, *, worker_id: str | None = None
    ) -> WorkerConnection | None:
        """A worker serving ``model`` with a free slot (``worker_id`` only, when given), waiting
        up to ``timeout_s`` while every such worker is full. None at once when no worker serves
        it (the caller says why), or when the wait runs out. A request already waiting keeps its
        place for :data:`RECONNECT_GRACE_S` when the workers serving its model go away: a link
        that drops is usually back within a second."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        gone_since: float | None = None
        first = True
        while True:
            changed = self._changed  # before the look: a change after it still wakes this wait
            worker = self.pick(model, worker_id)
            if worker is not None:
                return worker
            now = loop.time()
            if self.candidates(model, worker_id):
                gone_since = None
            elif first:
                return None
            else:
                gone_since = now if gone_since is None else gone_since
                if now - gone_since >= RECONNECT_GRACE_S:
                    return None
            first = False
            remaining = deadline - now
            if gone_since is not None:
                remaining = min(remaining, gone_since + RECONNECT_GRACE_S - now)
            if remaining <= 0:
                return None
            self.waiting += 1
            try:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=remaining)
            finally:
                self.waiting -= 1

    def models(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for worker in self.workers.values():
            for model in worker.models.values():
                entry = seen.setdefault(
                    model.id,
                    {"id": model.id, "object": "model", "created": 0, "owned_by": "pendra-worker"},
                )
                entry.setdefault("workers", 0)
                entry["workers"] += 1
        return sorted(seen.values(), key=lambda m: m["id"])

    @staticmethod
    def new_request_id() -> str:
        return f"req_{next(_ids)}_{secrets.token_hex(4)}"

    # -- the WebSocket endpoint ------------------------------------------------------------------
    async def handle_connect(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=self.max_frame_bytes, heartbeat=30.0)
        await ws.prepare(request)
        self._sockets.add(ws)
        connection: WorkerConnection | None = None
        try:
            connection = await self._admit(ws, request.path)
            if connection is not None:
                await self._serve(connection)
        finally:
            self._sockets.discard(ws)
            if connection is not None:
                connection.fail_all("the worker disconnected")
                if self.workers.get(connection.worker_id) is connection:
                    del self.workers[connection.worker_id]
                self.room_changed()
                log.info("worker %s disconnected", connection.worker_id)
            await ws.close()
        return ws

    async def _refuse(self, ws: web.WebSocketResponse, code: str, message: str, close: int) -> None:
        with contextlib.suppress(Exception):
            await ws.send_str(ErrorFrame(code=code, message=message).dump())
            await ws.close(code=close, message=code.encode())

    async def _receive(self, ws: web.WebSocketResponse) -> Any:
        message = await ws.receive(timeout=HANDSHAKE_TIMEOUT_S)
        if message.type != WSMsgType.TEXT:
            return None
        return parse_worker_frame(message.data)

    async def _admit(self, ws: web.WebSocketResponse, path: str) -> WorkerConnection | None:
        nonce = secrets.token_urlsafe(24)
        await ws.send_str(
            Challenge(versions=self.versions, nonce=nonce, server_id=self.server_id).dump()
        )
        try:
            auth = await self._receive(ws)
            if not isinstance(auth, Auth):
                await self._refuse(ws, "auth_required", "expected an auth frame", CLOSE_AUTH_FAILED)
                return None
            if auth.protocol not in self.versions:
                await self._refuse(
                    ws,
                    "upgrade_required",
                    f"protocol {auth.protocol} is not supported; this control plane speaks "
                    f"{self.versions}",
                    CLOSE_UPGRADE_REQUIRED,
                )
                return None
            if not self.check_proof(auth.public_key, nonce, auth.protocol, auth.signature, path):
                self.auth_failures += 1
                log.warning("refused a worker: key not accepted or bad signature")
                await self._refuse(
                    ws, "auth_failed", "this worker key is not accepted here", CLOSE_AUTH_FAILED
                )
                return None
            hello = await self._receive(ws)
            if not isinstance(hello, Hello):
                await self._refuse(ws, "hello_required", "expected a hello", CLOSE_PROTOCOL_ERROR)
                return None
        except (asyncio.TimeoutError, FrameError) as exc:
            reason = str(exc) or "timed out"
            await self._refuse(ws, "handshake_failed", reason, CLOSE_PROTOCOL_ERROR)
            return None
        key_id = worker_id_for(auth.public_key)
        worker_id = hello.worker_id or key_id
        previous = self.workers.get(worker_id)
        if previous is not None and previous.key_id != key_id:
            # Only the key that holds an id may replace its connection: no key takes over
            # another key's worker. The newcomer retries (with backoff) like any refused link.
            log.warning("refused worker %s: that id is connected with another key", worker_id)
            await self._refuse(
                ws,
                "worker_id_taken",
                f"worker id {worker_id} is already connected with another key; give this worker "
                "its own worker_id",
                CLOSE_PROTOCOL_ERROR,
            )
            return None
        connection = WorkerConnection(
            ws, worker_id, hello, key_id=key_id, on_release=self.room_changed
        )
        self.workers[worker_id] = connection
        if previous is not None:  # the same worker reconnected before its old socket timed out
            previous.fail_all("the worker reconnected")
            with contextlib.suppress(Exception):
                await previous.ws.close(code=CLOSE_REPLACED, message=b"replaced")
        self.room_changed()
        await ws.send_str(
            Welcome(
                worker_id=worker_id,
                session_id=secrets.token_hex(8),
                protocol=auth.protocol,
                heartbeat_interval_s=self.heartbeat_interval_s,
                max_frame_bytes=self.max_frame_bytes,
            ).dump()
        )
        log.info(
            "worker %s (%s) connected with %d model(s), up to %d request(s) at once",
            worker_id,
            hello.worker_name or "unnamed",
            len(connection.models),
            connection.capacity,
        )
        return connection

    def audiences(self, path: str) -> list[str]:
        """The audiences a signature for ``path`` may name: one per configured public URL."""
        return [audience(base.rstrip("/") + path) for base in self.public_urls]

    def check_proof(
        self, public_key: str, nonce: str, protocol: int, signature: str, path: str
    ) -> bool:
        """Whether ``signature`` proves ``public_key`` (an accepted one) signed this handshake
        for ``path`` at one of :attr:`public_urls`. No public URL configured: nothing verifies."""
        if not any(hmac.compare_digest(public_key, k) for k in self.accepted_keys):
            return False
        for aud in self.audiences(path):
            transcript = auth_transcript(
                protocol=protocol,
                nonce=nonce,
                server_id=self.server_id,
                public_key=public_key,
                audience=aud,
            )
            if verify_signature(public_key, transcript, signature):
                return True
        return False

    async def _serve(self, connection: WorkerConnection) -> None:
        async for message in connection.ws:
            if message.type == WSMsgType.TEXT:
                await self._on_text(connection, message.data)
            elif message.type == WSMsgType.BINARY:
                connection.frames_rejected += 1
                await connection.send(
                    ErrorFrame(code="malformed_frame", message="binary frames are not used").dump()
                )
            elif message.type == WSMsgType.ERROR:
                break

    async def _on_text(self, connection: WorkerConnection, text: str) -> None:
        raw = split_chunk_frame(text)  # the per-token path: no model validation, no re-encoding
        if raw is not None:
            channel = connection.channels.get(raw.id)
            if channel is not None:
                channel.deliver(raw)
            return
        try:
            frame = parse_worker_frame(text)
        except FrameError as exc:
            connection.frames_rejected += 1
            await connection.send(
                ErrorFrame(id=exc.request_id, code=exc.code, message=exc.message).dump()
            )
            return
        request_id = getattr(frame, "id", None)
        if request_id is not None:
            channel = connection.channels.get(request_id)
            if channel is not None:
                if frame.type in ("end", "response", "error", "install_done"):
                    channel.finished = True
                channel.deliver(frame)
            return  # a late frame of a request the client gave up on: dropped
        if isinstance(frame, Heartbeat):
            connection.load = frame.load
        elif isinstance(frame, StatusPush):
            connection.models = {m.id: m for m in frame.models}
            self.room_changed()  # a waiting request may now have a worker for its model
        elif isinstance(frame, WorkloadKeys):
            await connection.send(register_keys(connection, frame))
        elif isinstance(frame, Draining):
            connection.draining = True
            self.room_changed()
            log.info("worker %s is draining", connection.worker_id)
        elif isinstance(frame, ErrorFrame):
            connection.reported_errors.append(frame)
            log.warning("worker %s reported: %s", connection.worker_id, frame.code)
        elif isinstance(frame, Pong):
            pass
        else:
            connection.frames_rejected += 1
            await connection.send(
                ErrorFrame(
                    code="unexpected_frame", message=f"{frame.type} frames are not expected now"
                ).dump()
            )

    # -- key check over HTTP ---------------------------------------------------------------------
    async def handle_verify(self, request: web.Request) -> web.Response:
        """Two-step challenge-response over HTTP (docs/protocol.md, "Checking a key")."""
        try:
            data = await request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("public_key"), str):
            return _json_error(400, "invalid_request_error", 'send {"public_key": ...}')
        now = time.monotonic()
        self._prune_nonces(now)
        public_key = data["public_key"]
        if "signature" not in data:
            if len(self._nonces) >= MAX_PENDING_NONCES:
                return _json_error(429, "rate_limited", "too many key checks at once; retry")
            nonce = secrets.token_urlsafe(24)
            self._nonces[nonce] = (public_key, now + NONCE_TTL_S)
            return web.json_response(
                {"nonce": nonce, "server_id": self.server_id, "versions": self.versions}
            )
        nonce = data.get("nonce")
        entry = self._nonces.pop(nonce, None) if isinstance(nonce, str) else None
        protocol = data.get("protocol")
        signature = data.get("signature")
        if (
            entry is None
            or entry[0] != public_key
            or not isinstance(protocol, int)
            or protocol not in self.versions
            or not isinstance(signature, str)
            or not self.check_proof(public_key, nonce, protocol, signature, request.path)
        ):
            self.auth_failures += 1
            return _json_error(401, "auth_failed", "this worker key is not accepted here")
        return web.json_response({"ok": True, "worker_id": worker_id_for(public_key)})

    def _prune_nonces(self, now: float) -> None:
        for nonce in [n for n, (_, expires) in self._nonces.items() if expires < now]:
            del self._nonces[nonce]

    async def close(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"sandbox stopping")


def _json_error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"message": message, "type": code, "code": code, "param": None}}
    return web.json_response(body, status=status)

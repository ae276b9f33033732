"""The worker's outbound link to the control plane: connect, authenticate, serve, reconnect.

One long-lived WebSocket (``wss://`` with verification on; ``ws://`` only to loopback or with the
explicit opt-in in settings). A dropped link is re-dialled with jittered exponential backoff; a
rejected key or an unsupported protocol version ends :meth:`LinkClient.run` with a final error
instead, so a bad key never turns into a retry storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

import aiohttp

from worker import __version__
from worker.events import EventBus
from worker.keys import WorkerKey
from worker.link.advertise import advertised, gpu_readings, hardware
from worker.link.backoff import Backoff
from worker.link.errors import AuthRejected, LinkProtocolError, UpgradeRequired
from worker.link.handshake import handshake, raise_for_close
from worker.link.session import Commands, Session
from worker.link.tls import client_ssl_context
from worker.protocol import (
    MAX_FRAME_BYTES,
    PROTOCOL_HEADER,
    SUPPORTED_VERSIONS,
    VERSION_HEADER,
    Hello,
)
from worker.router import Router

if TYPE_CHECKING:
    from worker.private_inference.service import PrivateInference

log = logging.getLogger(__name__)


class LinkState(str, Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    OFFLINE = "offline"
    DRAINING = "draining"


def _handshake_http_error(exc: aiohttp.WSServerHandshakeError) -> Exception:
    """Map an HTTP refusal of the upgrade itself to the same final errors as the frames."""
    if exc.status in (401, 403):
        return AuthRejected(f"The control plane refused the worker key (HTTP {exc.status}).")
    if exc.status == 426:
        return UpgradeRequired("The control plane requires a newer worker (HTTP 426).")
    return LinkProtocolError(f"the control plane refused the WebSocket upgrade (HTTP {exc.status})")


UPGRADE_TIMEOUT_S = 30.0
"""How long the WebSocket upgrade (TCP, TLS, HTTP 101) may take before the attempt counts as
failed and the link backs off and retries."""
STOP_GRACE_S = 5.0
"""How long a stopping link waits for its socket to close cleanly before cutting it."""


class LinkClient:
    def __init__(
        self,
        *,
        key: WorkerKey,
        router: Router,
        url: str,
        events: EventBus | None = None,
        commands: Commands | None = None,
        heartbeat_interval_s: float = 15.0,
        ca_file: Any = None,
        gpus: Callable[[], list[dict[str, Any]]] = gpu_readings,
        supported: Sequence[int] = SUPPORTED_VERSIONS,
        backoff: Backoff | None = None,
        max_concurrency: int = 1,
        worker_id: str | None = None,
        worker_name: str | None = None,
        private: PrivateInference | None = None,
    ) -> None:
        self.key = key
        self.router = router
        self.url = url
        self.events = events
        self.commands = commands
        self.heartbeat_interval_s = heartbeat_interval_s
        self.gpus = gpus
        self.supported = tuple(supported)
        self.backoff = backoff if backoff is not None else Backoff()
        self.max_concurrency = max_concurrency
        self.own_id = worker_id
        """The worker's configured ``worker_id``, sent in the hello (the registration)."""
        self.worker_name = worker_name
        self.private = private
        self._ssl = client_ssl_context(ca_file) if url.startswith("wss://") else None
        self._state = LinkState.OFFLINE
        self._session: Session | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stop = asyncio.Event()
        self._draining = False
        self.connections = 0
        self.worker_id: str | None = None
        self.on_drain_requested: Callable[[], None] | None = None
        self.last_error: str | None = None
        """Why the link is down (the last failed attempt); ``None`` while connected."""
        self.retry_at: float | None = None
        """Unix time of the next reconnect attempt while waiting for it, else ``None``."""
        self._wake = asyncio.Event()

    # -- state -----------------------------------------------------------------------------------
    @property
    def state(self) -> LinkState:
        return self._state

    def _set_state(self, state: LinkState) -> None:
        if self._draining and state is LinkState.CONNECTED:
            state = LinkState.DRAINING
        if state is not self._state:
            self._state = state
            log.info("link %s", state.value)
            if self.events is not None:
                self.events.publish("state", state=state.value, link=self.describe())

    def describe(self) -> dict[str, Any]:
        """Why the link is down and when it tries again (``status`` → ``worker.link``)."""
        retry_in = None if self.retry_at is None else max(0.0, self.retry_at - time.time())
        return {
            "reason": self.last_error,
            "retry_at": None if self.retry_at is None else round(self.retry_at, 3),
            "retry_in_s": None if retry_in is None else round(retry_in, 1),
            "attempt": self.backoff.attempt,
        }

    def retry_now(self) -> bool:
        """Skip the rest of the reconnect wait; False when no wait is running."""
        if self.retry_at is None or self._stop.is_set():
            return False
        self._wake.set()
        return True

    @property
    def session(self) -> Session | None:
        return self._session

    # -- running ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Stay connected until :meth:`stop`; raises only the final errors."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=15)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not self._stop.is_set():
                self._set_state(LinkState.CONNECTING)
                connected_for: float | None = None
                reason = "the connection closed"
                try:
                    connected_for = await self._attempt(http)
                    reason = "the control plane closed the connection"
                except aiohttp.WSServerHandshakeError as exc:
                    error = _handshake_http_error(exc)
                    if isinstance(error, (AuthRejected, UpgradeRequired)):
                        self.last_error = str(error)
                        self._set_state(LinkState.OFFLINE)
                        raise error from None
                    reason = str(error)
                    log.warning("link: %s", error)
                except (AuthRejected, UpgradeRequired) as exc:
                    self.last_error = str(exc)
                    self._set_state(LinkState.OFFLINE)
                    raise
                except aiohttp.ClientConnectorCertificateError as exc:
                    reason = "the control plane's TLS certificate did not verify"
                    log.error(
                        "link: the control plane's TLS certificate did not verify (%s); for a "
                        "private CA set PENDRA_CA_FILE to its PEM file",
                        exc.certificate_error,
                    )
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                    reason = f"cannot reach {self.url}: {exc or type(exc).__name__}"
                    log.warning("link: %s", reason)
                except LinkProtocolError as exc:
                    reason = str(exc)
                    log.warning("link: %s", exc)
                if self._stop.is_set():
                    break
                self.backoff.connection_ended(connected_for)
                delay = self.backoff.next_delay()
                self.last_error = reason
                self.retry_at = time.time() + delay
                self._wake.clear()
                self._set_state(LinkState.OFFLINE)
                log.info("link: reconnecting in %.1f s", delay)
                await self._wait_to_retry(delay)
                self.retry_at = None
        self.retry_at = None
        self._set_state(LinkState.OFFLINE)

    async def _attempt(self, http: aiohttp.ClientSession) -> float | None:
        """One connection, ended by :meth:`stop` however far it got.

        On stop an open socket is closed, which ends a served session; a connection still
        being opened has no socket to close, so that attempt is cancelled instead: a worker
        asked to stop while its control plane is slow to answer (or accepts TCP and never
        answers) must exit, not wait on that connection.
        """
        attempt = asyncio.ensure_future(self._connect_once(http))
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not attempt.done():
                ws = self._ws
                if ws is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(ws.close(), STOP_GRACE_S)
                    await asyncio.wait({attempt}, timeout=STOP_GRACE_S)
        finally:
            stopped.cancel()
            if not attempt.done():
                attempt.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await attempt
        if attempt.cancelled():
            return None
        return attempt.result()

    async def _wait_to_retry(self, delay: float) -> None:
        """Sleep ``delay`` seconds, less when stopped or told to retry now (:meth:`retry_now`)."""
        waits = {
            asyncio.ensure_future(self._stop.wait()),
            asyncio.ensure_future(self._wake.wait()),
        }
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        if self._wake.is_set() and not self._stop.is_set():
            log.info("link: reconnecting now, as asked")

    async def _hello(self) -> Hello:
        # The hardware inventory always comes from a one-shot probe (worker.gpu when present),
        # whether or not a sampler feeds the heartbeats.
        gpus = await asyncio.to_thread(gpu_readings)
        backends, models, capabilities = advertised(self.router.registry)
        return Hello(
            worker_version=__version__,
            protocol=max(self.supported),
            hardware=hardware(gpus),
            backends=backends,
            models=models,
            capabilities=capabilities,
            max_concurrency=self.max_concurrency,
            previous_attempts=self.backoff.attempt,
            worker_id=self.own_id,
            worker_name=self.worker_name,
        )

    async def _connect_once(self, http: aiohttp.ClientSession) -> float | None:
        headers = {PROTOCOL_HEADER: str(max(self.supported)), VERSION_HEADER: __version__}
        # Bounded: a control plane (or a proxy in front of it) that accepts the TCP connection
        # and never answers the upgrade is retried like one that refuses it.
        try:
            ws = await asyncio.wait_for(
                http.ws_connect(
                    self.url,
                    headers=headers,
                    max_msg_size=MAX_FRAME_BYTES,
                    heartbeat=max(self.heartbeat_interval_s, 1.0),
                    ssl=self._ssl if self._ssl is not None else True,
                    compress=0,
                ),
                UPGRADE_TIMEOUT_S,
            )
        except asyncio.TimeoutError:
            raise LinkProtocolError(
                f"{self.url} accepted the connection but did not complete the WebSocket "
                f"upgrade within {UPGRADE_TIMEOUT_S:g} s"
            ) from None
        self._ws = ws
        try:
            welcome = await handshake(
                ws, key=self.key, url=self.url, hello=await self._hello(), supported=self.supported
            )
            self.worker_id = welcome.worker_id
            self.connections += 1
            session = Session(
                ws,
                router=self.router,
                events=self.events,
                commands=self.commands,
                heartbeat_interval_s=welcome.heartbeat_interval_s or self.heartbeat_interval_s,
                gpus=self.gpus,
                max_frame_bytes=min(welcome.max_frame_bytes, MAX_FRAME_BYTES),
                on_drain_requested=self._drain_requested,
                private=self.private,
            )
            session.draining = self._draining
            self._session = session
            self.last_error = None
            self._set_state(LinkState.CONNECTED)
            log.info("link: connected as %s (protocol %d)", welcome.worker_id, welcome.protocol)
            started = time.monotonic()
            await session.serve()
            if self._stop.is_set():
                log.info("link: connection closed (the worker is stopping)")
                return time.monotonic() - started
            log.warning("link: connection closed (code %s)", ws.close_code)
            raise_for_close(ws.close_code)  # a key revoked mid-session is final too
            return time.monotonic() - started
        finally:
            self._session = None
            self._ws = None
            await ws.close()

    def _drain_requested(self) -> None:
        self._draining = True
        self._set_state(LinkState.DRAINING)
        if self.on_drain_requested is not None:
            self.on_drain_requested()

    async def drain(self, timeout_s: float) -> int:
        """Stop taking requests and let in-flight ones finish (bounded); returns those cut off."""
        self._draining = True
        self._set_state(LinkState.DRAINING)
        session = self._session
        if session is None:
            return 0
        return await session.drain(timeout_s)

    async def stop(self) -> None:
        """End :meth:`run` (await its task after this): the connection is closed, or cut if
        it is still being opened, requests still running on it are cancelled, and no
        reconnect follows."""
        self._stop.set()

"""Client of the running worker's admin API, used by the CLI (`pendra status`, `logs`, `models`,
`backends`) and the terminal app.

Every call opens its own short connection on the Unix socket (cheap, and nothing to leak or close).
When no worker listens — no socket file, or a socket nobody accepts on — calls raise
:class:`~worker.errors.NoWorkerRunning`; errors the worker reports come back as the same
:class:`~worker.errors.PendraError` class with its message and hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from worker.admin import wire
from worker.admin.errors import AdminAccessDenied
from worker.errors import NoWorkerRunning, PendraError
from worker.settings import Settings

CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 120.0  # drain waits for in-flight requests; installs answer at once
_BASE = "http://pendra-worker"  # host is ignored on a Unix socket; it only names the peer


class EventStream:
    """An open event stream: subscribed on the worker once entered; iterate it for events."""

    def __init__(self, session: aiohttp.ClientSession, response: aiohttp.ClientResponse) -> None:
        self._session = session
        self._response = response

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        try:
            async for raw in self._response.content:
                line = raw.strip()
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a dying worker; the next check below ends the stream
                if isinstance(event, dict) and event.get("kind") != wire.KEEPALIVE_KIND:
                    yield event
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ConnectionError):
            pass
        raise NoWorkerRunning("The Pendra worker stopped (its event stream ended).")

    async def aclose(self) -> None:
        self._response.release()
        await self._session.close()


class AdminClient:
    def __init__(self, socket_path: Path | str, *, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.socket_path = Path(socket_path)
        self.timeout_s = timeout_s

    @classmethod
    def for_settings(cls, settings: Settings, *, timeout_s: float = CALL_TIMEOUT_S) -> AdminClient:
        """The client of the worker running for this PENDRA_HOME: as a process or service, or
        in the Docker stack (:func:`worker.admin.locate.admin_socket_for`)."""
        from worker.admin.locate import admin_socket_for

        return cls(admin_socket_for(settings), timeout_s=timeout_s)

    # -- the API -----------------------------------------------------------------------------------
    async def ping(self) -> dict[str, Any]:
        """``{"pid", "version"}`` of the running worker; raises NoWorkerRunning without one."""
        return await self._call("GET", wire.PATH_PING)

    async def status(self) -> dict[str, Any]:
        return await self._call("GET", wire.PATH_STATUS)

    async def install(self, ref: str, backend: str | None = None) -> dict[str, Any]:
        return await self._call("POST", wire.PATH_INSTALLS, {"ref": ref, "backend": backend})

    async def cancel_install(self, job_id: str) -> dict[str, Any]:
        path = wire.PATH_CANCEL_INSTALL.format(job_id=quote(job_id, safe=""))
        return await self._call("POST", path)

    async def uninstall(self, ref: str, backend: str | None = None) -> dict[str, Any]:
        return await self._call("POST", wire.PATH_UNINSTALL, {"ref": ref, "backend": backend})

    async def refresh_backends(self) -> dict[str, Any]:
        return await self._call("POST", wire.PATH_REFRESH_BACKENDS)

    async def drain(self) -> dict[str, Any]:
        return await self._call("POST", wire.PATH_DRAIN)

    async def catalogue(self) -> dict[str, Any]:
        """The catalogue the worker sees (its control plane, or its cached copy)."""
        return await self._call("GET", wire.PATH_CATALOGUE)

    async def rotate_workload_key(self) -> dict[str, Any]:
        """A new workload key; answers the ``private_inference`` status block after the change."""
        return await self._call("POST", wire.PATH_ROTATE_WORKLOAD_KEY)

    async def logs(self, tail: int = 200) -> list[str]:
        body = await self._call("GET", wire.PATH_LOGS, params={"tail": str(max(0, tail))})
        lines = body.get("lines") if isinstance(body, dict) else None
        return [str(line) for line in lines] if isinstance(lines, list) else []

    async def history(self) -> dict[str, Any]:
        """The metrics history: ``{"interval_s", "window_s", "samples": [...]}``, oldest first."""
        body = await self._call("GET", wire.PATH_HISTORY)
        return body if isinstance(body, dict) else {"samples": []}

    async def recent_requests(self, limit: int = 200) -> list[dict[str, Any]]:
        """Running, then recently finished requests (metadata only), newest first."""
        body = await self._call("GET", wire.PATH_REQUESTS, params={"limit": str(max(0, limit))})
        listed = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(listed, list):
            return []
        return [item for item in listed if isinstance(item, dict)]

    async def retry_link(self) -> dict[str, Any]:
        """Reconnect to the control plane now instead of waiting out the backoff."""
        return await self._call("POST", wire.PATH_LINK_RETRY)

    async def events(self, kinds: set[str] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Events as the worker publishes them, until the worker stops (then NoWorkerRunning)."""
        stream = await self.open_events(kinds)
        try:
            async for event in stream:
                yield event
        finally:
            await stream.aclose()

    async def open_events(self, kinds: set[str] | None = None) -> EventStream:
        """Subscribe now and return the stream; events published from here on are in it."""
        session = self._session(total=None)
        params = {"kinds": ",".join(sorted(kinds))} if kinds else None
        try:
            response = await self._request(session, "GET", wire.PATH_EVENTS, params=params)
        except BaseException:
            await session.close()
            raise
        return EventStream(session, response)

    @contextlib.asynccontextmanager
    async def event_stream(self, kinds: set[str] | None = None) -> AsyncIterator[EventStream]:
        stream = await self.open_events(kinds)
        try:
            yield stream
        finally:
            await stream.aclose()

    # -- plumbing ---------------------------------------------------------------------------------
    def _session(self, total: float | None) -> aiohttp.ClientSession:
        if not self.socket_path.exists():
            raise NoWorkerRunning()
        return aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self.socket_path)),
            timeout=aiohttp.ClientTimeout(total=total, connect=CONNECT_TIMEOUT_S),
        )

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        async with self._session(total=self.timeout_s) as session:
            response = await self._request(session, method, path, body=body, params=params)
            async with response:
                try:
                    return await response.json(content_type=None)
                except (json.JSONDecodeError, aiohttp.ClientPayloadError):
                    raise PendraError(
                        f"The worker sent an unreadable answer to {path}.",
                        hint="check `pendra logs`; restart the worker if this persists",
                    ) from None

    async def _request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        try:
            response = await session.request(method, _BASE + path, json=body, params=params)
        except aiohttp.ClientConnectorError as exc:
            raise self._connect_error(exc.os_error) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise NoWorkerRunning(
                f"The Pendra worker closed the connection ({exc.__class__.__name__}); it may be "
                "stopping."
            ) from None
        except asyncio.TimeoutError:
            raise PendraError(
                f"The worker did not answer {path} within {self.timeout_s:.0f} s.",
                hint="it may be overloaded or stuck; check `pendra logs`",
            ) from None
        if response.status >= 400:
            try:
                payload = await response.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ClientPayloadError):
                payload = None
            response.release()
            raise wire.error_from_body(payload, response.status)
        return response

    def _connect_error(self, error: OSError) -> PendraError:
        if error.errno in (errno.EACCES, errno.EPERM):
            return AdminAccessDenied(
                f"Permission denied on the worker's admin socket {self.socket_path}.",
                hint="the worker runs as another user; run this command as that user",
            )
        return NoWorkerRunning()


T = TypeVar("T")


async def call_running_worker(
    settings: Settings, call: Callable[[AdminClient], Awaitable[T]]
) -> T | None:
    """``call(client)`` on the running worker's admin API, or ``None`` when no worker runs.

    For commands that work either way (``pendra models``, ``pendra backends``): through the worker
    when there is one, so the two never fight over the modelstore, else directly.
    """
    try:
        return await call(AdminClient.for_settings(settings))
    except NoWorkerRunning:
        return None

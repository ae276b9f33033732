"""The local admin API: HTTP over ``$PENDRA_HOME/run/admin.sock``, served from an
:class:`~worker.admin.target.AdminTarget`.

Only the worker's owner can reach it: the run directory is 0700, the socket 0600 from before it
accepts, and each request's peer uid is checked with ``SO_PEERCRED`` where the OS has it. Routes and
bodies are in docs/admin-api.md. The HTTP itself is :mod:`worker.admin.http` (one request per
connection, asyncio streams only), so the idle worker does not carry a web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from worker import __version__
from worker.admin import wire
from worker.admin.errors import AdminAccessDenied
from worker.admin.http import HttpError, Request, Responder, handle_connection
from worker.admin.locate import refuse_beside_the_stack_worker
from worker.admin.peer import peer_allowed, peer_uid
from worker.admin.socket_file import (
    InstanceLock,
    bind_private_socket,
    clear_stale_socket,
    prepare_run_dir,
)
from worker.admin.target import AdminTarget
from worker.errors import BadRequest, NotSupported, PendraError

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
STREAM_QUEUE = 2000
SOCKET_CHECK_S = 2.0
"""How often the server checks that its socket file is still the one it listens on."""

JSON = "application/json; charset=utf-8"
Handler = Callable[[Request], Awaitable[Any]]


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _status_of(error: PendraError) -> int:
    return error.http_status if 400 <= error.http_status < 600 else 500


def _http_error_body(exc: HttpError) -> tuple[bytes, str]:
    error = PendraError(exc.message)
    error.code = "not_found" if exc.status == 404 else "http_error"
    return wire.to_json(wire.error_body(error)).encode("utf-8"), JSON


class _Created:
    """A handler's answer with a status other than 200."""

    def __init__(self, data: Any, status: int) -> None:
        self.data = data
        self.status = status


class AdminServer:
    """Serves ``target`` on ``socket_path``; ``start()`` claims PENDRA_HOME, ``stop()`` frees it."""

    def __init__(
        self,
        target: AdminTarget,
        socket_path: Path,
        *,
        keepalive_s: float = KEEPALIVE_S,
        socket_check_s: float = SOCKET_CHECK_S,
    ) -> None:
        self.target = target
        self.socket_path = Path(socket_path)
        self.keepalive_s = keepalive_s
        self.socket_check_s = socket_check_s
        self._lock = InstanceLock(self.socket_path.parent)
        self._servers: list[asyncio.base_events.Server] = []
        self._running = False
        self._bound_inode: int | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        self._routes = self._build_routes()
        self.started_at: float | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._running:
            return
        prepare_run_dir(self.socket_path.parent)
        self._lock.acquire()
        try:
            refuse_beside_the_stack_worker(self.socket_path)
            clear_stale_socket(self.socket_path)
            await self._listen()
        except BaseException:
            self._lock.release()
            raise
        self._running = True
        self.started_at = time.time()
        self._watchdog = asyncio.create_task(self._keep_socket(), name="admin-socket-watchdog")
        log.info("admin API listening on %s", self.socket_path)

    async def _listen(self) -> None:
        sock = bind_private_socket(self.socket_path)
        server = await asyncio.start_unix_server(self._connection, sock=sock)
        self._servers.append(server)
        self._bound_inode = self.socket_path.stat().st_ino

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle_connection(
            reader,
            writer,
            self._dispatch,
            max_body=wire.MAX_BODY_BYTES,
            on_error=_http_error_body,
        )

    async def _keep_socket(self) -> None:
        """Re-create the socket file if someone deletes or replaces it (a tmp cleaner, a stray
        ``rm``): otherwise ``pendra status`` would say no worker runs while this one serves."""
        while True:
            await asyncio.sleep(self.socket_check_s)
            try:
                current = self.socket_path.lstat().st_ino
            except FileNotFoundError:
                current = None
            if current == self._bound_inode or not self._running:
                continue
            log.warning("admin socket %s was removed; creating it again", self.socket_path)
            try:
                prepare_run_dir(self.socket_path.parent)
                if current is not None:
                    clear_stale_socket(self.socket_path)
                await self._listen()
            except PendraError as exc:
                log.error("cannot re-create the admin socket: %s", exc.message)

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        for server in self._servers:
            server.close()
        for task in list(self._streams):
            task.cancel()  # event streams never end on their own
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        self._servers.clear()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._lock.release()
        log.info("admin API stopped")

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- routing --------------------------------------------------------------------------------
    def _build_routes(self) -> list[tuple[str, re.Pattern[str], Handler]]:
        """(method, path pattern, handler); ``{name}`` in a path matches one segment."""
        table = [
            ("GET", wire.PATH_PING, self._ping),
            ("GET", wire.PATH_STATUS, self._status),
            ("GET", wire.PATH_EVENTS, self._events),
            ("GET", wire.PATH_LOGS, self._logs),
            ("GET", wire.PATH_CATALOGUE, self._catalogue),
            ("POST", wire.PATH_INSTALLS, self._install),
            ("POST", wire.PATH_CANCEL_INSTALL, self._cancel_install),
            ("POST", wire.PATH_UNINSTALL, self._uninstall),
            ("POST", wire.PATH_REFRESH_BACKENDS, self._refresh_backends),
            ("POST", wire.PATH_DRAIN, self._drain),
            ("GET", wire.PATH_HISTORY, self._history),
            ("GET", wire.PATH_REQUESTS, self._requests),
            ("POST", wire.PATH_LINK_RETRY, self._retry_link),
            ("POST", wire.PATH_ROTATE_WORKLOAD_KEY, self._rotate_workload_key),
        ]
        return [(method, _path_pattern(path), handler) for method, path, handler in table]

    def _route(self, request: Request) -> Handler:
        allowed = False
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if method == request.method:
                request.match_info = {k: unquote(v) for k, v in match.groupdict().items()}
                return handler
            allowed = True
        if allowed:
            raise HttpError(405, f"{request.method} {request.path}: Method Not Allowed")
        raise HttpError(404, f"{request.method} {request.path}: Not Found")

    async def _dispatch(self, request: Request, responder: Responder) -> None:
        """The peer check, the route, the handler, and one error envelope for every failure."""
        uid = peer_uid(request.peer)  # asyncio's TransportSocket: getsockopt works on it
        if not peer_allowed(uid):
            log.warning("admin API refused a connection from uid %s", uid)
            error = AdminAccessDenied(
                f"This worker belongs to uid {os.geteuid()}; uid {uid} may not control it.",
                hint="run the command as the user that runs the worker",
            )
            await self._send_error(responder, error)
            return
        try:
            handler = self._route(request)
            if handler == self._events:  # the one answer that is a stream
                await self._stream_events(request, responder)
                return
            result = await handler(request)
        except HttpError as exc:
            body, content_type = _http_error_body(exc)
            await responder.send(exc.status, body, content_type)
            return
        except PendraError as exc:
            await self._send_error(responder, exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("admin API %s %s failed", request.method, request.path)
            await self._send_error(
                responder,
                PendraError(
                    f"The worker failed while handling {request.path}.",
                    hint="see `pendra logs` for the details",
                ),
            )
            return
        status = 200
        if isinstance(result, _Created):
            result, status = result.data, result.status
        await responder.send(status, wire.to_json(result).encode("utf-8"), JSON)

    @staticmethod
    async def _send_error(responder: Responder, error: PendraError) -> None:
        body = wire.to_json(wire.error_body(error)).encode("utf-8")
        await responder.send(_status_of(error), body, JSON)

    # -- handlers ---------------------------------------------------------------------------------
    async def _ping(self, request: Request) -> Any:
        return {"pid": os.getpid(), "version": __version__}

    async def _status(self, request: Request) -> Any:
        return await _resolve(self.target.status())

    async def _logs(self, request: Request) -> Any:
        raw = request.query.get("tail", "200")
        try:
            tail = int(raw)
        except ValueError:
            raise BadRequest(f"tail must be a whole number, not {raw!r}") from None
        tail = max(0, min(tail, wire.MAX_LOG_TAIL))
        lines = await _resolve(self.target.log_tail(tail)) if tail else []
        return {"lines": [str(line) for line in lines]}

    async def _catalogue(self, request: Request) -> Any:
        return await _resolve(self.target.catalogue())

    async def _install(self, request: Request) -> Any:
        ref, backend = self._ref_and_backend(request)
        job = await _resolve(self.target.install(ref, backend))
        return _Created(job, 202)

    async def _cancel_install(self, request: Request) -> Any:
        job_id = request.match_info["job_id"]
        result = await _resolve(self.target.cancel_install(job_id))
        return result if result is not None else {"cancelled": job_id}

    async def _uninstall(self, request: Request) -> Any:
        ref, backend = self._ref_and_backend(request)
        result = await _resolve(self.target.uninstall(ref, backend))
        return result if result is not None else {"ref": ref, "removed": True}

    async def _refresh_backends(self, request: Request) -> Any:
        return await _resolve(self.target.refresh_backends())

    async def _drain(self, request: Request) -> Any:
        result = await _resolve(self.target.drain())
        return result if result is not None else {"state": "draining"}

    async def _history(self, request: Request) -> Any:
        history = getattr(self.target, "history_doc", None)
        if history is None:
            return {"interval_s": None, "window_s": None, "samples": []}
        return await _resolve(history())

    async def _requests(self, request: Request) -> Any:
        raw = request.query.get("limit", "200")
        try:
            limit = int(raw)
        except ValueError:
            raise BadRequest(f"limit must be a whole number, not {raw!r}") from None
        if limit < 0:
            raise BadRequest(f"limit must be 0 or more, not {limit}")
        limit = min(limit, wire.MAX_REQUESTS_LISTED)  # more than are kept: all of them
        recent = getattr(self.target, "recent_requests", None)
        listed = await _resolve(recent(limit)) if recent is not None and limit else []
        return {"requests": list(listed)}

    async def _retry_link(self, request: Request) -> Any:
        retry = getattr(self.target, "retry_link", None)
        if retry is None:
            raise BadRequest("This worker cannot be told to reconnect.")
        return await _resolve(retry())

    async def _rotate_workload_key(self, request: Request) -> Any:
        rotate = getattr(self.target, "rotate_workload_key", None)
        if rotate is None:
            raise NotSupported("This worker has no workload key to rotate.")
        return await _resolve(rotate())

    async def _events(self, request: Request) -> Any:
        """Routed here; answered by :meth:`_stream_events`, which owns the connection."""
        return None

    async def _stream_events(self, request: Request, responder: Responder) -> None:
        kinds = wire.parse_kinds(request.query.get("kinds"))
        subscription = self.target.events.subscribe(maxsize=STREAM_QUEUE, kinds=kinds)
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        try:
            await responder.start_stream(wire.NDJSON)
            while True:
                try:
                    event = await asyncio.wait_for(subscription.get(), self.keepalive_s)
                except asyncio.TimeoutError:
                    event = {"kind": wire.KEEPALIVE_KIND, "ts": time.time()}
                await responder.write(wire.encode_event(event))
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping
        finally:
            subscription.close()
            if task is not None:
                self._streams.discard(task)

    @staticmethod
    def _ref_and_backend(request: Request) -> tuple[str, str | None]:
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest('the request body must be an object like {"ref": "qwen3.6:27b"}')
        ref, backend = body.get("ref"), body.get("backend")
        if not isinstance(ref, str) or not ref.strip():
            raise BadRequest("ref is required, e.g. qwen3.6:27b")
        if backend is not None and (not isinstance(backend, str) or not backend.strip()):
            raise BadRequest("backend must be a backend name such as pendra or ollama")
        return ref.strip(), backend.strip() if backend else None


def _path_pattern(path: str) -> re.Pattern[str]:
    """``/v1/installs/{job_id}/cancel`` → a pattern with a named group per ``{name}``."""
    parts = re.split(r"\{(\w+)\}", path)
    pattern = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(pattern)

"""The local admin API: HTTP over ``$PENDRA_HOME/run/admin.sock`` (aiohttp), served from an
:class:`~worker.admin.target.AdminTarget`.

Only the worker's owner can reach it: the run directory is 0700, the socket 0600 from before it
accepts, and each request's peer uid is checked with ``SO_PEERCRED`` where the OS has it. Routes and
bodies are in docs/admin-api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from worker import __version__
from worker.admin import wire
from worker.admin.errors import AdminAccessDenied
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

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=wire.to_json(data), status=status, content_type="application/json", charset="utf-8"
    )


def _error_response(error: PendraError) -> web.Response:
    status = error.http_status if 400 <= error.http_status < 600 else 500
    return _json_response(wire.error_body(error), status=status)


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
        self._runner: web.AppRunner | None = None
        self._bound_inode: int | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        self.started_at: float | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._runner is not None:
            return
        prepare_run_dir(self.socket_path.parent)
        self._lock.acquire()
        try:
            clear_stale_socket(self.socket_path)
            runner = web.AppRunner(
                self._build_app(), access_log=None, handle_signals=False, shutdown_timeout=2.0
            )
            await runner.setup()
            await self._listen(runner)
        except BaseException:
            self._lock.release()
            raise
        self._runner = runner
        self.started_at = time.time()
        self._watchdog = asyncio.create_task(self._keep_socket(), name="admin-socket-watchdog")
        log.info("admin API listening on %s", self.socket_path)

    async def _listen(self, runner: web.AppRunner) -> None:
        sock = bind_private_socket(self.socket_path)
        await web.SockSite(runner, sock).start()
        self._bound_inode = self.socket_path.stat().st_ino

    async def _keep_socket(self) -> None:
        """Re-create the socket file if someone deletes or replaces it (a tmp cleaner, a stray
        ``rm``): otherwise ``pendra status`` would say no worker runs while this one serves."""
        while True:
            await asyncio.sleep(self.socket_check_s)
            try:
                current = self.socket_path.lstat().st_ino
            except FileNotFoundError:
                current = None
            if current == self._bound_inode or self._runner is None:
                continue
            log.warning("admin socket %s was removed; creating it again", self.socket_path)
            try:
                prepare_run_dir(self.socket_path.parent)
                if current is not None:
                    clear_stale_socket(self.socket_path)
                await self._listen(self._runner)
            except PendraError as exc:
                log.error("cannot re-create the admin socket: %s", exc.message)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        for task in list(self._streams):
            task.cancel()  # event streams never end on their own
        with contextlib.suppress(Exception):
            await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._lock.release()
        log.info("admin API stopped")

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- app --------------------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._peer_check, self._errors], client_max_size=wire.MAX_BODY_BYTES
        )
        app.router.add_get(wire.PATH_PING, self._ping)
        app.router.add_get(wire.PATH_STATUS, self._status)
        app.router.add_get(wire.PATH_EVENTS, self._events)
        app.router.add_get(wire.PATH_LOGS, self._logs)
        app.router.add_get(wire.PATH_CATALOGUE, self._catalogue)
        app.router.add_post(wire.PATH_INSTALLS, self._install)
        app.router.add_post(wire.PATH_CANCEL_INSTALL, self._cancel_install)
        app.router.add_post(wire.PATH_UNINSTALL, self._uninstall)
        app.router.add_post(wire.PATH_REFRESH_BACKENDS, self._refresh_backends)
        app.router.add_post(wire.PATH_DRAIN, self._drain)
        app.router.add_post(wire.PATH_ROTATE_WORKLOAD_KEY, self._rotate_workload_key)
        return app

    @web.middleware
    async def _peer_check(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        uid = peer_uid(transport.get_extra_info("socket") if transport else None)
        if not peer_allowed(uid):
            log.warning("admin API refused a connection from uid %s", uid)
            return _error_response(
                AdminAccessDenied(
                    f"This worker belongs to uid {os.geteuid()}; uid {uid} may not control it.",
                    hint="run the command as the user that runs the worker",
                )
            )
        return await handler(request)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            error = PendraError(f"{request.method} {request.path}: {exc.reason}")
            error.code = "not_found" if exc.status == 404 else "http_error"
            return _json_response(wire.error_body(error), status=exc.status)
        except PendraError as exc:
            return _error_response(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("admin API %s %s failed", request.method, request.path)
            return _error_response(
                PendraError(
                    f"The worker failed while handling {request.path}.",
                    hint="see `pendra logs` for the details",
                )
            )

    # -- handlers ---------------------------------------------------------------------------------
    async def _ping(self, request: web.Request) -> web.Response:
        return _json_response({"pid": os.getpid(), "version": __version__})

    async def _status(self, request: web.Request) -> web.Response:
        return _json_response(await _resolve(self.target.status()))

    async def _logs(self, request: web.Request) -> web.Response:
        raw = request.query.get("tail", "200")
        try:
            tail = int(raw)
        except ValueError:
            raise BadRequest(f"tail must be a whole number, not {raw!r}") from None
        tail = max(0, min(tail, wire.MAX_LOG_TAIL))
        lines = await _resolve(self.target.log_tail(tail)) if tail else []
        return _json_response({"lines": [str(line) for line in lines]})

    async def _catalogue(self, request: web.Request) -> web.Response:
        return _json_response(await _resolve(self.target.catalogue()))

    async def _install(self, request: web.Request) -> web.Response:
        ref, backend = await self._ref_and_backend(request)
        job = await _resolve(self.target.install(ref, backend))
        return _json_response(job, status=202)

    async def _cancel_install(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        result = await _resolve(self.target.cancel_install(job_id))
        return _json_response(result if result is not None else {"cancelled": job_id})

    async def _uninstall(self, request: web.Request) -> web.Response:
        ref, backend = await self._ref_and_backend(request)
        result = await _resolve(self.target.uninstall(ref, backend))
        return _json_response(result if result is not None else {"ref": ref, "removed": True})

    async def _refresh_backends(self, request: web.Request) -> web.Response:
        return _json_response(await _resolve(self.target.refresh_backends()))

    async def _drain(self, request: web.Request) -> web.Response:
        result = await _resolve(self.target.drain())
        return _json_response(result if result is not None else {"state": "draining"})

    async def _rotate_workload_key(self, request: web.Request) -> web.Response:
        rotate = getattr(self.target, "rotate_workload_key", None)
        if rotate is None:
            raise NotSupported("This worker has no workload key to rotate.")
        return _json_response(await _resolve(rotate()))

    async def _events(self, request: web.Request) -> web.StreamResponse:
        kinds = wire.parse_kinds(request.query.get("kinds"))
        subscription = self.target.events.subscribe(maxsize=STREAM_QUEUE, kinds=kinds)
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        response = web.StreamResponse(
            headers={"Content-Type": wire.NDJSON, "Cache-Control": "no-store"}
        )
        try:
            await response.prepare(request)
            while True:
                try:
                    event = await asyncio.wait_for(subscription.get(), self.keepalive_s)
                except asyncio.TimeoutError:
                    event = {"kind": wire.KEEPALIVE_KIND, "ts": time.time()}
                await response.write(wire.encode_event(event))
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping
        finally:
            subscription.close()
            if task is not None:
                self._streams.discard(task)
        return response

    @staticmethod
    async def _ref_and_backend(request: web.Request) -> tuple[str, str | None]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest('the request body must be an object like {"ref": "qwen3.6:27b"}')
        ref, backend = body.get("ref"), body.get("backend")
        if not isinstance(ref, str) or not ref.strip():
            raise BadRequest("ref is required, e.g. qwen3.6:27b")
        if backend is not None and (not isinstance(backend, str) or not backend.strip()):
            raise BadRequest("backend must be a backend name such as pendra or ollama")
        return ref.strip(), backend.strip() if backend else None

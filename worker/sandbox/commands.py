"""The sandbox's model commands: install or remove a model on a connected worker.

The control plane sends ``install`` / ``uninstall`` frames over the worker's link
(docs/protocol.md, "Models"); these two endpoints let an operator of the sandbox send them:

    POST /api/v1/workers/models/install    {"ref": "qwen3:0.6b", "backend": "ollama",
                                            "worker_id": "wk_…"}
    POST /api/v1/workers/models/uninstall  {"ref": "qwen3:0.6b", "backend": "ollama"}

``backend`` and ``worker_id`` are optional (``worker_id`` only when one worker is connected). They
need the sandbox's API key. The answer is NDJSON, one line per frame the worker sends for the
command as it arrives — ``install_progress`` … then ``install_done`` or ``error`` — so progress is
live. A client that goes away only stops listening: the worker finishes the job (see
``pendra status`` on its machine).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from typing import Any

from aiohttp import web

from worker.protocol import ErrorFrame, InstallCommand, InstallProgressFrame, UninstallCommand
from worker.sandbox.hub import WorkerConnection, WorkerHub

INSTALL_PATH = "/api/v1/workers/models/install"
UNINSTALL_PATH = "/api/v1/workers/models/uninstall"
IDLE_TIMEOUT_S = 900.0
"""Longest silence between two frames of one command (a big file's checksum can take minutes)."""
NDJSON = "application/x-ndjson"
_ids = itertools.count(1)


def _error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"message": message, "type": code, "code": code, "param": None}}
    return web.json_response(body, status=status)


def _pick_worker(hub: WorkerHub, worker_id: Any) -> WorkerConnection | web.Response:
    if worker_id is not None:
        found = hub.workers.get(str(worker_id))
        if found is None:
            return _error(404, "worker_not_found", f"No worker {worker_id!r} is connected.")
        return found
    if len(hub.workers) == 1:
        return next(iter(hub.workers.values()))
    if not hub.workers:
        return _error(503, "no_worker", "No worker is connected to this sandbox.")
    ids = ", ".join(sorted(hub.workers))
    return _error(
        409, "worker_id_required", f'Several workers are connected ({ids}); add "worker_id".'
    )


async def _command_fields(request: web.Request) -> tuple[str, str | None, Any] | web.Response:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _error(400, "invalid_request_error", "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return _error(400, "invalid_request_error", "The request body must be an object.")
    ref = body.get("ref")
    backend = body.get("backend")
    if not isinstance(ref, str) or not ref.strip() or len(ref) > 512:
        return _error(400, "invalid_request_error", 'Send "ref", e.g. "gemma3:270m".')
    if backend is not None and not isinstance(backend, str):
        return _error(400, "invalid_request_error", '"backend" must be a string or null.')
    unknown = sorted(set(body) - {"ref", "backend", "worker_id"})
    if unknown:
        return _error(400, "invalid_request_error", f"Unknown field(s): {', '.join(unknown)}.")
    return ref.strip(), backend, body.get("worker_id")


async def _run(request: web.Request, kind: type[InstallCommand | UninstallCommand]) -> Any:
    from worker.sandbox.ingress import HUB_KEY

    fields = await _command_fields(request)
    if isinstance(fields, web.Response):
        return fields
    ref, backend, worker_id = fields
    connection = _pick_worker(request.app[HUB_KEY], worker_id)
    if isinstance(connection, web.Response):
        return connection
    frame = kind(id=f"cmd_{next(_ids)}_{secrets.token_hex(4)}", ref=ref, backend=backend)
    try:
        channel = await connection.open(frame)
    except Exception:
        return _error(503, "worker_unavailable", "The worker went away; retry.")
    response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-store"})
    try:
        await response.prepare(request)
        while True:
            try:
                answer = await channel.next(IDLE_TIMEOUT_S)
            except asyncio.TimeoutError:
                answer = ErrorFrame(
                    id=frame.id, code="timeout", message="the worker stopped reporting on it"
                )
            await response.write((answer.dump() + "\n").encode("utf-8"))
            if not isinstance(answer, InstallProgressFrame):
                break
        await response.write_eof()
    except ConnectionError:
        pass  # the operator stopped listening; the worker carries on with the job
    finally:
        connection.close_channel(frame.id, cancel=False)
    return response


async def install(request: web.Request) -> web.StreamResponse:
    return await _run(request, InstallCommand)


async def uninstall(request: web.Request) -> web.StreamResponse:
    return await _run(request, UninstallCommand)


def add_routes(app: web.Application) -> None:
    app.router.add_post(INSTALL_PATH, install)
    app.router.add_post(UNINSTALL_PATH, uninstall)

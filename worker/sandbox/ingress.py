"""The sandbox's OpenAI-compatible ingress: HTTP requests in, worker frames out and back.

Bodies are relayed, never stored or logged. A streamed chat is written as server-sent events the
moment each chunk frame arrives; an error after the stream has started is sent as an SSE ``error``
event (what OpenAI clients raise on), and a client that goes away — streamed or not, while it
waits for a slot or for the answer — gets its request cancelled on the worker.

The routes exist twice: under ``/v1`` (what OpenAI clients expect) and under ``/api/v1`` (the
Pendra API's own paths, which the official SDK uses). Replies on ``/api/v1`` name the serving
worker (:mod:`worker.sandbox.placement`). A body sealed for private inference is routed by
:mod:`worker.sandbox.private_relay` and relayed without ever being opened.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from worker.errors import render_inline, split_rendered
from worker.private_inference.wire import is_sealed
from worker.protocol import (
    ErrorFrame,
    RawChunks,
    Request,
    RequestKind,
    Response,
    ResponseChunk,
    ResponseEnd,
    ResponseStart,
    UploadedFile,
)
from worker.request_check import first_problem
from worker.sandbox.hub import Channel, WorkerHub
from worker.sandbox.placement import Placement
from worker.sandbox.private_relay import (
    KEYS_PATH,
    WORKER_PIN_HEADER,
    PrivateRelay,
    sealed_error,
)

log = logging.getLogger(__name__)

FIRST_FRAME_TIMEOUT_S = 600.0  # a first request may have to load a model
NEXT_FRAME_TIMEOUT_S = 300.0
QUEUE_TIMEOUT_S = 300.0
"""How long a request waits for a free slot on a worker that serves its model (backpressure)."""
BUSY_RETRY_S = 0.25
"""After a ``worker_busy`` answer, the longest wait for a freed slot before trying again."""
MAX_AUDIO_BYTES = 25 * 1024 * 1024
HUB_KEY = web.AppKey("hub", WorkerHub)
API_KEY = web.AppKey("api_key", str)
KNOWN_MODELS = web.AppKey("known_models", frozenset)
RELAY_KEY = web.AppKey("private_relay", PrivateRelay)
API_PREFIXES = ("/v1", "/api/v1")
_PROTECTED = (
    "/v1/",
    "/api/v1/models",
    "/api/v1/chat/",
    "/api/v1/completions",
    "/api/v1/embeddings",
    "/api/v1/images/",
    "/api/v1/audio/",
    "/api/v1/workers/",
)
"""Paths that need the API key: the OpenAI API (under /v1 and /api/v1) and the model commands
(/api/v1/workers/…); the catalogue, the worker list and the worker endpoints do not."""


def openai_error(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    param: str | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": code, "code": code, "param": param}}
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def require_api_key(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.path.startswith(_PROTECTED):
        expected = request.app[API_KEY]
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), expected):
            return openai_error(
                401,
                "invalid_api_key",
                "Missing or wrong API key: send 'Authorization: Bearer <key>' with the sandbox's "
                "--api-key.",
            )
    return await handler(request)


async def _pick(request: web.Request, model: str, deadline: float) -> Any:
    """The worker for ``model`` once one has room, or the error response: 503 when known but
    unserved (or every worker stayed full until ``deadline``), else 404."""
    hub = request.app[HUB_KEY]
    pinned = request.headers.get(WORKER_PIN_HEADER) or None
    loop = asyncio.get_running_loop()
    worker = await hub.wait_for_room(model, max(0.0, deadline - loop.time()), worker_id=pinned)
    if worker is not None:
        return worker
    if pinned and not hub.candidates(model, worker_id=pinned):
        return openai_error(
            503,
            "no_worker",
            f"The pinned worker {pinned} is not connected or does not serve {model!r} right now.",
        )
    if not hub.workers:
        return openai_error(
            503,
            "no_worker",
            "No worker is connected to this sandbox; start one with `pendra --no-ui` "
            "(APP_SERVER_WS_URL pointing here).",
        )
    if hub.candidates(model, worker_id=pinned):
        return openai_error(
            503,
            "worker_busy",
            f"Every worker serving {model!r} stayed at its max_concurrent limit for "
            f"{QUEUE_TIMEOUT_S:.0f} s; retry later.",
        )
    known = model in request.app[KNOWN_MODELS] or any(w.serves(model) for w in hub.workers.values())
    if known:
        return openai_error(
            503, "no_worker", f"No connected worker can serve {model!r} right now; retry shortly."
        )
    served = ", ".join(m["id"] for m in hub.models()) or "none"
    return openai_error(
        404, "model_not_found", f"The model {model!r} does not exist here. Models served: {served}."
    )


async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return openai_error(400, "invalid_request_error", "The request body is not valid JSON.")
    except RecursionError:  # "[[[[…" nested deeper than the parser can go
        return openai_error(400, "invalid_request_error", "The request body nests too deeply.")
    if not isinstance(body, dict):
        return openai_error(400, "invalid_request_error", "The request body must be an object.")
    problem = first_problem(body)
    if problem is not None:
        return openai_error(400, "invalid_request_error", problem.message, param=problem.param)
    if not isinstance(body.get("model"), str) or not body["model"]:
        return openai_error(400, "invalid_request_error", "The request has no 'model'.")
    return body


def _from_error(frame: ErrorFrame, placement: Placement | None = None) -> web.Response:
    message = render_inline(split_rendered(frame.message, frame.hint), frame.hint)
    headers = {**(placement.headers() if placement else {}), **(sealed_error(frame) or {})}
    if frame.retry_after:  # an overloaded model or worker: when a retry may succeed
        headers["Retry-After"] = str(max(1, math.ceil(frame.retry_after)))
    return openai_error(
        frame.status or 502, frame.code, message, headers or None, param=frame.param
    )


def _from_response(frame: Response, placement: Placement | None = None) -> web.Response:
    headers = placement.headers() if placement else None
    if isinstance(frame.body, str):
        return web.Response(
            text=frame.body, status=frame.status, content_type="text/plain", headers=headers
        )
    body = frame.body
    if placement is not None and isinstance(body, dict):
        # Beside a private reply's envelope, or in a plaintext one: the client merges the two.
        own = body.get("pendra") if isinstance(body.get("pendra"), dict) else {}
        body = {**body, "pendra": {**own, **placement.block()}}
    return web.json_response(body, status=frame.status, headers=headers)


def _relay_unary(frame: Any, placement: Placement | None) -> web.Response:
    if isinstance(frame, Response):
        return _from_response(frame, placement)
    if isinstance(frame, ErrorFrame):
        return _from_error(frame, placement)
    return openai_error(502, "bad_worker_response", f"unexpected {frame.type} frame")


class _EventStream(web.StreamResponse):
    """A streamed response whose headers leave together with the first event, not before it.

    The worker sends ``start`` only once the first chunk exists, so holding the headers back costs
    nothing and saves the client one wake-up on the path of the first token.
    """

    _send_headers_immediately = False  # aiohttp: buffer the headers until the first write


def _sse_error(frame: ErrorFrame, placement: Placement | None) -> bytes:
    error: dict[str, Any] = {
        "message": render_inline(split_rendered(frame.message, frame.hint), frame.hint),
        "type": frame.code,
        "code": frame.code,
        "param": frame.param,
    }
    if placement is not None:
        error.update(placement.error_fields())
    return b"data: " + json.dumps({"error": error}).encode() + b"\n\n"


async def _relay_stream(
    request: web.Request,
    channel: Channel,
    frame: Any,
    placement: Placement | None,
    headers: dict[str, str],
) -> web.StreamResponse:
    if not isinstance(frame, ResponseStart):
        response = _relay_unary(frame, placement)  # an error, or a stream answered in one piece
        response.headers.update(headers)
        return response
    response = _EventStream(
        status=frame.status,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            **headers,
            **(placement.headers() if placement else {}),
        },
    )
    await response.prepare(request)
    try:
        while True:
            try:
                frame = await channel.next(NEXT_FRAME_TIMEOUT_S)
            except asyncio.TimeoutError:
                frame = ErrorFrame(code="timeout", message="the worker stopped answering")
            if isinstance(frame, RawChunks):
                if placement is not None:
                    placement.saw_chunk()
                await response.write(
                    "".join(f"data: {chunk}\n\n" for chunk in frame.data).encode("utf-8")
                )
            elif isinstance(frame, ResponseChunk):
                if placement is not None:
                    placement.saw_chunk()
                payload = b"".join(
                    b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
                    for chunk in frame.data
                )
                await response.write(payload)
            elif isinstance(frame, ResponseEnd):
                trailer = placement.trailer() if placement is not None else b""
                await response.write(trailer + b"data: [DONE]\n\n")
                break
            elif isinstance(frame, ErrorFrame):
                await response.write(_sse_error(frame, placement))
                break
    except (ConnectionResetError, ConnectionError):
        log.info("client of request %s went away; cancelling it", channel.id)
        return response
    await response.write_eof()
    return response


async def _dispatch(
    request: web.Request, kind: RequestKind, body: dict[str, Any], **extra: Any
) -> web.StreamResponse:
    sealed = is_sealed(body)
    stream = kind in ("chat", "completions") and bool(body.get("stream"))
    deadline = asyncio.get_running_loop().time() + QUEUE_TIMEOUT_S
    while True:
        if sealed:
            relay = request.app[RELAY_KEY]
            worker = relay.check(kind, body) or relay.choose(request, body)
        else:
            worker = await _pick(request, body["model"], deadline)
        if isinstance(worker, web.Response):
            return worker
        frame = Request(id=WorkerHub.new_request_id(), kind=kind, stream=stream, body=body, **extra)
        placement = None
        if sealed or request.path.startswith("/api/"):
            placement = Placement.for_request(
                request.headers, worker.worker_id, frame.id, body["model"], sealed=sealed
            )
        try:
            channel = await worker.open(frame)
        except Exception:
            return openai_error(503, "worker_unavailable", "The worker went away; retry.")
        try:
            try:
                first = await channel.next(FIRST_FRAME_TIMEOUT_S)
            except asyncio.TimeoutError:
                return openai_error(504, "timeout", "The worker did not start answering in time.")
            busy = isinstance(first, ErrorFrame) and first.code == "worker_busy"
            if busy and asyncio.get_running_loop().time() < deadline:
                # Its slots were still finishing requests this side has already let go (a
                # cancelled stream): try again once a slot frees, within the same deadline.
                channel.finished = True
                await request.app[HUB_KEY].wait_for_change(BUSY_RETRY_S)
                continue
            headers = _worker_headers(worker)
            if stream:
                return await _relay_stream(request, channel, first, placement, headers)
            response = _relay_unary(first, placement)
            response.headers.update(headers)
            return response
        except asyncio.CancelledError:
            # The client hung up (aiohttp cancels the handler: sandbox.app.serve), or the sandbox
            # is stopping: the request is cancelled on the worker below.
            log.info("client of request %s went away; cancelling it", frame.id)
            raise
        finally:
            await channel.close()


def _worker_headers(worker: Any) -> dict[str, str]:
    """Name the worker that answered (``X-Worker-Id``, ``X-Worker-Name``), as Pendra's API does."""
    headers = {"X-Worker-Id": worker.worker_id}
    if worker.hello.worker_name:
        headers["X-Worker-Name"] = _header_safe(worker.hello.worker_name)
    return headers


def _header_safe(text: str) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    return body if isinstance(body, web.Response) else await _dispatch(request, "chat", body)


async def completions(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    return await _dispatch(request, "completions", body)


async def embeddings(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    return body if isinstance(body, web.Response) else await _dispatch(request, "embeddings", body)


async def images(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    return body if isinstance(body, web.Response) else await _dispatch(request, "images", body)


async def transcriptions(request: web.Request) -> web.StreamResponse:
    if request.content_type == "application/json":
        # Only a sealed transcription is JSON: its audio travels inside the envelope.
        body = await _json_body(request)
        if isinstance(body, web.Response):
            return body
        if is_sealed(body):
            return await _dispatch(request, "transcription", body)
    if not request.content_type.startswith("multipart/"):
        return openai_error(
            400, "invalid_request_error", "Send the audio as multipart/form-data ('file' part)."
        )
    fields: dict[str, Any] = {}
    upload: UploadedFile | None = None
    reader = await request.multipart()
    async for part in reader:
        if part.name == "file":
            data = await part.read()
            if len(data) > MAX_AUDIO_BYTES:
                return openai_error(413, "file_too_large", "The audio file is over 25 MB.")
            upload = UploadedFile(
                name=part.filename or "audio",
                content_type=part.headers.get("Content-Type", "application/octet-stream"),
                data_b64=base64.b64encode(data).decode("ascii"),
            )
        elif part.name:
            fields[part.name] = await part.text()
    if upload is None:
        return openai_error(400, "invalid_request_error", "The request has no 'file' part.")
    if not fields.get("model"):
        return openai_error(400, "invalid_request_error", "The request has no 'model'.")
    return await _dispatch(request, "transcription", fields, file=upload)


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": request.app[HUB_KEY].models()})


def add_routes(app: web.Application) -> None:
    """The inference routes under both prefixes, and the private-inference key list."""
    relay = app[RELAY_KEY] = PrivateRelay(app[HUB_KEY])
    for prefix in API_PREFIXES:
        app.router.add_get(f"{prefix}/models", list_models)
        app.router.add_post(f"{prefix}/chat/completions", chat_completions)
        app.router.add_post(f"{prefix}/completions", completions)
        app.router.add_post(f"{prefix}/embeddings", embeddings)
        app.router.add_post(f"{prefix}/images/generations", images)
        app.router.add_post(f"{prefix}/audio/transcriptions", transcriptions)
    app.router.add_get(KEYS_PATH, relay.handle_keys)

"""Serving one sealed request: open it, run it through the router, seal every frame of the reply.

The decrypted request lives in this coroutine's locals and the backends' memory only: nothing here
logs it, puts it in an event or the status document, or writes it anywhere. What goes back over the
link is ciphertext, plus metadata the control plane needs anyway (the HTTP status, token counts,
the finish reason).

A failure goes back as the link's ``error`` frame, which the control plane turns into the API's
in-band error. Its message must not quote the request: errors raised here say only what failed,
and any other error's message (a backend's, say, which may echo the prompt) is replaced by its code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from worker.backends.base import StreamChunk, TranscriptionRequest
from worker.errors import Cancelled, ModelNotFound, NotSupported, PendraError
from worker.link.streaming import pump_stream
from worker.private_inference.envelope import OpenedRequest, SealedRequestRefused, open_request
from worker.private_inference.keyring import Lease
from worker.private_inference.link_channel import LinkChannel
from worker.private_inference.service import PrivateInference, PrivateInferenceOff
from worker.private_inference.wire import (
    ENVELOPE_KEY,
    STREAM_DONE,
    STREAM_TERMINATOR_KEY,
    TASK_TYPES,
    Envelope,
    EnvelopeError,
    parse_envelope,
)
from worker.protocol import (
    ErrorFrame,
    Request,
    Response,
    ResponseEnd,
    ResponseStart,
    UsageInfo,
)

log = logging.getLogger(__name__)

TERMINATOR_DECLARATION = json.dumps({STREAM_TERMINATOR_KEY: 1}).encode()


class PrivateRequestInvalid(PendraError):
    """The opened request is not one this worker can run; the message never quotes it."""

    http_status = 400
    code = "invalid_request_error"


class NoMatchingKey(PendraError):
    """The request was sealed only to keys this worker does not hold (a rotation race)."""

    http_status = 503
    code = "no_private_inference_worker"


_CONTENT_FREE = (
    SealedRequestRefused,
    PrivateRequestInvalid,
    NoMatchingKey,
    PrivateInferenceOff,
    ModelNotFound,
    NotSupported,
    Cancelled,
)
"""Errors whose messages are written without any request content, so they may cross the relay."""


def content_free_error(exc: BaseException, request_id: str) -> ErrorFrame:
    """The error frame for a failed private request: code and status always, the message only
    when it cannot quote the request."""
    if isinstance(exc, _CONTENT_FREE):
        return ErrorFrame(
            id=request_id, code=exc.code, message=exc.message, hint=exc.hint, status=exc.http_status
        )
    if isinstance(exc, PendraError):
        code, status = exc.code, exc.http_status
    else:
        code, status = "internal_error", 500
    return ErrorFrame(
        id=request_id,
        code=code,
        status=status,
        message=(
            f"The worker could not serve this private request ({code}). The details may quote "
            "the request, so they are not sent through the control plane."
        ),
        hint="the worker's log records the failure by request id and code",
    )


async def serve_sealed(
    frame: Request, lease: Lease | None, service: PrivateInference, link: LinkChannel
) -> None:
    """Serve ``frame`` (a request whose body is an envelope) end to end, counted and sealed."""
    service.begin()
    outcome = "failed"
    try:
        if service.keyring is None:
            raise PrivateInferenceOff(
                "Private inference is off on this worker.",
                hint="route private requests to a worker that has it on",
            )
        envelope = _envelope(frame)
        if lease is None:
            raise NoMatchingKey(
                "This worker holds none of the keys the request was sealed to (it may have "
                "rotated its workload key).",
                hint="fetch the workload keys again and resend",
            )
        with lease:
            opened = _open(frame, envelope, lease)
            await _run(frame, opened, link)
        outcome = "served"
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    except Exception as exc:
        if isinstance(exc, Cancelled):
            outcome = "cancelled"
        _log_failure(frame, exc)
        await link.send_safely(content_free_error(exc, frame.id).dump())
    finally:
        service.end(outcome)


def _envelope(frame: Request) -> Envelope:
    if frame.kind not in TASK_TYPES:
        raise PrivateRequestInvalid(f"Private inference does not cover {frame.kind} requests.")
    model = frame.body.get("model")
    if not isinstance(model, str) or not model:
        raise PrivateRequestInvalid("The private request has no model beside its envelope.")
    try:
        return parse_envelope(frame.body.get(ENVELOPE_KEY))
    except EnvelopeError as exc:
        raise SealedRequestRefused(f"The private request is malformed: {exc}.") from None


def _open(frame: Request, envelope: Envelope, lease: Lease) -> OpenedRequest:
    return open_request(
        envelope,
        lease.key,
        model=frame.body["model"],
        stream=frame.stream,
        task_type=TASK_TYPES[frame.kind],
    )


def _sealed_body(frame: Request, opened: OpenedRequest) -> tuple[dict[str, Any], bool]:
    """The decrypted body as the router takes it, and whether a sealed end of stream was asked."""
    try:
        body = json.loads(opened.body)
    except (ValueError, UnicodeDecodeError):
        raise PrivateRequestInvalid("The sealed request body is not JSON.") from None
    if not isinstance(body, dict):
        raise PrivateRequestInvalid("The sealed request body is not a JSON object.")
    outer_model = frame.body["model"]
    if body.setdefault("model", outer_model) != outer_model:
        raise PrivateRequestInvalid(
            "The sealed body names a different model than the request: they must agree."
        )
    if frame.kind == "chat" and bool(body.get("stream", False)) != frame.stream:
        raise PrivateRequestInvalid(
            "The sealed body's stream flag differs from the request's: they must agree."
        )
    terminator = body.pop(STREAM_TERMINATOR_KEY, None)
    if terminator not in (None, 1):
        raise PrivateRequestInvalid(f"{STREAM_TERMINATOR_KEY} must be 1 when present.")
    return body, terminator == 1 and frame.stream


async def _run(frame: Request, opened: OpenedRequest, link: LinkChannel) -> None:
    body, terminator = _sealed_body(frame, opened)
    router = link.router
    if frame.kind == "chat" and frame.stream:
        await _stream(frame, body, opened, terminator, link)
        return
    result: dict[str, Any] | str
    if frame.kind == "chat":
        result = await router.chat(body)
    elif frame.kind == "embeddings":
        result = await router.embeddings(body)
    else:
        result = await router.transcription(_transcription(body, opened.binary))
    # The client JSON-decodes the opened reply, text transcriptions included.
    sealed = opened.sealer.seal(json.dumps(result, ensure_ascii=False).encode("utf-8"))
    await link.send(Response(id=frame.id, body={ENVELOPE_KEY: sealed}, usage=_usage(result)).dump())


async def _stream(
    frame: Request,
    body: dict[str, Any],
    opened: OpenedRequest,
    terminator: bool,
    link: LinkChannel,
) -> None:
    stream = link.router.chat_stream(body)
    # The first chunk is awaited before ``start`` so that an unknown model or a load failure is
    # still a plain error with its HTTP status, as on the plaintext path.
    try:
        first: StreamChunk | None = await stream.__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException:
        await stream.aclose()
        raise
    sealer = opened.sealer

    def seal(chunk: StreamChunk) -> StreamChunk:
        return StreamChunk(
            sealer.seal_json(chunk.json.encode("utf-8")),
            usage=chunk.usage,
            finish_reason=chunk.finish_reason,
        )

    async def sealed() -> AsyncIterator[StreamChunk]:
        try:
            if terminator:
                yield StreamChunk(sealer.seal_json(TERMINATOR_DECLARATION))
            if first is not None:
                yield seal(first)
            async for chunk in stream:
                yield seal(chunk)
            if terminator:
                yield StreamChunk(sealer.seal_json(STREAM_DONE))
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()

    frames = sealed()
    try:
        await link.send(ResponseStart(id=frame.id).dump())
    except BaseException:
        await frames.aclose()
        await stream.aclose()
        raise
    summary = await pump_stream(frame.id, frames, link.send)
    usage = None
    if summary.usage is not None:
        usage = UsageInfo(
            prompt_tokens=summary.usage.prompt_tokens,
            completion_tokens=summary.usage.completion_tokens,
            total_tokens=summary.usage.total_tokens,
        )
    await link.send(
        ResponseEnd(id=frame.id, usage=usage, finish_reason=summary.finish_reason).dump()
    )


_AUDIO_SIGNATURES: tuple[tuple[bytes, int, str, str], ...] = (
    (b"RIFF", 0, "audio.wav", "audio/wav"),
    (b"fLaC", 0, "audio.flac", "audio/flac"),
    (b"OggS", 0, "audio.ogg", "audio/ogg"),
    (b"ID3", 0, "audio.mp3", "audio/mpeg"),
    (b"\x1aE\xdf\xa3", 0, "audio.webm", "audio/webm"),
    (b"ftyp", 4, "audio.m4a", "audio/mp4"),
)


def audio_file_name(data: bytes) -> tuple[str, str]:
    """A file name and content type for sealed audio, which arrives without either: from the
    format's magic bytes, so a backend that goes by the extension still decodes it."""
    for magic, offset, name, content_type in _AUDIO_SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name, content_type
    if data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio.mp3", "audio/mpeg"
    return "audio", "application/octet-stream"


def _transcription(body: dict[str, Any], audio: bytes | None) -> TranscriptionRequest:
    if not audio:
        raise PrivateRequestInvalid("The private transcription carries no sealed audio.")
    fields: dict[str, str] = {}
    for name, value in body.items():
        if name in ("model", "file"):
            continue
        if isinstance(value, list):
            # Multipart spells a list as repeated `name[]` parts; one is all a part map holds.
            if len(value) != 1 or not isinstance(value[0], str):
                raise PrivateRequestInvalid(f"{name} takes exactly one value here.")
            fields[f"{name}[]"] = value[0]
        elif isinstance(value, str):
            fields[name] = value
        elif isinstance(value, (bool, int, float)) or value is None:
            fields[name] = json.dumps(value)
        else:
            raise PrivateRequestInvalid(f"{name} must be a string, a number or a list of strings.")
    file_name, content_type = audio_file_name(audio)
    return TranscriptionRequest(
        model=str(body["model"]),
        file_name=file_name,
        file_bytes=audio,
        content_type=content_type,
        fields=fields,
    )


def _usage(result: Any) -> UsageInfo | None:
    if isinstance(result, dict) and isinstance(result.get("usage"), dict):
        with contextlib.suppress(Exception):
            return UsageInfo.model_validate(result["usage"])
    return None


def _log_failure(frame: Request, exc: BaseException) -> None:
    # The code and the exception's type only: a message or traceback could quote the request.
    code = exc.code if isinstance(exc, PendraError) else type(exc).__name__
    if isinstance(exc, (PendraError, ConnectionError)):
        log.info("private request %s (%s) failed: %s", frame.id, frame.kind, code)
    else:
        log.error("private request %s (%s) failed unexpectedly: %s", frame.id, frame.kind, code)

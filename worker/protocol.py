"""The worker ↔ control plane protocol: message models used by both ends (docs/protocol.md).

JSON text frames over one WebSocket, each an object with a ``type``. Requests are multiplexed by
``id``. Both ends parse incoming frames with :func:`parse_server_frame` and
:func:`parse_worker_frame`, which never raise anything but :class:`FrameError` — the receiver
answers that with an ``error`` frame and keeps the link up.

The hot path is the streamed chunk: :func:`chunk_frame` builds it by string concatenation around
the backend's already-serialised chunk JSON, so the worker never parses or re-encodes a token it
only relays. Several chunks queued while the link was busy go out in one frame (coalescing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
WORKER_PATH = "/ws/gpu"
"""Where the control plane serves workers (``app_server_ws_url`` + this path)."""
LEGACY_WORKER_PATH = "/api/v1/worker/connect"
"""The path earlier versions dialled; the sandbox still serves it."""
VERIFY_PATH = "/api/v1/worker/verify"
PROTOCOL_HEADER = "X-Pendra-Protocol"
VERSION_HEADER = "X-Pendra-Worker-Version"
MAX_FRAME_BYTES = 16 * 1024 * 1024
"""Largest frame either end sends or accepts (requests carry audio for transcription)."""
MAX_CHUNK_FRAME_BYTES = 256 * 1024
"""Coalescing stops adding chunks to a frame past this size, to keep latency low."""

REQUEST_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
RequestId = Annotated[str, Field(pattern=REQUEST_ID_PATTERN)]
RequestKind = Literal["chat", "completions", "embeddings", "images", "transcription"]

# WebSocket close codes (4000–4999 are the application's).
CLOSE_AUTH_FAILED = 4401
CLOSE_UPGRADE_REQUIRED = 4426
CLOSE_PROTOCOL_ERROR = 4400
CLOSE_REPLACED = 4409


class FrameError(Exception):
    """An incoming frame that cannot be used; ``code`` and ``id`` go into the error reply."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


class _Frame(BaseModel):
    # Unknown keys are ignored so either end can add fields without breaking the other.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    def dump(self) -> str:
        return self.model_dump_json(exclude_none=True)


# -- shared ----------------------------------------------------------------------------------------


class ErrorFrame(_Frame):
    """An error: of one request (``id`` set), of the last frame, or of the whole link."""

    type: Literal["error"] = "error"
    id: str | None = None
    code: str
    message: str
    status: int | None = None
    hint: str | None = None
    retry_after: float | None = None
    """Seconds after which a retry may succeed (429/503 overload); the HTTP ``Retry-After``."""
    param: str | None = None
    """The request field a 400 is about (OpenAI's ``error.param``)."""


# -- control plane → worker ------------------------------------------------------------------------


class Challenge(_Frame):
    type: Literal["challenge"] = "challenge"
    versions: list[int]
    nonce: str = Field(min_length=16, max_length=256)
    server_id: str = Field(min_length=1, max_length=256)


class Welcome(_Frame):
    type: Literal["welcome"] = "welcome"
    worker_id: str
    session_id: str
    protocol: int = PROTOCOL_VERSION
    heartbeat_interval_s: float | None = None
    max_frame_bytes: int = MAX_FRAME_BYTES


class UploadedFile(_Frame):
    """The audio file of a transcription request, base64 (standard alphabet)."""

    name: str = "audio"
    content_type: str = "application/octet-stream"
    data_b64: str


class Request(_Frame):
    type: Literal["request"] = "request"
    id: RequestId
    kind: RequestKind
    stream: bool = False
    body: dict[str, Any] = Field(default_factory=dict)
    file: UploadedFile | None = None


class Cancel(_Frame):
    type: Literal["cancel"] = "cancel"
    id: RequestId


class InstallCommand(_Frame):
    type: Literal["install"] = "install"
    id: RequestId
    ref: str = Field(min_length=1, max_length=512)
    backend: str | None = None


class UninstallCommand(_Frame):
    type: Literal["uninstall"] = "uninstall"
    id: RequestId
    ref: str = Field(min_length=1, max_length=512)
    backend: str | None = None


class Drain(_Frame):
    type: Literal["drain"] = "drain"
    reason: str | None = None


class Ping(_Frame):
    type: Literal["ping"] = "ping"
    ts: float


class WorkloadKeysAck(_Frame):
    """The control plane has replaced the worker's workload keys with registration ``seq``."""

    type: Literal["workload_keys_ack"] = "workload_keys_ack"
    seq: int = Field(ge=0)


# -- worker → control plane ------------------------------------------------------------------------


class Auth(_Frame):
    type: Literal["auth"] = "auth"
    protocol: int
    public_key: str = Field(min_length=1, max_length=128)
    signature: str = Field(min_length=1, max_length=256)
    worker_version: str


class GpuInfo(_Frame):
    model_config = ConfigDict(extra="allow", frozen=True)
    index: int
    name: str
    memory_total: int | None = None


class Hardware(_Frame):
    os: str
    arch: str
    cpu_count: int | None = None
    memory_total: int | None = None
    gpus: list[GpuInfo] = Field(default_factory=list)


class AdvertisedModel(_Frame):
    model_config = ConfigDict(extra="allow", frozen=True)
    id: str
    backend: str
    task: str | None = None
    context_length: int | None = None


class BackendSummary(_Frame):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    status: str
    capabilities: dict[str, bool] = Field(default_factory=dict)


class Hello(_Frame):
    type: Literal["hello"] = "hello"
    worker_version: str
    protocol: int
    hardware: Hardware
    backends: list[BackendSummary] = Field(default_factory=list)
    models: list[AdvertisedModel] = Field(default_factory=list)
    capabilities: dict[str, bool] = Field(default_factory=dict)
    max_concurrency: int = 1
    previous_attempts: int = 0
    worker_id: str | None = Field(default=None, max_length=64)
    """The worker's own stable id (``worker_id`` setting); the key's fingerprint when absent."""
    worker_name: str | None = Field(default=None, max_length=128)


class Load(_Frame):
    in_flight: int = 0
    served: int = 0
    failed: int = 0
    tokens_per_s: float = 0.0


class Heartbeat(_Frame):
    type: Literal["heartbeat"] = "heartbeat"
    load: Load
    gpus: list[dict[str, Any]] = Field(default_factory=list)


class Pong(_Frame):
    type: Literal["pong"] = "pong"
    ts: float


class StatusPush(_Frame):
    type: Literal["status"] = "status"
    backends: list[BackendSummary] = Field(default_factory=list)
    models: list[AdvertisedModel] = Field(default_factory=list)
    capabilities: dict[str, bool] = Field(default_factory=dict)


class ResponseStart(_Frame):
    type: Literal["start"] = "start"
    id: RequestId
    status: int = 200


class ResponseChunk(_Frame):
    """Only for parsing on the control plane side; the worker builds it with :func:`chunk_frame`."""

    type: Literal["chunk"] = "chunk"
    id: RequestId
    data: list[dict[str, Any]]


class UsageInfo(_Frame):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ResponseEnd(_Frame):
    type: Literal["end"] = "end"
    id: RequestId
    usage: UsageInfo | None = None
    finish_reason: str | None = None


class Response(_Frame):
    """A whole (non-streamed) response; ``body`` is JSON, or text for ``text/plain`` answers."""

    type: Literal["response"] = "response"
    id: RequestId
    status: int = 200
    content_type: str = "application/json"
    body: dict[str, Any] | list[Any] | str
    usage: UsageInfo | None = None


class InstallProgressFrame(_Frame):
    type: Literal["install_progress"] = "install_progress"
    id: RequestId
    phase: str
    bytes_done: int = 0
    bytes_total: int | None = None


class InstallDone(_Frame):
    type: Literal["install_done"] = "install_done"
    id: RequestId
    ref: str
    backend: str | None = None


class Draining(_Frame):
    type: Literal["draining"] = "draining"
    in_flight: int = 0


class WorkloadKeyInfo(_Frame):
    """A public workload key: standard base64 of the raw 32-byte X25519 key, and its kid."""

    kid: str = Field(pattern=r"^[0-9a-f]{64}$")
    public_key: str = Field(min_length=44, max_length=44)


class WorkloadKeys(_Frame):
    """The workload keys private requests to this worker may be sealed to (replaces earlier ones).

    ``seq`` counts the worker's registrations; the control plane answers with a
    :class:`WorkloadKeysAck` of the same ``seq`` once it routes by the new set.
    """

    type: Literal["workload_keys"] = "workload_keys"
    seq: int = Field(ge=0)
    keys: list[WorkloadKeyInfo] = Field(default_factory=list, max_length=16)


SERVER_FRAMES: dict[str, type[_Frame]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        Challenge,
        Welcome,
        Request,
        Cancel,
        InstallCommand,
        UninstallCommand,
        Drain,
        Ping,
        WorkloadKeysAck,
        ErrorFrame,
    )
}
WORKER_FRAMES: dict[str, type[_Frame]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        Auth,
        Hello,
        Heartbeat,
        Pong,
        StatusPush,
        ResponseStart,
        ResponseChunk,
        ResponseEnd,
        Response,
        InstallProgressFrame,
        InstallDone,
        Draining,
        WorkloadKeys,
        ErrorFrame,
    )
}


def _parse(text: str | bytes, table: dict[str, type[_Frame]]) -> _Frame:
    if len(text) > MAX_FRAME_BYTES:
        raise FrameError("frame_too_large", f"frame of {len(text)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError("malformed_frame", f"frame is not JSON: {exc}") from None
    except RecursionError:  # e.g. "[[[[…" nested deeper than the parser can go
        raise FrameError("malformed_frame", "frame is nested too deeply") from None
    if not isinstance(data, dict):
        raise FrameError("malformed_frame", "frame is not a JSON object")
    raw_id = data.get("id")
    request_id = raw_id if isinstance(raw_id, str) and _REQUEST_ID.match(raw_id) else None
    kind = data.get("type")
    cls = table.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise FrameError("unknown_frame", f"unknown frame type {kind!r}", request_id)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'frame'}: {err['msg']}"
            for err in exc.errors()[:3]
        )
        code = "unknown_request_kind" if _bad_kind(exc) else "malformed_frame"
        raise FrameError(code, f"invalid {kind} frame: {problems}", request_id) from None


def _bad_kind(exc: ValidationError) -> bool:
    return any(err["loc"][:1] == ("kind",) for err in exc.errors())


def parse_server_frame(text: str | bytes) -> _Frame:
    """Parse a frame the control plane sent; raises only :class:`FrameError`."""
    return _parse(text, SERVER_FRAMES)


def parse_worker_frame(text: str | bytes) -> _Frame:
    """Parse a frame a worker sent; raises only :class:`FrameError`."""
    return _parse(text, WORKER_FRAMES)


_CHUNK_PREFIX = '{"type":"chunk","id":"'
_CHUNK_DATA = '","data":['
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class RawChunks:
    """A ``chunk`` frame taken apart without re-encoding: the chunk objects as JSON text."""

    id: str
    data: list[str]
    type: str = "chunk"


def split_chunk_frame(text: str) -> RawChunks | None:
    """The fast path for the most frequent frame: a ``chunk`` frame exactly as
    :func:`chunk_frame` builds it, split into its chunk objects' JSON text (each still parsed, by
    the C scanner, so only well-formed objects pass). ``None`` for anything else, which then goes
    through :func:`parse_worker_frame` and its full validation and error messages."""
    if not text.startswith(_CHUNK_PREFIX) or len(text) > MAX_FRAME_BYTES:
        return None
    id_end = text.find(_CHUNK_DATA, len(_CHUNK_PREFIX))
    if id_end < 0:
        return None
    request_id = text[len(_CHUNK_PREFIX) : id_end]
    if not _REQUEST_ID.fullmatch(request_id):
        return None
    position = id_end + len(_CHUNK_DATA)
    chunks: list[str] = []
    try:
        while True:
            value, end = _DECODER.raw_decode(text, position)
            if not isinstance(value, dict):
                return None
            chunks.append(text[position:end])
            if text.startswith(",", end):
                position = end + 1
                continue
            return RawChunks(request_id, chunks) if text[end:] == "]}" else None
    except (ValueError, RecursionError):
        return None


def chunk_frame(request_id: str, chunks: Sequence[str]) -> str:
    """A ``chunk`` frame around already-serialised chunk objects, without re-encoding them.

    ``request_id`` was validated against :data:`REQUEST_ID_PATTERN` when the request arrived, so it
    needs no JSON escaping.
    """
    return '{"type":"chunk","id":"' + request_id + '","data":[' + ",".join(chunks) + "]}"


# -- authentication --------------------------------------------------------------------------------


def audience(url_or_host_path: str) -> str:
    """The ``host[:port]/path`` a worker connected to, normalised the same on both ends.

    Default ports are dropped so ``wss://h/p`` and ``wss://h:443/p`` agree; the scheme is left
    out so a TLS-terminating proxy in front of the control plane does not break verification.
    """
    text = url_or_host_path
    if "://" not in text:
        text = "//" + text
    parts = urlsplit(text)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    return netloc + (parts.path or "/")


def auth_transcript(
    *, protocol: int, nonce: str, server_id: str, public_key: str, audience: str
) -> bytes:
    """What the worker signs: bound to this nonce, this server, this key, version and endpoint."""
    return "\n".join(
        ("pendra-worker-auth", str(protocol), nonce, server_id, public_key, audience)
    ).encode("utf-8")

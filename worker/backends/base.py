"""The contract every backend implements: the built-in one and each external kind.

A backend is one inference server (or the built-in llama.cpp backend and its model runners)
that serves some models. The router asks backends for completions by model id; the link advertises
their models; the admin API reports their state. Request and response bodies are the OpenAI wire
format as plain dicts.

Streaming chat yields :class:`StreamChunk` objects that carry the chunk *already serialised* as
JSON text, so the relay path (external backend → WSS frame) never parses and re-encodes a chunk it
only forwards. ``usage`` is filled on the chunk that carries it, for token accounting.
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, ClassVar

from worker.errors import NotSupported


class Task(str, Enum):
    """What a model does."""

    CHAT = "chat"
    EMBEDDING = "embedding"
    RERANKER = "reranker"
    IMAGE = "image"
    TRANSCRIPTION = "transcription"


@dataclass(frozen=True)
class Capabilities:
    """What a backend kind can do (README)."""

    chat: bool = False
    embeddings: bool = False
    images: bool = False
    transcription: bool = False
    install: bool = False
    uninstall: bool = False

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)


class BackendStatus(str, Enum):
    READY = "ready"
    UNREACHABLE = "unreachable"
    DISABLED = "disabled"
    ERROR = "error"


@dataclass
class ModelInfo:
    """One model a backend serves, as the status document and the link describe it."""

    id: str
    task: Task | None = None
    context_length: int | None = None
    size_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "task": self.task.value if self.task else None,
            "context_length": self.context_length,
            "size_bytes": self.size_bytes,
        }
        out.update({k: v for k, v in self.details.items() if k not in out})
        return out


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None  # prompt tokens served from a prompt cache, when known

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class StreamChunk:
    """One ``chat.completion.chunk`` as JSON text, plus its parsed usage when it carries one."""

    json: str
    usage: Usage | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class InstallProgress:
    """A progress event of an install, whichever backend runs it."""

    phase: str
    bytes_done: int = 0
    bytes_total: int | None = None
    detail: str | None = None


ProgressCallback = Callable[[InstallProgress], Awaitable[None] | None]


@dataclass
class TranscriptionRequest:
    """A multipart ``/v1/audio/transcriptions`` request, carried as its parts."""

    model: str
    file_name: str
    file_bytes: bytes
    content_type: str = "application/octet-stream"
    fields: dict[str, str] = field(default_factory=dict)


class Backend(abc.ABC):
    """Base class of all backends.

    Subclasses set ``kind`` and ``capabilities`` and implement :meth:`refresh` plus the request
    methods their capabilities promise. A capability a backend lacks answers with
    :class:`~worker.errors.NotSupported` (a structured 501), which the defaults below raise.
    """

    kind: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    default_ports: ClassVar[tuple[int, ...]] = ()

    def __init__(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        self.status = BackendStatus.UNREACHABLE
        self.detail: str | None = None
        self.models: list[ModelInfo] = []
        self.checked_at: float | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def refresh(self) -> None:
        """Verify the backend is there and what it is, and reload its model list.

        Sets ``status``/``detail``/``models``; never raises for an unreachable backend.
        """

    async def close(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Release connections, threads and loaded models."""

    def mark(self, status: BackendStatus, detail: str | None = None) -> None:
        self.status = status
        self.detail = detail
        self.checked_at = time.time()

    def serves(self, model: str) -> bool:
        return self.status is BackendStatus.READY and any(m.id == model for m in self.models)

    def describe(self) -> dict[str, Any]:
        """This backend's entry in the status document (docs/status.md)."""
        return {
            "name": self.kind,
            "endpoint": self.endpoint,
            "status": self.status.value,
            "detail": self.detail,
            "capabilities": self.capabilities.as_dict(),
            "models": [m.as_dict() for m in self.models],
        }

    # -- requests ---------------------------------------------------------------------------------
    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed chat completion (``body["stream"]`` is false)."""
        raise self._unsupported("chat completions")

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        """A streamed chat completion. Closing the iterator cancels the generation."""
        raise self._unsupported("chat completions")

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed legacy text completion (``/v1/completions``)."""
        raise self._unsupported("text completions")

    def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        """A streamed legacy text completion. Closing the iterator cancels the generation."""
        raise self._unsupported("text completions")

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self._unsupported("embeddings")

    async def images(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self._unsupported("image generation")

    async def transcription(self, request: TranscriptionRequest) -> dict[str, Any] | str:
        raise self._unsupported("audio transcription")

    async def install(self, model_ref: str, progress: ProgressCallback) -> None:
        raise self._unsupported("installing models")

    async def uninstall(self, model_ref: str) -> None:
        raise self._unsupported("removing models")

    def _unsupported(self, what: str) -> NotSupported:
        return NotSupported(f"The {self.kind} backend does not support {what}.")

"""The OpenAI-compatible request surface shared by most external kinds.

Requests go to ``{api_base}/chat/completions``, ``/embeddings``, ``/images/generations`` and
``/audio/transcriptions`` unchanged. Streaming is a lean relay: each SSE ``data:`` payload is
yielded as received in a :class:`StreamChunk`; only chunks that may carry usage, a finish reason or
an error are parsed (:mod:`worker.backends.chunks`). A capability the kind lacks is NotSupported.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp

from worker.backends.base import ModelInfo, StreamChunk, Task, TranscriptionRequest
from worker.backends.chunks import inspect_chunk
from worker.backends.external import HttpBackend, model_cards
from worker.backends.http import CONTROL_TIMEOUT, REQUEST_TIMEOUT
from worker.backends.lines import DEFAULT_MAX_LINE, LineTooLong
from worker.backends.openai_fields import OPEN, FieldPolicy
from worker.backends.sse import SSEDecoder
from worker.backends.upstream import parse_json, read_error, request, unavailable
from worker.errors import BackendFailed, BackendUnavailable


class OpenAICompatBackend(HttpBackend):
    """A backend whose inference API is OpenAI's under ``/v1``."""

    api_prefix: ClassVar[str] = "/v1"
    max_line: ClassVar[int] = DEFAULT_MAX_LINE
    chat_fields: ClassVar[FieldPolicy] = OPEN
    """What the server does with each chat field (see :mod:`worker.backends.openai_fields`)."""
    completion_fields: ClassVar[FieldPolicy] = OPEN

    @property
    def api_base(self) -> str:
        return f"{self.base}{self.api_prefix}"

    # -- listing ----------------------------------------------------------------------------------
    async def list_models(self) -> list[ModelInfo]:
        url = f"{self.api_base}/models"
        answer = await request(self.session(), self.kind, "GET", url, timeout=CONTROL_TIMEOUT)
        cards = model_cards(answer)
        if cards is None:
            raise BackendFailed(f"{self.kind} answered /v1/models with an unexpected shape")
        return [self.model_from_card(card) for card in cards]

    def model_from_card(self, card: dict[str, Any]) -> ModelInfo:
        ctx = card.get("max_model_len")
        return ModelInfo(
            id=card["id"],
            task=self.default_task(),
            context_length=ctx if isinstance(ctx, int) else None,
            details={"owned_by": card.get("owned_by")} if card.get("owned_by") else {},
        )

    def default_task(self) -> Task | None:
        return Task.CHAT if self.capabilities.chat else None

    # -- requests ---------------------------------------------------------------------------------
    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        result = await request(
            self.session(),
            self.kind,
            "POST",
            f"{self.api_base}{path}",
            json_body=body,
            timeout=REQUEST_TIMEOUT,
        )
        if not isinstance(result, dict):
            raise BackendFailed(f"{self.kind} answered {path} with an empty or non-object body")
        return result

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.capabilities.chat:
            raise self._unsupported("chat completions")
        body = self.chat_fields.apply({**body, "stream": False}, "chat", self.kind)
        return await self._post("/chat/completions", body)

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        if not self.capabilities.chat:
            raise self._unsupported("chat completions")
        body = self.chat_fields.apply({**body, "stream": True}, "chat", self.kind)
        return self.relay_sse(f"{self.api_base}/chat/completions", body)

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.capabilities.chat:
            raise self._unsupported("text completions")
        body = self.completion_fields.apply({**body, "stream": False}, "completions", self.kind)
        return await self._post("/completions", body)

    def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        if not self.capabilities.chat:
            raise self._unsupported("text completions")
        body = self.completion_fields.apply({**body, "stream": True}, "completions", self.kind)
        return self.relay_sse(f"{self.api_base}/completions", body)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.capabilities.embeddings:
            raise self._unsupported("embeddings")
        return await self._post("/embeddings", body)

    async def images(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.capabilities.images:
            raise self._unsupported("image generation")
        return await self._post("/images/generations", body)

    async def transcription(self, request_: TranscriptionRequest) -> dict[str, Any] | str:
        if not self.capabilities.transcription:
            raise self._unsupported("audio transcription")
        return await post_transcription(self, f"{self.api_base}/audio/transcriptions", request_)

    # -- streaming relay --------------------------------------------------------------------------
    async def relay_sse(self, url: str, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        """POST ``body`` and yield each SSE data payload untouched, until ``[DONE]``."""
        decoder = SSEDecoder(self.max_line)
        finished = False
        seen_finish = False
        response: aiohttp.ClientResponse | None = None
        try:
            response = await self.session().post(url, json=body, timeout=REQUEST_TIMEOUT)
            if response.status >= 400:
                raise await read_error(self.kind, response)
            ctype = response.headers.get("Content-Type", "")
            if "text/event-stream" not in ctype:
                # LM Studio answers 200 + {"error": …}; anything else non-SSE is a broken stream.
                raw = await response.read()
                parse_json(self.kind, url, raw)
                raise BackendFailed(f"{self.kind} did not stream (Content-Type {ctype!r})")
            async for data in response.content.iter_any():
                for event in decoder.feed(data):
                    if event.data.startswith("[DONE]"):
                        finished = True
                        return
                    info = inspect_chunk(event.data)
                    if info.error is not None:
                        raise BackendFailed(f"{self.kind} failed mid-stream: {info.error}")
                    seen_finish = seen_finish or info.finish_reason is not None
                    yield StreamChunk(event.data, info.usage, info.finish_reason)
            for event in decoder.finish():
                if not event.data.startswith("[DONE]"):
                    info = inspect_chunk(event.data)
                    seen_finish = seen_finish or info.finish_reason is not None
                    yield StreamChunk(event.data, info.usage, info.finish_reason)
            finished = True
            if not seen_finish:
                raise BackendUnavailable(
                    f"The {self.kind} backend at {self.base} ended the stream before the "
                    "completion finished.",
                    hint="check the backend's own log; the worker keeps serving",
                )
        except LineTooLong as exc:
            raise BackendFailed(f"{self.kind} sent a broken stream: {exc}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise unavailable(self.kind, self.base, exc) from None
        finally:
            if response is not None:
                if finished:
                    response.release()
                else:
                    # Closing the connection is what makes the backend stop generating.
                    response.close()


async def post_transcription(
    backend: HttpBackend, url: str, req: TranscriptionRequest
) -> dict[str, Any] | str:
    """Forward a multipart transcription; JSON answers parsed, ``text``/``srt``/``vtt`` as text."""
    form = aiohttp.FormData()
    form.add_field("file", req.file_bytes, filename=req.file_name, content_type=req.content_type)
    form.add_field("model", req.model)
    for name, value in req.fields.items():
        if name not in {"file", "model"}:
            form.add_field(name, value)
    try:
        async with backend.session().post(url, data=form, timeout=REQUEST_TIMEOUT) as response:
            if response.status >= 400:
                raise await read_error(backend.kind, response)
            raw = await response.read()
            if "json" in response.headers.get("Content-Type", ""):
                result = parse_json(backend.kind, url, raw)
                if not isinstance(result, dict):
                    raise BackendFailed(f"{backend.kind} answered a transcription with non-object")
                return result
            return raw.decode("utf-8", errors="replace")
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise unavailable(backend.kind, backend.base, exc) from None

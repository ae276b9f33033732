"""The OpenAI-compatible surface most emulated backends share, with per-kind flavours.

Flavours mirror reference/backends.md §7 and the kind sections: who owns the model cards, whether
the finish reason rides on the last content chunk (vLLM, old Ollama) or on its own empty-delta chunk
(OpenAI, newest Ollama), whether the stream ends with ``[DONE]``, the error envelope (nested or
vLLM's old flat one), llama.cpp's ``timings``. Replies are deterministic: ``"Echo: <last user
message>"`` split into word tokens, so tests can assert exact content.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .base import Emulator


def reply_tokens(messages: Any) -> list[str]:
    """The emulated reply to a conversation, as the tokens a stream sends."""
    last = ""
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            last = str(content)
    words = f"Echo: {last}".split(" ")
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)]


def prompt_tokens(messages: Any) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))


def fake_embedding(text: str, dims: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((b - 128) / 128, 4) for b in digest[:dims]]


def nested_error(status: int, message: str, type_: str = "invalid_request_error") -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": None}}
    return web.json_response(body, status=status)


@dataclass
class Flavour:
    owned_by: str = "emulator"
    card_extra: dict[str, Any] = field(default_factory=dict)
    finish_on_last_content: bool = False  # vLLM / old Ollama
    role_every_chunk: bool = False  # old Ollama
    done_sentinel: bool = True
    flat_errors: bool = False  # vLLM < 0.10.1
    timings: bool = False  # llama.cpp
    include_usage_default: bool = False  # vLLM: stream_options: {} already means usage


class OpenAIEmulator(Emulator):
    """An OpenAI-compatible server: ``/v1/models``, chat (stream or not), embeddings, images,
    transcription. Subclasses pick a :class:`Flavour`, the models, and add their own routes."""

    flavour = Flavour()
    serves_embeddings = True
    serves_images = False
    serves_transcription = False

    def __init__(self, models: list[str] | None = None, **kwargs: Any) -> None:
        self.models = list(models if models is not None else ["emu-model"])
        self.api_key: str | None = kwargs.pop("api_key", None)
        super().__init__(**kwargs)

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/models", self.handle_models)
        app.router.add_post("/v1/chat/completions", self.handle_chat)
        app.router.add_post("/v1/completions", self.handle_completions)
        if self.serves_embeddings:
            app.router.add_post("/v1/embeddings", self.handle_embeddings)
        if self.serves_images:
            app.router.add_post("/v1/images/generations", self.handle_images)
        if self.serves_transcription:
            app.router.add_post("/v1/audio/transcriptions", self.handle_transcription)
        self.extra_routes(app)

    def extra_routes(self, app: web.Application) -> None:
        pass

    # -- helpers ----------------------------------------------------------------------------------
    def error(
        self, status: int, message: str, type_: str = "invalid_request_error"
    ) -> web.Response:
        if self.flavour.flat_errors:
            body = {
                "object": "error",
                "message": message,
                "type": type_,
                "param": None,
                "code": status,
            }
            return web.json_response(body, status=status)
        return nested_error(status, message, type_)

    def unauthorised(self, request: web.Request) -> web.Response | None:
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.error(401, "Incorrect API key provided", "authentication_error")
        return None

    def card(self, model: str) -> dict[str, Any]:
        return {
            "id": model,
            "object": "model",
            "created": 1735000000,
            "owned_by": self.flavour.owned_by,
            **self.flavour.card_extra,
        }

    # -- handlers ---------------------------------------------------------------------------------
    async def handle_models(self, request: web.Request) -> web.Response:
        if (denied := self.unauthorised(request)) is not None:
            return denied
        return web.json_response({"object": "list", "data": [self.card(m) for m in self.models]})

    async def handle_chat(self, request: web.Request) -> web.StreamResponse:
        if (denied := self.unauthorised(request)) is not None:
            return denied
        body = await request.json()
        if self.faults.chat_error is not None:
            status, payload = self.faults.chat_error
            return web.json_response(payload, status=status)
        model = body.get("model")
        if model not in self.models:
            return self.error(404, f"The model `{model}` does not exist.", "NotFoundError")
        messages = body.get("messages") or []
        if body.get("stream"):
            return await self.stream_lines(
                request,
                self.sse_chunks(model, messages, body),
                content_type="text/event-stream",
                prefix="data: ",
                suffix="\n\n",
            )
        if self.faults.invalid_json:
            return web.Response(text="this is not json {", content_type="application/json")
        tokens = reply_tokens(messages)
        result: dict[str, Any] = {
            "id": "chatcmpl-emu",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(tokens)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens(messages),
                "completion_tokens": len(tokens),
                "total_tokens": prompt_tokens(messages) + len(tokens),
            },
        }
        return web.json_response(result)

    def sse_chunks(self, model: str, messages: Any, body: dict[str, Any]) -> Iterator[str]:
        flavour = self.flavour
        tokens = reply_tokens(messages)
        if self.faults.huge_line_bytes:
            tokens = [tokens[0], "x" * self.faults.huge_line_bytes, *tokens[1:]]
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get(
            "include_usage", flavour.include_usage_default
        )
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
            return json.dumps(
                {
                    "id": "chatcmpl-emu",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                    ],
                    **extra,
                }
            )

        if self.faults.invalid_json:
            yield '{"id": "chatcmpl-emu", "choices": [ broken'
            return
        if self.faults.endless:
            yield chunk({"role": "assistant", "content": ""}, None)
            for n in itertools.count():
                yield chunk({"content": f" tok{n}"}, None)
        if not flavour.role_every_chunk:
            yield chunk({"role": "assistant", "content": ""}, None)
        for i, token in enumerate(tokens):
            delta = (
                {"role": "assistant", "content": token}
                if flavour.role_every_chunk
                else {"content": token}
            )
            last = i == len(tokens) - 1
            finish = "stop" if (last and flavour.finish_on_last_content) else None
            yield chunk(delta, finish)
        if not flavour.finish_on_last_content:
            extra = {"timings": {"predicted_n": len(tokens)}} if flavour.timings else {}
            yield chunk({}, "stop", **extra)
        if include_usage:
            usage = {
                "prompt_tokens": prompt_tokens(messages),
                "completion_tokens": len(tokens),
                "total_tokens": prompt_tokens(messages) + len(tokens),
            }
            yield json.dumps(
                {
                    "id": "chatcmpl-emu",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        if flavour.done_sentinel:
            yield "[DONE]"

    async def handle_completions(self, request: web.Request) -> web.StreamResponse:
        """Legacy completions: the answer is ``Echo: <prompt>`` (as text_completion objects)."""
        if (denied := self.unauthorised(request)) is not None:
            return denied
        body = await request.json()
        model = body.get("model")
        if model not in self.models:
            return self.error(404, f"The model `{model}` does not exist.", "NotFoundError")
        tokens = reply_tokens([{"role": "user", "content": body.get("prompt", "")}])
        usage = {
            "prompt_tokens": 1,
            "completion_tokens": len(tokens),
            "total_tokens": 1 + len(tokens),
        }

        def chunk(text: str, finish: str | None, **extra: Any) -> str:
            return json.dumps(
                {
                    "id": "cmpl-emu",
                    "object": "text_completion",
                    "created": 1,
                    "model": model,
                    "choices": [
                        {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
                    ],
                    **extra,
                }
            )

        if body.get("stream"):

            def chunks() -> Iterator[str]:
                for token in tokens:
                    yield chunk(token, None)
                yield chunk("", "stop", usage=usage)
                yield "[DONE]"

            return await self.stream_lines(
                request,
                chunks(),
                content_type="text/event-stream",
                prefix="data: ",
                suffix="\n\n",
            )
        return web.Response(
            text=chunk("".join(tokens), "stop", usage=usage), content_type="application/json"
        )

    async def handle_embeddings(self, request: web.Request) -> web.Response:
        if (denied := self.unauthorised(request)) is not None:
            return denied
        body = await request.json()
        if body.get("model") not in self.models:
            return self.error(404, f"model '{body.get('model')}' not found", "not_found_error")
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        if not inputs:
            return self.error(400, "invalid input")
        data = []
        for i, text in enumerate(inputs):
            vector = fake_embedding(str(text))
            if body.get("encoding_format") == "base64":
                packed = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                data.append({"object": "embedding", "index": i, "embedding": packed})
            else:
                data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = sum(len(str(t).split()) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def handle_images(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("model") not in self.models:
            return self.error(404, f"model '{body.get('model')}' not found", "not_found_error")
        image = base64.b64encode(f"PNG:{body.get('prompt')}".encode()).decode()
        return web.json_response(
            {"created": int(time.time()), "data": [{"b64_json": image}] * int(body.get("n", 1))}
        )

    async def handle_transcription(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        model = form.get("model")
        if upload is None or not hasattr(upload, "file"):
            return self.error(400, "file is required")
        if model not in self.models:
            return self.error(404, f"Model '{model}' is not installed locally.")
        audio = upload.file.read()
        text = f"transcribed {len(audio)} bytes of {upload.filename}"
        fmt = form.get("response_format", "json")
        if fmt == "text":
            return web.Response(text=text, content_type="text/plain")
        if fmt == "verbose_json":
            return web.json_response(
                {
                    "language": form.get("language", "en"),
                    "duration": 1.0,
                    "text": text,
                    "segments": [],
                    "words": None,
                }
            )
        return web.json_response({"text": text, "logprobs": None, "usage": None})

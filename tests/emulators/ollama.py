"""Ollama (reference/backends.md §1): ``/`` text, ``/api/version``, ``/api/tags`` (integer sizes,
64-hex digests, RFC 3339 times), ``/api/show`` (``model_info["<arch>.context_length"]``;
concurrency measured in ``show_max_in_flight``), native ``/api/chat`` (NDJSON stream, request
bodies recorded so tests can see ``options.num_ctx``), ``/api/pull`` with the exact status strings
and the error-line-with-HTTP-200 case, ``DELETE /api/delete`` (empty 200 / 404), ``/api/ps`` (the
models in :attr:`OllamaEmulator.loaded`, longest ``expires_at`` first, as ``PsHandler`` sorts them),
and the ``/v1`` surface (``data: null`` when empty; images only when ``images=True`` — v0.14.3 to
v0.32.5)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .base import HOLD, reply
from .openai_surface import Flavour, OpenAIEmulator, prompt_tokens, reply_tokens


@dataclass
class OllamaModel:
    name: str
    context_length: int = 8192
    capabilities: list[str] = field(default_factory=lambda: ["completion"])
    size: int = 4_683_075_271
    family: str = "llama"
    parameter_size: str = "8.0B"
    quantization: str = "Q4_K_M"

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


class OllamaEmulator(OpenAIEmulator):
    kind = "ollama"
    flavour = Flavour(owned_by="library")

    def __init__(
        self,
        models: list[OllamaModel] | None = None,
        *,
        images: bool = False,
        version: str = "0.9.6",
        pullable: dict[str, OllamaModel] | None = None,
        show_delay_s: float = 0.0,
        hold_shows_until: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.ollama_models = list(
            models if models is not None else [OllamaModel("llama3.2:latest")]
        )
        self.serves_images = images
        self.version = version
        self.pullable = dict(pullable or {})
        self.show_delay_s = show_delay_s
        self.hold_shows_until = hold_shows_until
        """``/api/show`` requests wait until this many are in flight at once, then all go on:
        a client's concurrency shows in ``show_max_in_flight`` without depending on timing."""
        self._shows_released: asyncio.Event | None = None
        self.show_in_flight = 0
        self.show_max_in_flight = 0
        self.loaded: dict[str, tuple[float, int]] = {}
        """Models in memory: name -> (expires_at as a Unix time, size_vram)."""
        super().__init__(models=[m.name for m in self.ollama_models], **kwargs)

    def _sync(self) -> None:
        self.models = [m.name for m in self.ollama_models]

    def find(self, name: str) -> OllamaModel | None:
        candidates = {name, f"{name}:latest"}
        return next((m for m in self.ollama_models if m.name in candidates), None)

    def extra_routes(self, app: web.Application) -> None:
        app.router.add_get("/", reply(lambda r: _text(200, "Ollama is running")))
        app.router.add_get(
            "/api/version", reply(lambda r: web.json_response({"version": self.version}))
        )
        app.router.add_get("/api/tags", self.handle_tags)
        app.router.add_post("/api/show", self.handle_show)
        app.router.add_post("/api/chat", self.handle_native_chat)
        app.router.add_post("/api/pull", self.handle_pull)
        app.router.add_delete("/api/delete", self.handle_delete)
        app.router.add_get("/api/ps", self.handle_ps)
        app.router.add_route("*", "/{tail:.*}", reply(lambda r: _text(404, "404 page not found")))

    async def handle_ps(self, request: web.Request) -> web.Response:
        """``api.ProcessResponse``: ``{"models": [{name, model, size, digest, details,
        expires_at, size_vram, context_length}]}``, longest remaining time first."""
        rows = []
        for name, (expires, size_vram) in sorted(self.loaded.items(), key=lambda i: -i[1][0]):
            model = self.find(name)
            if model is None:
                continue
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(expires))
            rows.append(
                {
                    "name": model.name,
                    "model": model.name,
                    "size": model.size,
                    "digest": model.digest,
                    "details": {
                        "parent_model": "",
                        "format": "gguf",
                        "family": model.family,
                        "families": [model.family],
                        "parameter_size": model.parameter_size,
                        "quantization_level": model.quantization,
                    },
                    "expires_at": f"{stamp}.{int(expires % 1 * 1e6):06d}Z",
                    "size_vram": size_vram,
                    "context_length": model.context_length,
                }
            )
        return web.json_response({"models": rows})

    async def handle_models(self, request: web.Request) -> web.Response:
        data = [
            {"id": m.name, "object": "model", "created": 1715000000, "owned_by": "library"}
            for m in self.ollama_models
        ]
        return web.json_response({"object": "list", "data": data or None})

    async def handle_tags(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "models": [
                    {
                        "name": m.name,
                        "model": m.name,
                        "modified_at": "2025-05-10T08:06:48.639712648-07:00",
                        "size": m.size,
                        "digest": m.digest,
                        "details": {
                            "parent_model": "",
                            "format": "gguf",
                            "family": m.family,
                            "families": [m.family],
                            "parameter_size": m.parameter_size,
                            "quantization_level": m.quantization,
                        },
                    }
                    for m in self.ollama_models
                ]
            }
        )

    async def handle_show(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = body.get("model") or body.get("name")
        if not name:
            return web.json_response({"error": "model is required"}, status=400)
        self.show_in_flight += 1
        self.show_max_in_flight = max(self.show_max_in_flight, self.show_in_flight)
        try:
            if self.hold_shows_until is not None:
                if self._shows_released is None:
                    self._shows_released = asyncio.Event()
                if self.show_in_flight >= self.hold_shows_until:
                    self._shows_released.set()
                await self._shows_released.wait()
            if self.show_delay_s:
                await asyncio.sleep(self.show_delay_s)
        finally:
            self.show_in_flight -= 1
        model = self.find(name)
        if model is None:
            return web.json_response({"error": f"model '{name}' not found"}, status=404)
        return web.json_response(
            {
                "modelfile": '# Modelfile generated by "ollama show"',
                "parameters": "num_keep 24",
                "template": "{{ .Prompt }}",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": model.family,
                    "families": [model.family],
                    "parameter_size": model.parameter_size,
                    "quantization_level": model.quantization,
                },
                "model_info": {
                    "general.architecture": model.family,
                    "general.file_type": 2,
                    f"{model.family}.context_length": model.context_length,
                    f"{model.family}.embedding_length": 4096,
                    "tokenizer.ggml.tokens": [],
                },
                "capabilities": model.capabilities,
                "modified_at": "2025-05-10T08:06:48-07:00",
            }
        )

    async def handle_native_chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if self.faults.chat_error is not None:
            status, payload = self.faults.chat_error
            return web.json_response(payload, status=status)
        name = body.get("model")
        if self.find(str(name)) is None:
            return web.json_response({"error": f"model '{name}' not found"}, status=404)
        messages = body.get("messages") or []
        tokens = reply_tokens(messages)
        base = {"model": name, "created_at": "2025-05-10T08:06:48.639712648Z"}
        final = {
            **base,
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "total_duration": 1000,
            "load_duration": 10,
            "prompt_eval_count": prompt_tokens(messages),
            "prompt_eval_duration": 100,
            "eval_count": len(tokens),
            "eval_duration": 900,
        }
        if body.get("stream", True) is False:
            if self.faults.invalid_json:
                return web.Response(text="not json {", content_type="application/json")
            return web.json_response(
                {**final, "message": {"role": "assistant", "content": "".join(tokens)}}
            )

        def lines() -> Any:
            if self.faults.invalid_json:
                yield "{broken"
                return
            if self.faults.endless:
                n = 0
                while True:
                    n += 1
                    yield json.dumps(
                        {
                            **base,
                            "message": {"role": "assistant", "content": f" tok{n}"},
                            "done": False,
                        }
                    )
            items = list(tokens)
            if self.faults.huge_line_bytes:
                items.insert(1, "x" * self.faults.huge_line_bytes)
            for token in items:
                yield json.dumps(
                    {**base, "message": {"role": "assistant", "content": token}, "done": False}
                )
            yield json.dumps(final)

        return await self.stream_lines(request, lines(), content_type="application/x-ndjson")

    async def handle_pull(self, request: web.Request) -> web.StreamResponse:
        if not request.body_exists:
            return web.json_response({"error": "missing request body"}, status=400)
        body = await request.json()
        name = body.get("model") or body.get("name")
        model = self.pullable.get(name)

        def lines() -> Any:
            yield json.dumps({"status": "pulling manifest"})
            if model is None:
                yield json.dumps({"error": "pull model manifest: file does not exist"})
                return
            total = 2_019_377_376
            digest = "sha256:" + model.digest
            steps = 5
            for i in range(1, steps + 1):
                if i == 3:
                    yield HOLD
                if self.faults.pull_error_after is not None and i > self.faults.pull_error_after:
                    yield json.dumps({"error": "max retries exceeded: unexpected EOF"})
                    return
                yield json.dumps(
                    {
                        "status": f"pulling {model.digest[:12]}",
                        "digest": digest,
                        "total": total,
                        "completed": total * i // steps,
                    }
                )
            yield json.dumps(
                {
                    "status": f"pulling {'ab' * 6}",
                    "digest": "sha256:" + "ab" * 32,
                    "total": 1234,
                    "completed": 1234,
                }
            )
            yield json.dumps({"status": "verifying sha256 digest"})
            yield json.dumps({"status": "writing manifest"})
            if self.find(model.name) is None:
                self.ollama_models.append(model)
                self._sync()
            yield json.dumps({"status": "success"})

        if body.get("stream") is False:
            items = [json.loads(x) for x in lines()]
            if "error" in items[-1]:
                return web.json_response(items[-1], status=500)
            return web.json_response(items[-1])
        return await self.stream_lines(request, lines(), content_type="application/x-ndjson")

    async def handle_delete(self, request: web.Request) -> web.Response:
        if not request.body_exists:
            return web.json_response({"error": "missing request body"}, status=400)
        body = await request.json()
        name = body.get("model") or body.get("name")
        model = self.find(str(name))
        if model is None:
            return web.json_response({"error": f"model '{name}' not found"}, status=404)
        self.ollama_models.remove(model)
        self._sync()
        return web.Response(status=200)

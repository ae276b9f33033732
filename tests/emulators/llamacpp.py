"""llama.cpp ``llama-server``: ``/health`` ``{"status":"ok"}`` (503 + error while ``loading``),
``/props``, and the dual-shape model list served byte-identically at ``/v1/models``, ``/models``
and ``/api/tags`` (Ollama-style ``models[]`` with ``size: ""`` and ``digest: ""``). Also answers
``POST /api/show`` — the traps for an Ollama verifier."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import reply
from .openai_surface import Flavour, OpenAIEmulator, nested_error


class LlamaCppEmulator(OpenAIEmulator):
    kind = "llamacpp"
    flavour = Flavour(owned_by="llamacpp", timings=True)

    def __init__(self, *args: Any, n_ctx: int = 4096, loading: bool = False, **kwargs: Any) -> None:
        self.n_ctx = n_ctx
        self.loading = loading
        super().__init__(*args, **kwargs)

    def model_list(self) -> dict[str, Any]:
        return {
            "models": [
                {
                    "name": m,
                    "model": m,
                    "modified_at": "",
                    "size": "",
                    "digest": "",
                    "type": "model",
                    "description": "",
                    "tags": [""],
                    "capabilities": ["completion"],
                    "parameters": "",
                    "details": {
                        "parent_model": "",
                        "format": "gguf",
                        "family": "",
                        "families": [""],
                        "parameter_size": "",
                        "quantization_level": "",
                    },
                }
                for m in self.models
            ],
            "object": "list",
            "data": [
                {
                    "id": m,
                    "object": "model",
                    "created": 1735142223,
                    "owned_by": "llamacpp",
                    "meta": {
                        "vocab_type": 2,
                        "n_vocab": 128256,
                        "n_ctx_train": 131072,
                        "n_embd": 4096,
                        "n_params": 8030261312,
                        "size": 4912898304,
                    },
                }
                for m in self.models
            ],
        }

    async def handle_models(self, request: web.Request) -> web.Response:
        return web.json_response(self.model_list())

    def extra_routes(self, app: web.Application) -> None:
        async def health(request: web.Request) -> web.Response:
            if self.loading:
                return web.json_response(
                    {
                        "error": {
                            "code": 503,
                            "message": "Loading model",
                            "type": "unavailable_error",
                        }
                    },
                    status=503,
                )
            return web.json_response({"status": "ok"})

        async def props(request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "default_generation_settings": {
                        "id": 0,
                        "id_task": -1,
                        "n_ctx": self.n_ctx,
                        "params": {"temperature": 0.8},
                    },
                    "total_slots": 1,
                    "model_path": f"/models/{self.models[0]}",
                    "chat_template": "",
                    "modalities": {"vision": False},
                    "build_info": "b6000-emulator",
                }
            )

        async def show(request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "template": "",
                    "model_info": {"llama.context_length": self.n_ctx},
                    "capabilities": ["completion"],
                }
            )

        app.router.add_get("/health", health)
        app.router.add_get("/v1/health", health)
        app.router.add_get("/props", props)
        app.router.add_get("/models", self.handle_models)
        app.router.add_get("/api/tags", self.handle_models)
        app.router.add_post("/api/show", show)
        app.router.add_route(
            "*",
            "/{tail:.*}",
            reply(lambda r: nested_error(404, "File Not Found", "not_found_error")),
        )

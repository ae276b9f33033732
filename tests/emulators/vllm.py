"""vLLM: ``/health`` (200, empty), ``/version``, cards owned by ``vllm`` with ``max_model_len``,
finish reason on the last content chunk, nested errors (flat ones with ``flat_errors=True``),
FastAPI 404 ``{"detail": "Not Found"}`` for unknown routes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import reply
from .openai_surface import Flavour, OpenAIEmulator


class VllmEmulator(OpenAIEmulator):
    kind = "vllm"

    def __init__(
        self, *args: Any, flat_errors: bool = False, max_model_len: int = 32768, **kwargs: Any
    ) -> None:
        self.flavour = Flavour(
            owned_by="vllm",
            card_extra={
                "root": "/models/emu",
                "parent": None,
                "max_model_len": max_model_len,
                "permission": [{"id": "modelperm-1", "object": "model_permission"}],
            },
            finish_on_last_content=True,
            flat_errors=flat_errors,
            include_usage_default=True,
        )
        super().__init__(*args, **kwargs)

    def extra_routes(self, app: web.Application) -> None:
        app.router.add_get("/health", reply(lambda r: web.Response(status=200)))
        app.router.add_get("/version", reply(lambda r: web.json_response({"version": "0.10.1"})))
        app.router.add_route(
            "*",
            "/{tail:.*}",
            reply(lambda r: web.json_response({"detail": "Not Found"}, status=404)),
        )

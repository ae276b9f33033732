"""Text Generation Inference: ``/info`` (``router: text-generation-router``), ``/health`` empty
200, chat only (no ``/v1/embeddings`` route)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import reply
from .openai_surface import Flavour, OpenAIEmulator


class TgiEmulator(OpenAIEmulator):
    kind = "tgi"
    flavour = Flavour(owned_by="tgi")
    serves_embeddings = False

    def __init__(self, *args: Any, max_total_tokens: int = 32768, **kwargs: Any) -> None:
        self.max_total_tokens = max_total_tokens
        super().__init__(*args, **kwargs)

    def extra_routes(self, app: web.Application) -> None:
        async def info(request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "model_id": self.models[0],
                    "model_sha": "4847e87e",
                    "model_pipeline_tag": None,
                    "max_concurrent_requests": 128,
                    "max_input_tokens": self.max_total_tokens - 1,
                    "max_total_tokens": self.max_total_tokens,
                    "router": "text-generation-router",
                    "version": "3.2.1",
                    "sha": "4d28897b",
                    "docker_label": "sha-4d28897",
                }
            )

        app.router.add_get("/info", info)
        app.router.add_get("/health", reply(lambda r: web.Response(status=200)))

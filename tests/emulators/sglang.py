"""SGLang: ``/get_model_info`` (``model_path``, ``is_generation``), ``/health`` empty 200, vLLM-like
cards owned by ``sglang`` with ``max_model_len``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import reply
from .openai_surface import Flavour, OpenAIEmulator


class SglangEmulator(OpenAIEmulator):
    kind = "sglang"

    def __init__(self, *args: Any, max_model_len: int = 65536, **kwargs: Any) -> None:
        self.flavour = Flavour(
            owned_by="sglang",
            card_extra={"root": "/models/emu", "max_model_len": max_model_len},
            finish_on_last_content=True,
        )
        super().__init__(*args, **kwargs)

    def extra_routes(self, app: web.Application) -> None:
        info = {
            "model_path": f"/models/{self.models[0]}",
            "tokenizer_path": "/models/emu",
            "is_generation": True,
        }
        app.router.add_get("/get_model_info", reply(lambda r: web.json_response(info)))
        app.router.add_get("/health", reply(lambda r: web.Response(status=200)))

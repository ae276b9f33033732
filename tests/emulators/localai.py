"""LocalAI: ``/readyz`` and ``/healthz`` (200 ``OK``), ``/version``, and the full OpenAI surface
(chat, embeddings, images, transcription)."""

from __future__ import annotations

from aiohttp import web

from .base import reply
from .openai_surface import Flavour, OpenAIEmulator


class LocalAIEmulator(OpenAIEmulator):
    kind = "localai"
    flavour = Flavour(owned_by="")
    serves_images = True
    serves_transcription = True

    def card(self, model: str) -> dict:
        return {"id": model, "object": "model"}

    def extra_routes(self, app: web.Application) -> None:
        app.router.add_get("/readyz", reply(lambda r: web.Response(text="OK")))
        app.router.add_get("/healthz", reply(lambda r: web.Response(text="OK")))
        app.router.add_get("/version", reply(lambda r: web.json_response({"version": "v2.29.0"})))

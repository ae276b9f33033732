"""Speaches (reference/backends.md §3): ``/health`` as text ``OK`` (≤ v0.9.0-rc.1) or
``{"message":"OK"}`` (newer) via ``health_style``; ``/v1/models`` cards with ``task`` and
``language``; ``/api/ps`` (``{"models": [str]}`` — an Ollama-looking path); install ``POST
/v1/models/{id}`` answering **200 when it downloaded, 201 when already there** with plain-text
bodies and no Content-Type, 404/401 with ``{"detail"}``; ``DELETE /v1/models/{id}``; multipart
``/v1/audio/transcriptions`` (json, text, verbose_json); FastAPI ``{"detail":"Not Found"}``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import reply
from .openai_surface import Flavour, OpenAIEmulator

REGISTRY = {
    "Systran/faster-whisper-small",
    "Systran/faster-whisper-large-v3",
    "speaches-ai/Kokoro-82M-v1.0-ONNX",
}
GATED = {"pyannote/speaker-diarization-3.1"}


def _plain(status: int, text: str) -> web.Response:
    response = web.Response(status=status, body=text.encode())
    response.headers.pop("Content-Type", None)
    return response


class SpeachesEmulator(OpenAIEmulator):
    kind = "speaches"
    flavour = Flavour(owned_by="Systran")
    serves_embeddings = False
    serves_transcription = True

    def __init__(self, *args: Any, health_style: str = "json", **kwargs: Any) -> None:
        self.health_style = health_style
        kwargs.setdefault("models", ["Systran/faster-whisper-small"])
        super().__init__(*args, **kwargs)

    def card(self, model: str) -> dict[str, Any]:
        task = "text-to-speech" if "Kokoro" in model else "automatic-speech-recognition"
        return {
            "id": model,
            "created": 1718000000,
            "object": "model",
            "owned_by": model.split("/")[0],
            "language": ["en", "de"],
            "task": task,
        }

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self.handle_health)
        app.router.add_get(
            "/api/ps", reply(lambda r: web.json_response({"models": self.models[:1]}))
        )
        app.router.add_get("/v1/models", self.handle_models)
        app.router.add_post("/v1/models/{model_id:.+}", self.handle_install)
        app.router.add_delete("/v1/models/{model_id:.+}", self.handle_delete)
        app.router.add_post("/v1/audio/transcriptions", self.handle_transcription)
        app.router.add_route(
            "*",
            "/{tail:.*}",
            reply(lambda r: web.json_response({"detail": "Not Found"}, status=404)),
        )

    async def handle_health(self, request: web.Request) -> web.Response:
        if self.health_style == "text":
            return _plain(200, "OK")
        return web.json_response({"message": "OK"})

    async def handle_install(self, request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]
        if model_id in GATED:
            return web.json_response(
                {
                    "detail": f"Model '{model_id}' is a gated repository and "
                    "requires authentication. Set the HF_TOKEN"
                },
                status=401,
            )
        if model_id not in REGISTRY:
            return web.json_response({"detail": f"Model '{model_id}' not found"}, status=404)
        if model_id in self.models:
            return _plain(201, f"Model '{model_id}' already exists")
        await self.hold_install()
        self.models.append(model_id)
        return _plain(200, f"Model '{model_id}' downloaded")

    async def handle_delete(self, request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]
        if model_id not in self.models:
            return web.json_response({"detail": f"Model repo not found: {model_id}"}, status=404)
        self.models.remove(model_id)
        return web.json_response({"detail": f"Model '{model_id}' deleted"})

    async def handle_transcription(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("model") not in self.models:
            return web.json_response(
                {
                    "detail": f"Model '{form.get('model')}' is not installed "
                    "locally. You can download the model using `POST "
                    "/v1/models`"
                },
                status=404,
            )
        return await super().handle_transcription(request)

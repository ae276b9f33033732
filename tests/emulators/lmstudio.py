"""LM Studio (reference/backends.md §2): unknown routes answer **HTTP 200** with
``{"error": "Unexpected endpoint or method. (GET /x)"}`` — the most important negative case for the
Ollama verifier. ``/api/v0/models`` and ``/api/v1/models`` (pick with ``api_versions``), ``/v1``
models owned by ``organization_owner``, chat and embeddings, and the v1 download API with job
polling (``download_steps`` polls until completed; ``download_fails`` ends in ``failed``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .openai_surface import Flavour, OpenAIEmulator


class LmStudioEmulator(OpenAIEmulator):
    kind = "lmstudio"
    flavour = Flavour(owned_by="organization_owner")

    def __init__(
        self,
        *args: Any,
        api_versions: tuple[str, ...] = ("v0", "v1"),
        download_steps: int = 3,
        download_fails: bool = False,
        max_context_length: int = 131072,
        **kwargs: Any,
    ) -> None:
        self.api_versions = api_versions
        self.download_steps = download_steps
        self.download_fails = download_fails
        self.max_context_length = max_context_length
        self.jobs: dict[str, dict[str, Any]] = {}
        super().__init__(*args, **kwargs)

    def card(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "owned_by": "organization_owner"}

    def extra_routes(self, app: web.Application) -> None:
        if "v0" in self.api_versions:
            app.router.add_get("/api/v0/models", self.handle_v0)
        if "v1" in self.api_versions:
            app.router.add_get("/api/v1/models", self.handle_v1)
            app.router.add_post("/api/v1/models/download", self.handle_download)
            app.router.add_get("/api/v1/models/download/status/{job}", self.handle_status)
        app.router.add_route("*", "/{tail:.*}", self.unexpected)

    async def unexpected(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"error": f"Unexpected endpoint or method. ({request.method} {request.path})"}
        )

    async def handle_chat(self, request: web.Request) -> web.StreamResponse:
        return await super().handle_chat(request)

    async def handle_v0(self, request: web.Request) -> web.Response:
        data = [
            {
                "id": m,
                "object": "model",
                "type": "embeddings" if "embed" in m else "llm",
                "publisher": "lmstudio-community",
                "arch": "llama",
                "compatibility_type": "gguf",
                "quantization": "Q4_K_M",
                "state": "loaded" if i == 0 else "not-loaded",
                "max_context_length": self.max_context_length,
                **({"loaded_context_length": 4096} if i == 0 else {}),
            }
            for i, m in enumerate(self.models)
        ]
        return web.json_response({"object": "list", "data": data})

    async def handle_v1(self, request: web.Request) -> web.Response:
        models = [
            {
                "type": "embedding" if "embed" in m else "llm",
                "publisher": "google",
                "key": m,
                "display_name": m,
                "architecture": "gemma",
                "quantization": {"name": "Q4_K_M", "bits_per_weight": 4},
                "size_bytes": 17990911801,
                "params_string": "26B-A4B",
                "loaded_instances": [],
                "max_context_length": self.max_context_length,
                "format": "gguf",
            }
            for m in self.models
        ]
        return web.json_response({"models": models})

    async def handle_download(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = body.get("model")
        if not model:
            return web.json_response({"error": "model is required"}, status=400)
        if model in self.models:
            return web.json_response({"status": "already_downloaded"})
        job_id = f"job_{len(self.jobs) + 1:08x}"
        self.jobs[job_id] = {"model": model, "polls": 0}
        return web.json_response(
            {
                "job_id": job_id,
                "status": "downloading",
                "total_size_bytes": 3000,
                "started_at": "2025-10-03T15:33:23Z",
            }
        )

    async def handle_status(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job"]
        job = self.jobs.get(job_id)
        if job is None:
            return web.json_response({"error": f"job {job_id} not found"}, status=404)
        held = self.install_gate is not None and not self.install_gate.is_set()
        if not (held and job["polls"] >= 1):
            job["polls"] += 1
        done = min(3000, 3000 * job["polls"] // self.download_steps)
        status = "downloading"
        if job["polls"] >= self.download_steps:
            status = "failed" if self.download_fails else "completed"
            if status == "completed" and job["model"] not in self.models:
                self.models.append(job["model"])
        return web.json_response(
            {
                "job_id": job_id,
                "status": status,
                "total_size_bytes": 3000,
                "downloaded_bytes": done,
                "started_at": "2025-10-03T15:33:23Z",
            }
        )

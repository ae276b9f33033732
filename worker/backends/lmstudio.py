"""LM Studio (default port 1234; the app is closed source, facts from its docs).

LM Studio has no version or health endpoint and answers *unknown routes with HTTP 200* and
``{"error": "Unexpected endpoint or method. (GET /x)"}`` — every probe must reject an ``error``
body. Verified and listed with ``/api/v0/models`` (≥ 0.3.6: entries carry ``state`` and
``compatibility_type``), falling back to ``/api/v1/models`` (≥ 0.4.0: ``{"models": [{"key"…}]}``).
Installs use the v1 download API and poll the job; there is no API to delete a model, so
uninstall is a clear NotSupported telling the user to remove it in the app.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import aiohttp

from worker.backends.base import Capabilities, InstallProgress, ModelInfo, ProgressCallback, Task
from worker.backends.external import Verdict, is_error_body, probe_json
from worker.backends.openai_compat import OpenAICompatBackend
from worker.backends.openai_fields import (
    FieldPolicy,
    not_hosted,
    only_one_choice,
    refuse,
    refuse_true,
)
from worker.backends.progress import report
from worker.errors import BackendFailed, InstallError, NotSupported, PendraError

_TASKS = {
    "llm": Task.CHAT,
    "vlm": Task.CHAT,
    "embeddings": Task.EMBEDDING,
    "embedding": Task.EMBEDDING,
}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def v0_entries(body: Any) -> list[dict[str, Any]] | None:
    """Entries of a ``/api/v0/models`` answer, None when ``body`` is not one."""
    if not isinstance(body, dict) or is_error_body(body) or body.get("object") != "list":
        return None
    data = body.get("data")
    if not isinstance(data, list):
        return None
    entries = [e for e in data if isinstance(e, dict) and isinstance(e.get("id"), str)]
    if any("state" not in e or "type" not in e for e in entries):
        return None
    return entries


def v1_entries(body: Any) -> list[dict[str, Any]] | None:
    """Entries of a ``/api/v1/models`` answer, None when ``body`` is not one."""
    if not isinstance(body, dict) or is_error_body(body):
        return None
    models = body.get("models")
    if not isinstance(models, list):
        return None
    entries = [e for e in models if isinstance(e, dict)]
    if any(not isinstance(e.get("key"), str) or "type" not in e for e in entries):
        return None
    return entries


def model_from_v0(entry: dict[str, Any]) -> ModelInfo:
    ctx = entry.get("max_context_length")
    return ModelInfo(
        id=entry["id"],
        task=_TASKS.get(str(entry.get("type"))),
        context_length=ctx if isinstance(ctx, int) else None,
        details={
            k: entry[k]
            for k in (
                "publisher",
                "arch",
                "quantization",
                "state",
                "compatibility_type",
                "loaded_context_length",
                "capabilities",
            )
            if k in entry
        },
    )


def model_from_v1(entry: dict[str, Any]) -> ModelInfo:
    ctx = entry.get("max_context_length")
    quant = entry.get("quantization")
    size = entry.get("size_bytes")
    loaded = entry.get("loaded_instances") or []
    return ModelInfo(
        id=entry["key"],
        task=_TASKS.get(str(entry.get("type"))),
        context_length=ctx if isinstance(ctx, int) else None,
        size_bytes=size if isinstance(size, int) else None,
        details={
            "publisher": entry.get("publisher"),
            "arch": entry.get("architecture"),
            "quantization": quant.get("name") if isinstance(quant, dict) else quant,
            "parameters": entry.get("params_string"),
            "format": entry.get("format"),
            "state": "loaded" if loaded else "not-loaded",
        },
    )


class LmStudioBackend(OpenAICompatBackend):
    kind: ClassVar[str] = "lmstudio"
    display_name: ClassVar[str] = "LM Studio"
    capabilities: ClassVar[Capabilities] = Capabilities(
        chat=True, embeddings=True, install=True, uninstall=False
    )
    default_ports: ClassVar[tuple[int, ...]] = (1234,)

    # LM Studio answers one choice and returns no log probabilities.
    chat_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks=not_hosted(
            {
                "n": only_one_choice,
                "logprobs": refuse_true("returns no log probabilities"),
                "top_logprobs": refuse("returns no log probabilities"),
            }
        ),
        renamed={"repetition_penalty": "repeat_penalty"},
        extensions=frozenset({"top_k", "min_p", "repeat_penalty", "ttl", "draft_model"}),
    )
    completion_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks={
            "n": only_one_choice,
            "best_of": only_one_choice,
            "logprobs": refuse("returns no log probabilities"),
            "echo": refuse_true("does not echo the prompt"),
            "suffix": refuse("has no fill-in-the-middle"),
        },
        renamed={"repetition_penalty": "repeat_penalty"},
        extensions=frozenset({"top_k", "min_p", "repeat_penalty", "ttl", "draft_model"}),
    )
    poll_interval_s: ClassVar[float] = 1.0

    @classmethod
    async def verify(cls, session: aiohttp.ClientSession, base_url: str) -> Verdict:
        answer = await probe_json(session, f"{base_url}/api/v0/models")
        if answer is None:
            return Verdict.nothing(base_url)
        if answer[0] == 200 and v0_entries(answer[1]) is not None:
            return Verdict(True, True, facts={"api": "v0"})
        answer = await probe_json(session, f"{base_url}/api/v1/models")
        if answer is not None and answer[0] == 200 and v1_entries(answer[1]) is not None:
            return Verdict(True, True, facts={"api": "v1"})
        return Verdict.other(f"{base_url} is not LM Studio (no /api/v0/models or /api/v1/models)")

    async def list_models(self) -> list[ModelInfo]:
        if self.facts.get("api") == "v1":
            entries = v1_entries(await self.get_json("/api/v1/models"))
            if entries is None:
                raise BackendFailed("lmstudio answered /api/v1/models with an unexpected shape")
            return [model_from_v1(e) for e in entries]
        entries = v0_entries(await self.get_json("/api/v0/models"))
        if entries is None:
            raise BackendFailed("lmstudio answered /api/v0/models with an unexpected shape")
        return [model_from_v0(e) for e in entries]

    async def install(self, model_ref: str, progress: ProgressCallback) -> None:
        """Download ``model_ref`` (an LM Studio catalogue id or Hugging Face URL) and wait."""
        starting = InstallProgress("starting", detail=f"asking LM Studio for {model_ref}")
        await report(progress, starting)
        try:
            job = await self.post_json("/api/v1/models/download", {"model": model_ref})
        except PendraError as exc:
            raise InstallError(
                f"LM Studio refused to download {model_ref}: {exc.message}",
                hint="LM Studio 0.4 or newer is needed for downloads through its API",
            ) from None
        while True:
            if not isinstance(job, dict):
                raise InstallError("LM Studio answered the download request with an odd body")
            status = job.get("status")
            total = _int_or_none(job.get("total_size_bytes"))
            done = _int_or_none(job.get("downloaded_bytes")) or 0
            if status in ("completed", "already_downloaded"):
                await report(progress, InstallProgress("done", total or done, total, status))
                await self.refresh()
                return
            if status == "failed":
                raise InstallError(f"LM Studio failed to download {model_ref}")
            if status not in ("downloading", "paused"):
                raise InstallError(f"LM Studio reported an unknown download status {status!r}")
            phase = "downloading" if status == "downloading" else "paused"
            await report(progress, InstallProgress(phase, done, total))
            job_id = job.get("job_id")
            if not isinstance(job_id, str):
                raise InstallError("LM Studio started a download without a job id")
            await asyncio.sleep(self.poll_interval_s)
            try:
                job = await self.get_json(f"/api/v1/models/download/status/{job_id}")
            except PendraError as exc:
                raise InstallError(f"lost track of the LM Studio download: {exc.message}") from None

    async def uninstall(self, model_ref: str) -> None:
        raise NotSupported(
            f"LM Studio has no API to delete models, so {model_ref} cannot be removed from here.",
            hint="remove it in the LM Studio app (My Models → … → Delete)",
        )

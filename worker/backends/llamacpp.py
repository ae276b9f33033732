"""llama.cpp's ``llama-server`` (port 8080 historically, 9931 in the newest builds: probe both).

Verified by ``GET /health`` → ``{"status": "ok"}`` (503 + error while loading) and ``/v1/models``
cards owned by ``"llamacpp"``. llama-server also answers Ollama's ``/api/tags`` and ``/api/show``,
which is why the Ollama verifier needs ``/api/version`` (reference/backends.md §0 trap 1). Context
length: ``/props`` ``default_generation_settings.n_ctx``, else the card's ``meta.n_ctx_train``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp

from worker.backends.base import Capabilities, ModelInfo, Task
from worker.backends.external import Verdict, model_cards, probe_json
from worker.backends.openai_compat import OpenAICompatBackend
from worker.backends.openai_fields import (
    FieldPolicy,
    not_hosted,
    only_one_choice,
    refuse,
    refuse_true,
)
from worker.backends.upstream_errors import message_from_body
from worker.errors import BackendFailed, PendraError


def context_from_props(props: Any) -> int | None:
    settings = props.get("default_generation_settings") if isinstance(props, dict) else None
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None


LLAMACPP_EXTENSIONS = frozenset(
    {
        "top_k", "min_p", "repeat_penalty", "repeat_last_n", "typical_p", "mirostat",
        "mirostat_tau", "mirostat_eta", "dynatemp_range", "dynatemp_exponent", "xtc_probability",
        "xtc_threshold", "top_n_sigma", "dry_multiplier", "dry_base", "dry_allowed_length",
        "dry_penalty_last_n", "dry_sequence_breakers", "grammar", "json_schema", "n_probs",
        "post_sampling_probs", "cache_prompt", "id_slot", "samplers", "ignore_eos", "n_keep",
        "n_indent", "n_predict", "min_keep", "t_max_predict_ms", "chat_template_kwargs",
        "reasoning_format", "parse_tool_calls", "return_tokens", "timings_per_token", "lora",
    }
)  # fmt: skip


class LlamaCppBackend(OpenAICompatBackend):
    kind: ClassVar[str] = "llamacpp"
    display_name: ClassVar[str] = "llama-server"
    capabilities: ClassVar[Capabilities] = Capabilities(chat=True, embeddings=True)
    default_ports: ClassVar[tuple[int, ...]] = (8080, 9931)

    # llama-server serves one choice per request and its own sampling/grammar extensions.
    chat_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks=not_hosted({"n": only_one_choice}),
        renamed={"repetition_penalty": "repeat_penalty"},
        extensions=LLAMACPP_EXTENSIONS,
    )
    completion_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks={
            "n": only_one_choice,
            "best_of": only_one_choice,
            "suffix": refuse("takes fill-in-the-middle at /infill, not /v1/completions"),
            "echo": refuse_true("does not echo the prompt"),
        },
        renamed={"repetition_penalty": "repeat_penalty"},
        extensions=LLAMACPP_EXTENSIONS,
    )

    @classmethod
    async def verify(cls, session: aiohttp.ClientSession, base_url: str) -> Verdict:
        answer = await probe_json(session, f"{base_url}/health")
        if answer is None:
            return Verdict.nothing(base_url)
        status, body = answer
        if status == 503 and isinstance(body, dict) and "error" in body:
            return Verdict.other(f"llama-server at {base_url} is busy: {message_from_body(body)}")
        if status != 200 or not isinstance(body, dict) or body.get("status") != "ok":
            return Verdict.other(f"{base_url} is not llama-server (no {{'status': 'ok'}} /health)")
        answer = await probe_json(session, f"{base_url}/v1/models")
        cards = model_cards(answer[1]) if answer and answer[0] == 200 else None
        if not cards or any(card.get("owned_by") != "llamacpp" for card in cards):
            return Verdict.other(f"{base_url} is not llama-server (no llamacpp /v1/models)")
        return Verdict(True, True)

    async def list_models(self) -> list[ModelInfo]:
        cards = model_cards(await self.get_json("/v1/models"))
        if cards is None:
            raise BackendFailed("llamacpp answered /v1/models with an unexpected shape")
        try:
            props = await self.get_json("/props")
        except PendraError:
            props = None  # /props is optional (router mode, old builds)
        served_ctx = context_from_props(props)
        models = []
        for card in cards:
            meta = card.get("meta") if isinstance(card.get("meta"), dict) else {}
            ctx = served_ctx or meta.get("n_ctx") or meta.get("n_ctx_train")
            size = meta.get("size")
            details: dict[str, Any] = {"n_params": meta.get("n_params")} if meta else {}
            status = card.get("status")
            if isinstance(status, dict) and "value" in status:
                details["state"] = status["value"]
            models.append(
                ModelInfo(
                    id=card["id"],
                    task=Task.CHAT,
                    context_length=ctx if isinstance(ctx, int) else None,
                    size_bytes=size if isinstance(size, int) else None,
                    details=details,
                )
            )
        return models

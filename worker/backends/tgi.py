"""Hugging Face Text Generation Inference (port 3000 natively, 80 in its image, usually 8080).

Verified by ``GET /info`` → ``"router": "text-generation-router"`` (reference/backends.md §6). One
model per server: ``model_id`` with context ``max_total_tokens``. No embeddings (a structured 501).
"""

from __future__ import annotations

from typing import ClassVar

import aiohttp

from worker.backends.base import Capabilities, ModelInfo, Task
from worker.backends.external import Verdict, probe_json
from worker.backends.openai_compat import OpenAICompatBackend
from worker.backends.openai_fields import (
    FieldPolicy,
    not_hosted,
    only_one_choice,
    refuse,
    refuse_true,
)
from worker.errors import BackendFailed


class TgiBackend(OpenAICompatBackend):
    kind: ClassVar[str] = "tgi"
    display_name: ClassVar[str] = "TGI"
    capabilities: ClassVar[Capabilities] = Capabilities(chat=True)
    default_ports: ClassVar[tuple[int, ...]] = (3000, 8080)

    # TGI's Messages API: one choice, no logit bias, none of the llama.cpp/vLLM extensions.
    chat_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks=not_hosted(
            {"n": only_one_choice, "logit_bias": refuse("does not apply logit_bias")}
        ),
    )
    completion_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks={
            "n": only_one_choice,
            "best_of": only_one_choice,
            "logit_bias": refuse("does not apply logit_bias"),
            "echo": refuse_true("does not echo the prompt"),
            "suffix": refuse("has no fill-in-the-middle"),
        },
    )

    @classmethod
    async def verify(cls, session: aiohttp.ClientSession, base_url: str) -> Verdict:
        answer = await probe_json(session, f"{base_url}/info")
        if answer is None:
            return Verdict.nothing(base_url)
        status, body = answer
        if (
            status != 200
            or not isinstance(body, dict)
            or body.get("router") != "text-generation-router"
            or not isinstance(body.get("model_id"), str)
        ):
            return Verdict.other(f"{base_url} is not TGI (no text-generation-router /info)")
        return Verdict(True, True, version=body.get("version"), facts=body)

    async def list_models(self) -> list[ModelInfo]:
        info = await self.get_json("/info")
        if not isinstance(info, dict) or not isinstance(info.get("model_id"), str):
            raise BackendFailed("tgi answered /info without a model_id")
        ctx = info.get("max_total_tokens")
        return [
            ModelInfo(
                id=info["model_id"],
                task=Task.CHAT,
                context_length=ctx if isinstance(ctx, int) else None,
                details={"max_input_tokens": info.get("max_input_tokens")},
            )
        ]

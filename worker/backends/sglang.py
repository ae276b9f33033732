"""SGLang (default port 30000).

Verified by ``GET /get_model_info`` (newer: ``/model_info``) → ``{"model_path": …, "is_generation":
bool}`` and ``/v1/models`` cards owned by ``"sglang"`` (reference/backends.md §6). Its cards look
like vLLM's, so ``owned_by`` is what tells them apart.
"""

from __future__ import annotations

from typing import ClassVar

import aiohttp

from worker.backends.base import Capabilities, Task
from worker.backends.external import Verdict, model_cards, probe_json
from worker.backends.openai_compat import OpenAICompatBackend
from worker.backends.openai_fields import FieldPolicy, not_hosted, refuse

SGLANG_EXTENSIONS = frozenset(
    {
        "top_k", "min_p", "repetition_penalty", "min_tokens", "regex", "ebnf", "json_schema",
        "stop_token_ids", "no_stop_trim", "ignore_eos", "skip_special_tokens", "lora_path",
        "session_params", "separate_reasoning", "stream_reasoning", "chat_template_kwargs",
        "return_hidden_states", "rid", "continue_final_message",
    }
)  # fmt: skip


class SglangBackend(OpenAICompatBackend):
    kind: ClassVar[str] = "sglang"
    display_name: ClassVar[str] = "SGLang"
    capabilities: ClassVar[Capabilities] = Capabilities(chat=True, embeddings=True)
    default_ports: ClassVar[tuple[int, ...]] = (30000,)

    chat_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks=not_hosted(),
        renamed={"repeat_penalty": "repetition_penalty"},
        extensions=SGLANG_EXTENSIONS,
    )
    completion_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks={"suffix": refuse("has no fill-in-the-middle")},
        renamed={"repeat_penalty": "repetition_penalty"},
        extensions=SGLANG_EXTENSIONS,
    )

    @classmethod
    async def verify(cls, session: aiohttp.ClientSession, base_url: str) -> Verdict:
        info = None
        for path in ("/get_model_info", "/model_info"):
            answer = await probe_json(session, f"{base_url}{path}")
            if answer is None:
                return Verdict.nothing(base_url)
            status, body = answer
            if status == 200 and isinstance(body, dict) and "model_path" in body:
                info = body
                break
        if info is None or not isinstance(info.get("is_generation"), bool):
            return Verdict.other(f"{base_url} is not SGLang (no /get_model_info)")
        answer = await probe_json(session, f"{base_url}/v1/models")
        cards = model_cards(answer[1]) if answer and answer[0] == 200 else None
        if cards is None or any(card.get("owned_by") != "sglang" for card in cards):
            return Verdict.other(f"{base_url} is not SGLang (no sglang /v1/models)")
        return Verdict(True, True, facts={"is_generation": info["is_generation"]})

    def default_task(self) -> Task | None:
        return Task.CHAT if self.facts.get("is_generation", True) else Task.EMBEDDING

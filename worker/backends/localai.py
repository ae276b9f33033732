"""LocalAI (default port 8080, shared with llama-server and TGI-in-docker).

Verified by ``GET /readyz`` → 200 whose body is not an error envelope (LM Studio answers every
route with 200 + ``error``), ``GET /version`` → ``{"version": …}``, and a ``/v1/models`` list whose
cards are not another engine's (reference/backends.md §6). LocalAI serves chat, embeddings, images
and transcription through its OpenAI surface; model management stays in LocalAI's own gallery.
"""

from __future__ import annotations

from typing import ClassVar

import aiohttp

from worker.backends.base import Capabilities
from worker.backends.external import Verdict, is_error_body, model_cards, probe_json
from worker.backends.openai_compat import OpenAICompatBackend
from worker.backends.openai_fields import FieldPolicy, not_hosted, only_one_choice, refuse

_OTHER_ENGINES = {"vllm", "llamacpp", "sglang", "organization_owner"}
LOCALAI_EXTENSIONS = frozenset(
    {"top_k", "min_p", "repeat_penalty", "typical_p", "mirostat", "mirostat_tau", "mirostat_eta",
     "grammar", "grammar_json_functions", "tfz", "ignore_eos", "batch", "backend"}
)  # fmt: skip


class LocalAIBackend(OpenAICompatBackend):
    kind: ClassVar[str] = "localai"
    display_name: ClassVar[str] = "LocalAI"
    capabilities: ClassVar[Capabilities] = Capabilities(
        chat=True, embeddings=True, images=True, transcription=True
    )
    default_ports: ClassVar[tuple[int, ...]] = (8080,)

    chat_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks=not_hosted({"n": only_one_choice}),
        renamed={"repetition_penalty": "repeat_penalty"},
        extensions=LOCALAI_EXTENSIONS,
    )
    completion_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks={"n": only_one_choice, "best_of": only_one_choice,
                "suffix": refuse("has no fill-in-the-middle")},
        renamed={"repetition_penalty": "repeat_penalty"},
        extensions=LOCALAI_EXTENSIONS,
    )  # fmt: skip

    @classmethod
    async def verify(cls, session: aiohttp.ClientSession, base_url: str) -> Verdict:
        ready = await probe_json(session, f"{base_url}/readyz")
        if ready is None:
            return Verdict.nothing(base_url)
        if ready[0] != 200 or is_error_body(ready[1]):
            return Verdict.other(f"{base_url} is not LocalAI (no /readyz)")
        version = await probe_json(session, f"{base_url}/version")
        body = version[1] if version and version[0] == 200 else None
        if not isinstance(body, dict) or not isinstance(body.get("version"), str):
            return Verdict.other(f"{base_url} is not LocalAI (no /version)")
        answer = await probe_json(session, f"{base_url}/v1/models")
        cards = model_cards(answer[1]) if answer and answer[0] == 200 else None
        if cards is None or any(card.get("owned_by") in _OTHER_ENGINES for card in cards):
            return Verdict.other(f"{base_url} is not LocalAI (its /v1/models is another engine's)")
        return Verdict(True, True, version=body["version"])

"""vLLM (default port 8000, shared with Speaches).

Verified by ``GET /version`` → ``{"version": …}`` plus ``/v1/models`` cards owned by ``"vllm"``
(reference/backends.md §4). ``/v1`` may be protected by ``--api-key``; a 401 there still identifies
vLLM by its public ``/version`` and is reported as such. Context length: ``max_model_len``.
"""

from __future__ import annotations

from typing import ClassVar

import aiohttp

from worker.backends.base import Capabilities
from worker.backends.external import Verdict, model_cards, probe_json
from worker.backends.openai_compat import OpenAICompatBackend
from worker.backends.openai_fields import FieldPolicy, not_hosted, refuse

VLLM_EXTENSIONS = frozenset(
    {
        "top_k", "min_p", "repetition_penalty", "length_penalty", "stop_token_ids",
        "include_stop_str_in_output", "ignore_eos", "min_tokens", "skip_special_tokens",
        "spaces_between_special_tokens", "truncate_prompt_tokens", "prompt_logprobs", "echo",
        "add_generation_prompt", "continue_final_message", "add_special_tokens", "documents",
        "chat_template", "chat_template_kwargs", "mm_processor_kwargs", "guided_json",
        "guided_regex", "guided_choice", "guided_grammar", "guided_decoding_backend",
        "guided_whitespace_pattern", "structured_outputs", "structural_tag", "priority",
        "request_id", "return_tokens_as_token_ids", "cache_salt", "kv_transfer_params",
        "vllm_xargs", "bad_words", "allowed_token_ids", "use_beam_search", "logits_processors",
        "return_token_ids",
    }
)  # fmt: skip


class VllmBackend(OpenAICompatBackend):
    kind: ClassVar[str] = "vllm"
    display_name: ClassVar[str] = "vLLM"
    capabilities: ClassVar[Capabilities] = Capabilities(chat=True, embeddings=True)
    default_ports: ClassVar[tuple[int, ...]] = (8000,)

    # vLLM's own request fields (its sampling and structured-output extensions), passed through.
    chat_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks=not_hosted(),
        renamed={"repeat_penalty": "repetition_penalty"},
        extensions=VLLM_EXTENSIONS,
    )
    completion_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks={"suffix": refuse("has no fill-in-the-middle")},
        renamed={"repeat_penalty": "repetition_penalty"},
        extensions=VLLM_EXTENSIONS,
    )

    @classmethod
    async def verify(cls, session: aiohttp.ClientSession, base_url: str) -> Verdict:
        version = await probe_json(session, f"{base_url}/version")
        if version is None:
            return Verdict.nothing(base_url)
        status, body = version
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("version"), str):
            return Verdict.other(f"{base_url} is not vLLM (no /version)")
        models = await probe_json(session, f"{base_url}/v1/models")
        if models is None:
            return Verdict.nothing(base_url)
        status, body2 = models
        if status in (401, 403):
            return Verdict.other(
                f"vLLM at {base_url} wants an API key for /v1; configure it as the openai kind "
                "(OPENAI_ENDPOINT + OPENAI_API_KEY)"
            )
        cards = model_cards(body2) if status == 200 else None
        if not cards or any(card.get("owned_by") != "vllm" for card in cards):
            return Verdict.other(f"{base_url} is not vLLM (its /v1/models is not owned by vllm)")
        return Verdict(True, True, version=body["version"])

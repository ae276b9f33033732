"""The OpenAI request fields of each endpoint, and what a backend kind does with each of them.

The rule every backend follows: a request field is honoured, or the request is refused with a 400
that names it — never silently dropped. The built-in backend parses every field itself
(:mod:`worker.backends.pendra.params`). An external backend passes a request on to a server that
has its own idea of which fields it serves; :class:`FieldPolicy` says, per kind, which fields
go through unchanged, which are renamed to the server's spelling, which values the server cannot
serve (a 400 before anything is sent), and which non-OpenAI extension fields it takes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from worker.errors import BadRequest

Endpoint = Literal["chat", "completions", "embeddings"]

CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
"""Every field of OpenAI's ``POST /v1/chat/completions`` request."""

COMPLETION_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "best_of",
        "echo",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "max_tokens",
        "n",
        "presence_penalty",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "suffix",
        "temperature",
        "top_p",
        "user",
    }
)
"""Every field of OpenAI's legacy ``POST /v1/completions`` request."""

EMBEDDING_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})

SAMPLING_EXTENSIONS = frozenset({"top_k", "min_p", "repeat_penalty", "repetition_penalty"})
"""Sampling fields that are not OpenAI's but that llama.cpp, vLLM, Ollama and LM Studio clients
send (``extra_body``); the built-in backend honours them all."""

ENDPOINT_FIELDS: Mapping[Endpoint, frozenset[str]] = {
    "chat": CHAT_FIELDS,
    "completions": COMPLETION_FIELDS,
    "embeddings": EMBEDDING_FIELDS,
}
ENDPOINT_PATHS: Mapping[Endpoint, str] = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
}


def unknown_field(name: str, endpoint: Endpoint, who: str) -> BadRequest:
    return BadRequest(
        f"'{name}' is not a field of {ENDPOINT_PATHS[endpoint]} that {who} serves",
        hint="remove it from the request (see docs/openai-compatibility.md for the fields each "
        "backend serves)",
        param=name,
    )


ValueCheck = Callable[[Any], str | None]
"""Returns why the backend cannot serve this value (a 400), or None when it can."""


def only_one_choice(value: Any) -> str | None:
    return None if value in (None, 1) else "serves one choice per request ('n' must be 1)"


def refuse(reason: str) -> ValueCheck:
    return lambda value: None if value is None else reason


def refuse_true(reason: str) -> ValueCheck:
    return lambda value: reason if value is True else None


def refuse_false(reason: str) -> ValueCheck:
    return lambda value: reason if value is False else None


@dataclass(frozen=True)
class FieldPolicy:
    """What one external backend kind does with the fields of one endpoint.

    * ``checks``: fields whose value the kind may not serve; the check says why (a 400 naming it).
    * ``renamed``: fields the server spells differently (sent under the new name).
    * ``extensions``: non-OpenAI fields the server takes (``top_k`` …), passed through.
    * ``open``: pass every field through unchanged (a generic OpenAI-compatible server, which
      answers for itself what it does not serve).

    Any other field that is not OpenAI's is refused with a 400 naming it.
    """

    checks: Mapping[str, ValueCheck] = field(default_factory=dict)
    renamed: Mapping[str, str] = field(default_factory=dict)
    extensions: frozenset[str] = frozenset()
    open: bool = False

    def apply(self, body: Mapping[str, Any], endpoint: Endpoint, kind: str) -> dict[str, Any]:
        """The body to send on, or a :class:`BadRequest` naming the first field it cannot serve."""
        if self.open:
            return dict(body)
        known = ENDPOINT_FIELDS[endpoint]
        out: dict[str, Any] = {}
        for name, value in body.items():
            if name not in known and name not in self.extensions and name not in self.renamed:
                raise unknown_field(name, endpoint, f"the {kind} backend")
            check = self.checks.get(name)
            reason = check(value) if check is not None else None
            if reason is not None:
                raise BadRequest(
                    f"'{name}' = {_short(value)}: the {kind} backend {reason}",
                    hint=f"remove '{name}' or send the request to a backend that serves it "
                    "(docs/openai-compatibility.md)",
                    param=name,
                )
            target = self.renamed.get(name, name)
            if target in out and target != name:
                continue  # the server's own spelling was sent as well: it wins
            out[target] = value
        return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


OPEN = FieldPolicy(open=True)


def not_hosted(kind_checks: Mapping[str, ValueCheck] | None = None) -> dict[str, ValueCheck]:
    """Checks every self-hosted OpenAI-compatible server needs: features of OpenAI's own
    service (audio answers, predicted outputs, web search, stored completions) and the
    deprecated ``functions`` that none of them serves. ``kind_checks`` add to them."""
    checks: dict[str, ValueCheck] = {
        "audio": refuse("has no audio answers"),
        "prediction": refuse("has no predicted outputs"),
        "web_search_options": refuse("has no web search"),
        "store": refuse_true("never stores completions"),
        "functions": refuse("takes 'tools', not the deprecated 'functions'"),
        "function_call": refuse("takes 'tool_choice', not the deprecated 'function_call'"),
        "verbosity": refuse("has no verbosity control"),
        "modalities": lambda v: None if v in (None, ["text"]) else "answers in text only",
        "service_tier": lambda v: None if v in (None, "auto", "default") else "has no tiers",
    }
    checks.update(kind_checks or {})
    return checks


def tool_choice_auto_or_none(value: Any) -> str | None:
    return None if value in (None, "auto", "none") else "only takes tool_choice 'auto' or 'none'"

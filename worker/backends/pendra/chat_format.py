"""Turning OpenAI messages into a prompt: the GGUF's own template, else a per-family fallback.

A GGUF normally carries ``tokenizer.chat_template`` (Jinja). Some don't (the Gemma 3 270M base
model, many hand conversions); llama-cpp-python then falls back to the llama-2 format, with which
Gemma answers with zero tokens. So the fallback is chosen from the model's own special tokens first
(a vocabulary that has ``<start_of_turn>`` speaks the Gemma format whatever its architecture name),
then from its architecture, and ChatML otherwise. A sidecar may name a format explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from worker.errors import BadRequest

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Gemma has no system role: the system text opens the first user turn (as Google's template does).
GEMMA = (
    "{{ bos_token }}{% set ns = namespace(sys='') %}"
    "{% for m in messages %}{% if m['role'] == 'system' %}"
    "{% set ns.sys = ns.sys + m['content'] + '\n\n' %}"
    "{% else %}{% set role = 'model' if m['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{% if role == 'user' and ns.sys %}{{ ns.sys }}{% set ns.sys = '' %}{% endif %}"
    "{{ m['content'] | trim }}{{ '<end_of_turn>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim }}"
    "{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% set ns = namespace(sys='') %}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.sys = ns.sys + m['content'] + '\n\n' %}"
    "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + eos_token }}"
    "{% else %}{{ '[INST] ' + ns.sys + m['content'] + ' [/INST]' }}{% set ns.sys = '' %}"
    "{% endif %}{% endfor %}"
)
PHI3 = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

FALLBACKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "chatml": (CHATML, ("<|im_end|>",)),
    "gemma": (GEMMA, ("<end_of_turn>",)),
    "llama3": (LLAMA3, ("<|eot_id|>",)),
    "mistral": (MISTRAL, ()),
    "phi3": (PHI3, ("<|end|>",)),
}
ALIASES = {"llama-3": "llama3", "mistral-instruct": "mistral", "phi-3": "phi3", "gemma2": "gemma"}


def choose_fallback(architecture: str | None, has_token: Callable[[str], bool]) -> str:
    """The fallback format for a model without a template (pure given ``has_token``)."""
    arch = (architecture or "").lower()
    if arch.startswith("gemma") or has_token("<start_of_turn>"):
        return "gemma"
    if has_token("<|start_header_id|>"):
        return "llama3"
    if has_token("<|im_start|>"):
        return "chatml"
    if arch.startswith("phi3") or (has_token("<|assistant|>") and has_token("<|end|>")):
        return "phi3"
    if arch.startswith("mistral") or has_token("[INST]"):
        return "mistral"
    return "chatml"  # qwen*, and the most common format for anything else


def normalise_format_name(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in FALLBACKS:
        choices = ", ".join(sorted(FALLBACKS))
        raise ValueError(f"unknown chat format {name!r} (known: {choices})")
    return key


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    stops: tuple[str, ...]


class _IgnoreGenerationTags(jinja2.ext.Extension):
    """Hugging Face's ``{% generation %}`` block (marks trained text): rendered as is."""

    tags = {"generation"}  # noqa: RUF012 - jinja2's own class attribute

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_exception(message: str) -> None:
    raise ValueError(message)


def compile_template(source: str) -> jinja2.Template:
    """A chat template in the environment Hugging Face's ``apply_chat_template`` uses: sandboxed,
    ``trim_blocks``/``lstrip_blocks``, loop controls, JSON without ASCII escaping."""
    environment = ImmutableSandboxedEnvironment(
        loader=jinja2.BaseLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_IgnoreGenerationTags, jinja2.ext.loopcontrols],
    )
    environment.filters["tojson"] = _tojson
    return environment.from_string(source)


class PromptRenderer:
    """Renders messages with one model's template; built once per loaded model."""

    def __init__(
        self,
        template: str | None,
        fallback: str,
        *,
        bos_token: str,
        eos_token: str,
    ) -> None:
        self.source = "gguf" if template else fallback
        self.bos_token = bos_token
        self.eos_token = eos_token
        extra: tuple[str, ...] = ()
        if not template:
            template, extra = FALLBACKS[fallback]
        try:
            compiled = compile_template(template)
        except Exception as exc:  # a broken template in the GGUF: use the fallback instead
            if self.source != "gguf":
                raise
            template, extra = FALLBACKS[fallback]
            self.source = f"{fallback} (the GGUF template is broken: {exc})"
            compiled = compile_template(template)
        self.template = template
        self._compiled = compiled
        self._stops = tuple(dict.fromkeys((*extra, eos_token) if eos_token else extra))

    def render(self, messages: list[dict[str, Any]], **context: Any) -> RenderedPrompt:
        """The prompt for ``messages``; ``context`` adds template variables (tools …)."""
        try:
            text = self._compiled.render(
                messages=messages,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                add_generation_prompt=True,
                raise_exception=_raise_exception,
                strftime_now=lambda fmt: datetime.now().strftime(fmt),
                **context,
            )
        except Exception as exc:  # the template's raise_exception() or a Jinja error
            raise BadRequest(f"the model's chat template rejected the messages: {exc}") from None
        return RenderedPrompt(text, self._stops)

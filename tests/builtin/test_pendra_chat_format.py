"""Chat template choice for GGUFs without one, and rendering."""

from __future__ import annotations

import pytest

from worker.backends.pendra.chat_format import PromptRenderer, choose_fallback
from worker.errors import BadRequest


def _has(*tokens: str):
    return lambda text: text in tokens


@pytest.mark.parametrize(
    ("arch", "tokens", "expected"),
    [
        ("gemma3", (), "gemma"),
        ("llama", ("<start_of_turn>",), "gemma"),
        ("llama", ("<|start_header_id|>",), "llama3"),
        ("qwen2", ("<|im_start|>",), "chatml"),
        ("qwen3", (), "chatml"),
        ("phi3", (), "phi3"),
        ("llama", ("<|assistant|>", "<|end|>"), "phi3"),
        ("mistral", (), "mistral"),
        ("llama", ("[INST]",), "mistral"),
        ("something-new", (), "chatml"),
        (None, (), "chatml"),
    ],
)
def test_choose_fallback(arch: str | None, tokens: tuple[str, ...], expected: str) -> None:
    assert choose_fallback(arch, _has(*tokens)) == expected


def test_gemma_fallback_merges_system_into_first_user_turn() -> None:
    renderer = PromptRenderer(None, "gemma", bos_token="<bos>", eos_token="<eos>")
    prompt = renderer.render(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
        ]
    )
    assert prompt.text == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    )
    assert "<end_of_turn>" in prompt.stops


def test_gguf_template_is_used_and_its_errors_are_bad_requests() -> None:
    template = (
        "{% if messages[0]['role'] != 'user' %}"
        "{{ raise_exception('first must be user') }}{% endif %}"
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    )
    renderer = PromptRenderer(template, "chatml", bos_token="<s>", eos_token="</s>")
    assert renderer.source == "gguf"
    assert renderer.render([{"role": "user", "content": "x"}]).text == "[user]x"
    with pytest.raises(BadRequest, match="first must be user"):
        renderer.render([{"role": "assistant", "content": "x"}])


def test_broken_gguf_template_falls_back() -> None:
    renderer = PromptRenderer("{% for %}", "chatml", bos_token="", eos_token="")
    assert renderer.source.startswith("chatml")
    assert renderer.render([{"role": "user", "content": "x"}]).text.startswith("<|im_start|>user")

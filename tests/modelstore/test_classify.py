"""Classification of GGUFs as chat / embedding / reranker, from real header files."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_factory import write_header_only

from worker.backends.base import Task
from worker.modelstore.facts import classify, facts_from_header
from worker.modelstore.gguf_header import read_gguf_header


@pytest.mark.parametrize(
    ("arch", "kvs", "task"),
    [
        ("llama", {"llama.context_length": 8192}, Task.CHAT),
        ("qwen3", {"qwen3.pooling_type": 3}, Task.EMBEDDING),  # Qwen3-Embedding: LAST pooling
        ("bert", {"bert.pooling_type": 2}, Task.EMBEDDING),
        ("nomic-bert", {}, Task.EMBEDDING),  # encoder arch without a pooling key
        ("llama", {"llama.attention.causal": False}, Task.EMBEDDING),  # non-causal
        ("bert", {"bert.pooling_type": 4}, Task.RERANKER),
        ("qwen3", {"qwen3.pooling_type": 0}, Task.CHAT),  # NONE pooling: a generator
        ("gemma3", {"gemma3.attention.causal": True}, Task.CHAT),
    ],
)
def test_classification_from_header(tmp_path: Path, arch: str, kvs: dict, task: Task) -> None:
    path = write_header_only(tmp_path / "m.gguf", arch, kvs)
    assert facts_from_header(read_gguf_header(path)).task is task


def test_facts(tmp_path: Path) -> None:
    path = write_header_only(
        tmp_path / "m.gguf",
        "qwen2",
        {
            "general.name": "Qwen2.5 0.5B",
            "general.file_type": 15,
            "general.size_label": "0.5B",
            "qwen2.context_length": 32768,
            "tokenizer.chat_template": "{{ messages }}",
        },
    )
    facts = facts_from_header(read_gguf_header(path))
    assert facts.architecture == "qwen2"
    assert facts.name == "Qwen2.5 0.5B"
    assert facts.quantisation == "Q4_K_M"
    assert facts.context_length == 32768
    assert facts.has_chat_template
    assert facts.size_label == "0.5B"


def test_tiny_fixture_models(tiny_chat_gguf: Path, tiny_embed_gguf: Path) -> None:
    assert facts_from_header(read_gguf_header(tiny_chat_gguf)).task is Task.CHAT
    embed = facts_from_header(read_gguf_header(tiny_embed_gguf))
    assert embed.task is Task.EMBEDDING
    assert embed.pooling_type == 1
    assert embed.causal is False


def test_classify_is_pure() -> None:
    assert classify(None, None, None) is Task.CHAT
    assert classify("t5encoder", None, None) is Task.EMBEDDING
    assert classify("llama", 4, True) is Task.RERANKER

"""What a GGUF header says about a model, and what the model is for (pure functions).

The classification follows llama.cpp's own behaviour (runtime.md §1.9): a RANK pooling type makes
a reranker; a MEAN/CLS/LAST pooling type, an encoder-only architecture or non-causal attention makes
an embedding model; anything else generates text (chat). The pooling key is the signal that matters
most: Qwen3-Embedding uses the ordinary ``qwen3`` architecture with ``pooling_type = LAST``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.backends.base import Task
from worker.modelstore.gguf_header import GGUFHeader

POOLING_NONE, POOLING_MEAN, POOLING_CLS, POOLING_LAST, POOLING_RANK = 0, 1, 2, 3, 4

# Architectures llama.cpp treats as encoders / embedding models (src/llama-arch.cpp).
EMBEDDING_ARCHS = frozenset(
    {
        "bert",
        "modern-bert",
        "nomic-bert",
        "nomic-bert-moe",
        "neo-bert",
        "jina-bert-v2",
        "jina-bert-v3",
        "eurobert",
        "gemma-embedding",
        "t5encoder",
        "llama-embed",
        "pangu-embedded",
    }
)

# general.file_type (llama_ftype) -> the quantisation name people know.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
    30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}  # fmt: skip


@dataclass(frozen=True)
class ModelFacts:
    """The header facts the worker uses: identity, task, context and quantisation."""

    architecture: str | None
    task: Task
    name: str | None = None
    context_length: int | None = None
    quantisation: str | None = None
    pooling_type: int | None = None
    causal: bool | None = None
    has_chat_template: bool = False
    size_label: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "task": self.task.value,
            "name": self.name,
            "context_length": self.context_length,
            "quantisation": self.quantisation,
            "pooling_type": self.pooling_type,
            "causal": self.causal,
            "has_chat_template": self.has_chat_template,
            "size_label": self.size_label,
        }


def classify(architecture: str | None, pooling_type: int | None, causal: bool | None) -> Task:
    """The task of a model from its architecture, pooling type and attention causality."""
    if pooling_type == POOLING_RANK:
        return Task.RERANKER
    if pooling_type in (POOLING_MEAN, POOLING_CLS, POOLING_LAST):
        return Task.EMBEDDING
    if architecture in EMBEDDING_ARCHS or causal is False:
        return Task.EMBEDDING
    return Task.CHAT


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def facts_from_header(header: GGUFHeader) -> ModelFacts:
    """Read the facts the worker needs out of a parsed header."""
    meta = header.metadata
    arch = _str(meta.get("general.architecture"))
    pooling = _int(meta.get(f"{arch}.pooling_type")) if arch else None
    causal_raw = meta.get(f"{arch}.attention.causal") if arch else None
    causal = causal_raw if isinstance(causal_raw, bool) else None
    file_type = _int(meta.get("general.file_type"))
    context = _int(meta.get(f"{arch}.context_length")) if arch else None
    return ModelFacts(
        architecture=arch,
        task=classify(arch, pooling, causal),
        name=_str(meta.get("general.name")),
        context_length=context if context and context > 0 else None,
        quantisation=FILE_TYPES.get(file_type) if file_type is not None else None,
        pooling_type=pooling,
        causal=causal,
        has_chat_template=bool(_str(meta.get("tokenizer.chat_template"))),
        size_label=_str(meta.get("general.size_label")),
    )

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
from worker.modelstore.gguf_header import ArrayInfo, GGUFHeader

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


# Sliding-window layouts llama.cpp hard-codes per architecture when the GGUF does not carry
# ``{arch}.attention.sliding_window_pattern`` (src/llama-model.cpp, ``set_swa_pattern``): with a
# pattern n, layer i uses the window when i % n < n - 1.
SWA_PATTERNS: dict[str, int] = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "gpt-oss": 2}


@dataclass(frozen=True)
class KvShape:
    """What one token of context costs a model in KV cache, per layer (from its header).

    ``head_count_kv`` of 0 marks a layer without attention (a recurrent layer of a hybrid model);
    such a model keeps ``recurrent_state_floats`` of state per sequence instead.
    """

    n_layer: int
    head_count_kv: tuple[int, ...]
    key_length: int
    value_length: int
    n_embd: int
    n_vocab: int | None = None
    sliding_window: int = 0
    swa_layers: tuple[bool, ...] = ()
    recurrent_state_floats: int = 0

    @property
    def recurrent(self) -> bool:
        return self.recurrent_state_floats > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_layer": self.n_layer,
            "head_count_kv": list(self.head_count_kv),
            "key_length": self.key_length,
            "value_length": self.value_length,
            "n_embd": self.n_embd,
            "n_vocab": self.n_vocab,
            "sliding_window": self.sliding_window,
            "swa_layers": sum(self.swa_layers),
            "recurrent_state_floats": self.recurrent_state_floats,
        }


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
    kv: KvShape | None = None

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


def _per_layer(value: Any, n_layer: int) -> tuple[int, ...] | None:
    """A per-layer hyper-parameter given as one integer or as an array of them."""
    if isinstance(value, ArrayInfo):
        if value.values is None or len(value.values) != n_layer:
            return None
        try:
            return tuple(int(v) for v in value.values)
        except (TypeError, ValueError):
            return None
    scalar = _int(value)
    return (scalar,) * n_layer if scalar is not None else None


def kv_shape(header: GGUFHeader, arch: str) -> KvShape | None:
    """The KV-cache shape of an ``arch`` model, or None when the header lacks what it needs."""
    meta = header.metadata

    def get(key: str) -> Any:
        full = f"{arch}.{key}"
        return header.arrays.get(full, meta.get(full))

    n_layer = _int(get("block_count"))
    n_embd = _int(get("embedding_length"))
    if not n_layer or not n_embd or n_layer > 4096:
        return None
    heads = _per_layer(get("attention.head_count"), n_layer)
    kv_heads = _per_layer(get("attention.head_count_kv"), n_layer) or heads
    first_heads = max(heads or (0,))
    head_dim = n_embd // first_heads if first_heads else 0
    key_length = _int(get("attention.key_length")) or head_dim
    value_length = _int(get("attention.value_length")) or head_dim
    # Multi-head latent attention (DeepSeek-V2/V3, Kimi): one compressed entry per token.
    lora = _int(get("attention.kv_lora_rank"))
    if lora:
        rope = _int(get("rope.dimension_count")) or 64
        key_length, value_length, kv_heads = lora + rope, 0, (1,) * n_layer
    window = _int(get("attention.sliding_window")) or 0
    swa: tuple[bool, ...] = ()
    if window:
        pattern = get("attention.sliding_window_pattern")
        if isinstance(pattern, ArrayInfo) and pattern.values and len(pattern.values) == n_layer:
            swa = tuple(bool(v) for v in pattern.values)
        else:
            n = _int(pattern) or SWA_PATTERNS.get(arch, 0)
            if n > 0:
                swa = tuple(i % n < n - 1 for i in range(n_layer))
    state = 0
    d_inner = _int(get("ssm.inner_size"))
    if d_inner:
        d_state = _int(get("ssm.state_size")) or 0
        d_conv = _int(get("ssm.conv_kernel")) or 0
        groups = _int(get("ssm.group_count")) or 0
        recurrent_layers = sum(1 for h in (kv_heads or (0,) * n_layer) if h == 0)
        per_layer = max(0, d_conv - 1) * (d_inner + 2 * groups * d_state) + d_state * d_inner
        state = recurrent_layers * per_layer
    tokens = header.arrays.get("tokenizer.ggml.tokens")
    return KvShape(
        n_layer=n_layer,
        head_count_kv=kv_heads or (0,) * n_layer,
        key_length=key_length,
        value_length=value_length,
        n_embd=n_embd,
        n_vocab=tokens.length if tokens is not None else None,
        sliding_window=window,
        swa_layers=swa,
        recurrent_state_floats=state,
    )


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
        kv=kv_shape(header, arch) if arch else None,
    )

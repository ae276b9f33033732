"""How much KV cache a model gets: sized from the memory that is free after its weights (pure).

A chat model's runner holds one unified KV pool shared by its sequences (slots). The pool is sized
the way vLLM sizes its cache with ``gpu_memory_utilization``, but from what is *free* (other
programs and the other loaded models keep theirs):

    budget    = memory_fraction × (free − weights − compute overhead)
    kv_tokens = the most tokens whose KV fits in budget,
                never more than parallel × min(n_ctx_train, max_context)

A request's context (prompt + answer) is capped at ``min(n_ctx_train, max_context)``, and at the
pool when the pool is smaller. A model whose weights do not fit, or whose pool would hold less
than :data:`MIN_CONTEXT` tokens, is refused with what to change.

The KV bytes per token come from the GGUF header (layers × KV heads × head sizes × the KV type's
bytes); sliding-window layers hold only ``window × slots + n_ubatch`` cells (llama.cpp with
``swa_full = false``), and recurrent layers a fixed state per sequence. Free memory is RAM for CPU
inference, or the free VRAM summed over the GPUs when layers are offloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.errors import InsufficientMemory
from worker.modelstore.facts import KvShape
from worker.units import format_bytes

MIB = 1024**2
KV_TYPE_BYTES: dict[str, float] = {"f16": 2.0, "q8_0": 34 / 32}
N_UBATCH = 512
N_UBATCH_CPU = 256  # on the CPU half the micro-batch costs no speed and ~15 MB of activations
MIN_CONTEXT = 512
TOKEN_ROUNDING = 256  # llama.cpp pads the context to this
RUNTIME_OVERHEAD = 48 * MIB  # the runner process itself: interpreter, llama.cpp, buffers
# Fallback when the header has no usable shape: 128 KiB per token (a Llama-3-8B at f16).
FALLBACK_BYTES_PER_TOKEN = 128 * 1024


@dataclass(frozen=True)
class MemoryBudget:
    """Memory free for the next model, and where the figure came from."""

    free_bytes: int
    where: str  # "RAM", "VRAM", …
    limited_by_setting: bool = False


@dataclass(frozen=True)
class PoolPlan:
    """The KV pool of one model, as planned before loading it."""

    kv_tokens: int
    slots: int
    context_length: int
    kv_type: str
    kv_bytes: int
    weights_bytes: int
    overhead_bytes: int
    limited_by: str  # "context" (the cap) or "memory"
    budget: MemoryBudget

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.overhead_bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "kv_tokens": self.kv_tokens,
            "slots": self.slots,
            "context_length": self.context_length,
            "kv_type": self.kv_type,
            "kv_bytes": self.kv_bytes,
            "weights_bytes": self.weights_bytes,
            "overhead_bytes": self.overhead_bytes,
            "limited_by": self.limited_by,
        }


def kv_bytes(
    shape: KvShape | None, kv_type: str, kv_tokens: int, slots: int, n_ubatch: int = N_UBATCH
) -> int:
    """Bytes of KV cache (and recurrent state) for a pool of ``kv_tokens`` over ``slots``."""
    per_value = KV_TYPE_BYTES[kv_type]
    if shape is None:
        return int(FALLBACK_BYTES_PER_TOKEN * per_value / 2 * kv_tokens)
    window_cells = min(kv_tokens, shape.sliding_window * slots + n_ubatch)
    total = 0.0
    for layer, heads in enumerate(shape.head_count_kv):
        if heads <= 0:
            continue
        per_token = heads * (shape.key_length + shape.value_length) * per_value
        swa = layer < len(shape.swa_layers) and shape.swa_layers[layer]
        total += per_token * (window_cells if swa else kv_tokens)
    total += shape.recurrent_state_floats * 4 * slots
    return int(total)


def kv_bytes_per_token(shape: KvShape | None, kv_type: str) -> float:
    """The cost of one more token of pool, counting only the full-attention layers."""
    per_value = KV_TYPE_BYTES[kv_type]
    if shape is None:
        return FALLBACK_BYTES_PER_TOKEN * per_value / 2
    full = [
        heads
        for layer, heads in enumerate(shape.head_count_kv)
        if heads > 0 and not (layer < len(shape.swa_layers) and shape.swa_layers[layer])
    ]
    return sum(full) * (shape.key_length + shape.value_length) * per_value


def micro_batch(on_gpu: bool) -> int:
    """Tokens llama.cpp computes at once (``n_ubatch``) for chat models."""
    return N_UBATCH if on_gpu else N_UBATCH_CPU


def compute_overhead(shape: KvShape | None, slots: int, on_gpu: bool) -> int:
    """Compute buffers and the runner's own memory, beyond weights and KV (an estimate).

    On a GPU llama.cpp allocates its worst-case graph up front: logits for a whole micro-batch
    (``n_ubatch × n_vocab`` floats) and activations. On the CPU the same buffer is reserved but
    only the pages a step touches become resident: logits for the sequences sampled per step.
    """
    n_vocab = (shape.n_vocab if shape else None) or 32000
    n_embd = shape.n_embd if shape else 4096
    ubatch = micro_batch(on_gpu)
    activations = ubatch * n_embd * 4 * 8
    outputs = (ubatch if on_gpu else max(1, slots)) * n_vocab * 4
    return RUNTIME_OVERHEAD + activations + outputs


QUANT_BLOCK = {"q8_0": 32}


def effective_kv_type(shape: KvShape | None, requested: str) -> str:
    """The KV type to use: a quantised one only where the head sizes are whole blocks of it
    (llama.cpp refuses the context otherwise); f16 for the rest."""
    block = QUANT_BLOCK.get(requested)
    if block is None or shape is None:
        return requested
    sizes = [size for size in (shape.key_length, shape.value_length) if size]
    return requested if all(size % block == 0 for size in sizes) else "f16"


def context_cap(n_ctx_train: int | None, max_context: int) -> int:
    """A request's context: the model's trained length capped by ``builtin.max_context``."""
    return max(64, min(n_ctx_train or max_context, max_context))


def plan_pool(
    *,
    model_id: str,
    shape: KvShape | None,
    weights_bytes: int,
    n_ctx_train: int | None,
    max_context: int,
    parallel: int,
    kv_type: str,
    fraction: float,
    budget: MemoryBudget,
    on_gpu: bool = False,
) -> PoolPlan:
    """Size one model's KV pool, or raise :class:`InsufficientMemory` saying what to change."""
    cap = context_cap(n_ctx_train, max_context)
    slots = max(1, parallel)
    upper = slots * cap
    overhead = compute_overhead(shape, slots, on_gpu)
    room = budget.free_bytes - weights_bytes - overhead
    kv_room = int(fraction * room) if room > 0 else 0

    ubatch = micro_batch(on_gpu)

    def fits(tokens: int) -> bool:
        return kv_bytes(shape, kv_type, tokens, slots, ubatch) <= kv_room

    if fits(upper):
        tokens, limited_by = upper, "context"
    else:
        # The largest multiple of TOKEN_ROUNDING that fits (kv_bytes grows with tokens).
        low, high = 0, upper // TOKEN_ROUNDING
        while low < high:
            mid = (low + high + 1) // 2
            if fits(mid * TOKEN_ROUNDING):
                low = mid
            else:
                high = mid - 1
        tokens, limited_by = low * TOKEN_ROUNDING, "memory"
    minimum = min(cap, MIN_CONTEXT)
    if tokens < minimum:
        raise _refusal(model_id, shape, kv_type, weights_bytes, overhead, minimum, slots, budget,
                       fraction, ubatch)  # fmt: skip
    context = min(cap, tokens)
    return PoolPlan(
        kv_tokens=tokens,
        slots=slots,
        context_length=context,
        kv_type=kv_type,
        kv_bytes=kv_bytes(shape, kv_type, tokens, slots, ubatch),
        weights_bytes=weights_bytes,
        overhead_bytes=overhead,
        limited_by=limited_by,
        budget=budget,
    )


def _refusal(
    model_id: str,
    shape: KvShape | None,
    kv_type: str,
    weights: int,
    overhead: int,
    tokens: int,
    slots: int,
    budget: MemoryBudget,
    fraction: float,
    ubatch: int,
) -> InsufficientMemory:
    kv = kv_bytes(shape, kv_type, tokens, slots, ubatch)
    need = weights + overhead + int(kv / fraction)
    source = "builtin.memory_limit" if budget.limited_by_setting else "free"
    hints = ["free memory (fewer loaded models: builtin.max_loaded_models, or stop other programs)"]
    if kv_type != "q8_0":
        hints.append('set builtin.kv_type = "q8_0" (half the KV memory)')
    hints.append("lower builtin.max_context or builtin.parallel")
    hints.append("install a smaller quantisation of the model")
    if budget.limited_by_setting:
        hints.insert(0, "raise builtin.memory_limit")
    return InsufficientMemory(
        f"the model {model_id!r} does not fit in memory: it needs about {_size(need)} "
        f"(weights {_size(weights)}, KV cache for {tokens} tokens {_size(kv)}, buffers "
        f"{_size(overhead)}) but {_size(budget.free_bytes)} of {budget.where} is {source}",
        hint="; or ".join(hints),
    )


def _size(value: int) -> str:
    return format_bytes(value, binary=True)

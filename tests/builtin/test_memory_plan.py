"""Sizing a model's KV pool from free memory (pure), checked against hand-computed figures and
against the buffer sizes llama.cpp itself reports for Gemma 3 270M."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_factory import write_header_only

from worker.backends.pendra.memory import (
    MIB,
    MemoryBudget,
    compute_overhead,
    context_cap,
    effective_kv_type,
    kv_bytes,
    kv_bytes_per_token,
    plan_pool,
)
from worker.errors import InsufficientMemory
from worker.modelstore.facts import KvShape, facts_from_header
from worker.modelstore.gguf_header import read_gguf_header

GIB = 1024**3
LLAMA3_8B = KvShape(n_layer=32, head_count_kv=(8,) * 32, key_length=128, value_length=128,
                    n_embd=4096, n_vocab=128256)  # fmt: skip


def _plan(shape: KvShape, free: int, **kw: object) -> object:
    args = {
        "model_id": "m", "shape": shape, "weights_bytes": 4 * GIB, "n_ctx_train": 131072,
        "max_context": 8192, "parallel": 4, "kv_type": "f16", "fraction": 0.9,
        "budget": MemoryBudget(free, "RAM"),
    }  # fmt: skip
    args.update(kw)
    return plan_pool(**args)  # type: ignore[arg-type]


def test_kv_bytes_of_a_plain_gqa_model() -> None:
    assert kv_bytes_per_token(LLAMA3_8B, "f16") == 32 * 8 * (128 + 128) * 2 == 131072
    assert kv_bytes(LLAMA3_8B, "f16", 1000, 4) == 131072 * 1000
    assert kv_bytes(LLAMA3_8B, "q8_0", 1024, 4) == 131072 * 1024 * 34 // 64


def test_gemma_sliding_window_matches_llama_cpp(gemma_gguf: Path) -> None:
    shape = facts_from_header(read_gguf_header(gemma_gguf)).kv
    assert shape is not None
    assert shape.n_layer == 18 and shape.sliding_window == 512
    assert sum(not swa for swa in shape.swa_layers) == 3  # every sixth layer is global
    # llama.cpp (swa_full = false, 32768 cells, 4 sequences, n_ubatch 256) reports KV buffers of
    # 96.00 MiB (global layers) + 33.75 MiB (sliding-window layers, 512 × 4 + 256 cells).
    assert kv_bytes(shape, "f16", 32768, 4, 256) == int(96 * MIB + 33.75 * MIB)


def test_recurrent_and_latent_attention_shapes(tmp_path: Path) -> None:
    mamba = write_header_only(tmp_path / "mamba.gguf", "mamba", {
        "mamba.block_count": 2, "mamba.embedding_length": 64, "mamba.ssm.inner_size": 128,
        "mamba.ssm.state_size": 16, "mamba.ssm.conv_kernel": 4,
    })  # fmt: skip
    shape = facts_from_header(read_gguf_header(mamba)).kv
    assert shape is not None and shape.recurrent
    assert shape.recurrent_state_floats == 2 * (3 * 128 + 16 * 128)
    assert kv_bytes(shape, "f16", 512, 1) == shape.recurrent_state_floats * 4  # no KV at all
    mla = write_header_only(tmp_path / "mla.gguf", "deepseek2", {
        "deepseek2.block_count": 4, "deepseek2.embedding_length": 512,
        "deepseek2.attention.head_count": 8, "deepseek2.attention.kv_lora_rank": 96,
        "deepseek2.rope.dimension_count": 32,
    })  # fmt: skip
    latent = facts_from_header(read_gguf_header(mla)).kv
    assert latent is not None and kv_bytes_per_token(latent, "f16") == 4 * (96 + 32) * 2


def test_per_layer_kv_heads(tmp_path: Path) -> None:
    path = write_header_only(tmp_path / "hybrid.gguf", "granitehybrid", {
        "granitehybrid.block_count": 4, "granitehybrid.embedding_length": 256,
        "granitehybrid.attention.head_count": 4,
        "granitehybrid.attention.head_count_kv": [0, 2, 0, 2],
        "granitehybrid.ssm.inner_size": 512, "granitehybrid.ssm.state_size": 16,
        "granitehybrid.ssm.conv_kernel": 4,
    })  # fmt: skip
    shape = facts_from_header(read_gguf_header(path)).kv
    assert shape is not None and shape.head_count_kv == (0, 2, 0, 2)
    assert kv_bytes_per_token(shape, "f16") == 2 * 2 * (64 + 64) * 2
    assert shape.recurrent  # the two layers without KV heads keep a state instead


def test_plan_at_the_context_cap_when_memory_allows() -> None:
    plan = _plan(LLAMA3_8B, free=64 * GIB)
    assert (plan.kv_tokens, plan.slots, plan.context_length) == (4 * 8192, 4, 8192)
    assert plan.limited_by == "context"
    assert plan.kv_bytes == 131072 * 4 * 8192  # 4 GiB


def test_plan_shrinks_the_pool_to_free_memory() -> None:
    overhead = compute_overhead(LLAMA3_8B, 4, on_gpu=False)
    free = 4 * GIB + overhead + int(10_000 * 131072 / 0.9)
    plan = _plan(LLAMA3_8B, free=free)
    assert plan.limited_by == "memory"
    assert plan.kv_tokens == 9984  # the most whole 256-token steps that fit 10,000
    assert plan.context_length == 8192  # a pool over one context keeps the per-request cap
    small = _plan(LLAMA3_8B, free=4 * GIB + overhead + int(3000 * 131072 / 0.9))
    assert small.kv_tokens == 2816 and small.context_length == 2816  # requests capped at the pool


def test_a_model_that_cannot_fit_is_refused_with_what_to_change() -> None:
    with pytest.raises(InsufficientMemory) as info:
        _plan(LLAMA3_8B, free=4 * GIB)
    error = info.value
    assert error.http_status == 503 and error.code == "insufficient_memory"
    assert "KV cache for 512 tokens" in error.message and "of RAM is free" in error.message
    assert "q8_0" in (error.hint or "") and "builtin.max_context" in (error.hint or "")
    assert "memory_limit" not in (error.hint or "")
    with pytest.raises(InsufficientMemory) as capped:
        _plan(LLAMA3_8B, free=4 * GIB, budget=MemoryBudget(GIB, "RAM", limited_by_setting=True))
    assert "raise builtin.memory_limit" in (capped.value.hint or "")
    assert "builtin.memory_limit" in capped.value.message


def test_small_trained_context_and_kv_type_choice() -> None:
    assert context_cap(512, 8192) == 512 and context_cap(None, 8192) == 8192
    assert context_cap(131072, 8192) == 8192
    tiny = KvShape(n_layer=2, head_count_kv=(2, 2), key_length=16, value_length=16, n_embd=64)
    assert effective_kv_type(tiny, "q8_0") == "f16"  # 16 is not a whole q8_0 block
    assert effective_kv_type(LLAMA3_8B, "q8_0") == "q8_0"
    assert effective_kv_type(tiny, "f16") == "f16"


def test_free_vram_sums_the_gpus_and_unknown_leaves_it_to_llama_cpp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.backends.pendra import pool
    from worker.gpu.reading import GpuReading

    readings = [
        GpuReading(0, "A", memory_used=2 * GIB, memory_total=24 * GIB),
        GpuReading(1, "B", memory_used=1 * GIB, memory_total=16 * GIB),
        GpuReading(2, "C", memory_used=None, memory_total=None),
    ]
    monkeypatch.setattr("worker.gpu.read_gpus", lambda: readings)
    assert pool._free_vram() == 37 * GIB
    monkeypatch.setattr("worker.gpu.read_gpus", lambda: readings[2:])
    assert pool._free_vram() >= 1 << 60  # unknown: the plan does not limit, llama.cpp decides

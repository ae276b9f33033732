"""Memory that fits the machine, through the real processes.

Free memory is made deterministic with ``PENDRA_MEMORY_LIMIT`` (the cap on what the built-in
backend may use, a user setting too), so the sizes asserted here do not depend on what else
runs on the machine. The expected pool is worked out from the model's header by hand: the tiny
models have 2 layers × 2 KV heads × (16 + 16) dimensions × 2 bytes (f16) = 256 bytes per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

import openai
import pytest
from conftest import MakeBackend
from runner_stack import RunnerStack, rss, start_runner_stack

from tests.model_factory import NO_EARLY_END
from worker.backends.pendra.memory import compute_overhead, kv_bytes, micro_batch
from worker.modelstore.facts import facts_from_header
from worker.modelstore.gguf_header import read_gguf_header

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TINY_KV_PER_TOKEN = 2 * 2 * (16 + 16) * 2


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _limit_for(gguf: Path, kv_tokens: int, *, slots: int = 4, fraction: float = 0.9) -> int:
    """A memory limit that leaves room for exactly ``kv_tokens`` of KV cache (and no more whole
    256-token step) after the weights and the compute buffers."""
    shape = facts_from_header(read_gguf_header(gguf)).kv
    assert shape is not None and shape.n_layer == 2
    fixed = gguf.stat().st_size + compute_overhead(shape, slots, on_gpu=False)
    return fixed + int((kv_tokens + 128) * TINY_KV_PER_TOKEN / fraction)


def test_pool_shrinks_when_memory_is_short(
    tmp_path: Path, clean_env: dict[str, str], tiny_chat_gguf: Path
) -> None:
    limit = _limit_for(tiny_chat_gguf, 1024)
    stack = start_runner_stack(tmp_path, clean_env, {"tiny": tiny_chat_gguf}, memory_limit=limit)
    try:
        answer = stack.client.chat.completions.create(
            model="tiny",
            messages=_user("hello"),
            max_tokens=4,
            logit_bias=NO_EARLY_END,  # random weights: only max_tokens may end this answer
        )
        assert answer.usage is not None and answer.usage.completion_tokens == 4
        entry = stack.loaded()["tiny"]
        # At the cap the pool would be 4 slots × 512 tokens = 2048; memory allows 1024.
        assert entry["kv_tokens"] == 1024
        assert entry["kv_limited_by"] == "memory"
        assert entry["context_length"] == 512 and entry["slots"] == 4
        assert "sized by free memory" in stack.worker.output()
    finally:
        stack.close()


def test_unfitting_model_is_a_503_saying_what_to_change(
    tmp_path: Path, clean_env: dict[str, str], tiny_chat_gguf: Path
) -> None:
    stack = start_runner_stack(
        tmp_path, clean_env, {"tiny": tiny_chat_gguf}, memory_limit=_limit_for(tiny_chat_gguf, 0)
    )
    try:
        with pytest.raises(openai.InternalServerError) as info:
            stack.client.chat.completions.create(model="tiny", messages=_user("x"), max_tokens=1)
        assert info.value.status_code == 503
        message = str(info.value)
        assert "does not fit in memory" in message and "KV cache for 512 tokens" in message
        assert "raise builtin.memory_limit" in message and "q8_0" in message
        assert stack.loaded() == {}
        stack.assert_worker_alive()
    finally:
        stack.close()


def test_memory_limit_unloads_an_idle_model_to_fit_another(
    tmp_path: Path, clean_env: dict[str, str], tiny_chat_gguf: Path
) -> None:
    """Two models under a limit that holds one: the idle one makes room (max_loaded allows 2)."""
    limit = _limit_for(tiny_chat_gguf, 2048)
    stack = start_runner_stack(
        tmp_path, clean_env, {"one": tiny_chat_gguf, "two": tiny_chat_gguf}, memory_limit=limit
    )
    try:
        for model in ("one", "two", "one"):
            stack.client.chat.completions.create(model=model, messages=_user("x"), max_tokens=1)
            assert list(stack.loaded()) == [model]
            assert stack.loaded()[model]["kv_tokens"] == 2048
        assert "to free memory for two" in stack.worker.output()
    finally:
        stack.close()


def test_q8_0_kv_cache(
    tmp_path: Path, clean_env: dict[str, str], gemma_gguf: Path, tiny_chat_gguf: Path
) -> None:
    """``PENDRA_KV_TYPE=q8_0`` stores 34 bytes per 32 values instead of 64; a model whose head
    size is not a whole number of q8_0 blocks (the tiny one: 16) keeps an f16 cache and works."""
    stack = start_runner_stack(
        tmp_path, clean_env, {"gemma": gemma_gguf, "tiny": tiny_chat_gguf}, kv_type="q8_0",
        max_context="1024",
    )  # fmt: skip
    try:
        for model in ("gemma", "tiny"):
            answer = stack.client.chat.completions.create(
                model=model, messages=_user("Hello"), max_tokens=3, temperature=0
            )
            assert answer.usage is not None and answer.usage.completion_tokens > 0
        loaded = stack.loaded()
        gemma = loaded["gemma"]
        assert gemma["kv_type"] == "q8_0"
        shape = facts_from_header(read_gguf_header(gemma_gguf)).kv
        f16 = kv_bytes(shape, "f16", gemma["kv_tokens"], gemma["slots"], micro_batch(False))
        assert abs(gemma["kv_bytes"] / f16 - 34 / 64) < 0.03  # llama.cpp's own buffer size
        assert loaded["tiny"]["kv_type"] == "f16"
        assert "KV cache stays f16" in stack.worker.output()
    finally:
        stack.close()


def _gemma_defaults(tmp_path: Path, clean_env: dict[str, str], gemma_gguf: Path) -> RunnerStack:
    env = {k: v for k, v in clean_env.items() if not k.startswith("PENDRA_") or k == "PENDRA_HOME"}
    return start_runner_stack(tmp_path, env, {"gemma": gemma_gguf})


def test_gemma_at_defaults_fits_in_600_mb(
    tmp_path: Path, clean_env: dict[str, str], gemma_gguf: Path
) -> None:
    """Gemma 3 270M at the default settings: worker + runner resident memory ≤ 600 MB after
    serving four concurrent answers (the default slots) and a long prompt."""
    stack = _gemma_defaults(tmp_path, clean_env, gemma_gguf)
    try:
        from concurrent.futures import ThreadPoolExecutor

        def ask(i: int) -> int:
            prompt = f"Story number {i}: " + "once upon a time " * (60 * (i + 1))
            result = stack.client.chat.completions.create(
                model="gemma", messages=_user(prompt), max_tokens=32, temperature=0
            )
            return result.usage.completion_tokens if result.usage else 0

        with ThreadPoolExecutor(4) as pool:
            assert all(n > 0 for n in pool.map(ask, range(4)))
        entry = stack.loaded()["gemma"]
        assert entry["context_length"] == 8192 and entry["slots"] == 4
        assert entry["kv_tokens"] == 4 * 8192  # = Gemma's trained context: within the cap
        worker, runner = rss(stack.worker.pid), rss(entry["pid"])
        print(f"RSS at defaults: worker {worker / 1e6:.0f} MB + runner {runner / 1e6:.0f} MB")
        assert worker + runner <= 600 * 1000**2, f"{worker / 1e6:.0f} + {runner / 1e6:.0f} MB"
    finally:
        stack.close()


async def test_a_model_being_unloaded_counts_until_its_runner_has_exited(
    make_backend: MakeBackend, models_dir: Path, tiny_chat_gguf: Path
) -> None:
    """An unload takes the model out of service at once, but its memory is free only when its
    runner process has exited: a model loaded meanwhile must not be planned into that memory.
    The runner is made slow to exit with SIGSTOP (it is killed after the stop grace)."""
    shutil.copy(models_dir / "tiny.gguf", models_dir / "tiny2.gguf")
    backend = await make_backend(MEMORY_LIMIT=_limit_for(tiny_chat_gguf, 1024))
    hello = {"messages": _user("hello"), "max_tokens": 1}
    await backend.chat({"model": "tiny", **hello})
    runner = backend._pool.get("tiny")
    assert runner is not None and runner.pid is not None
    os.kill(runner.pid, signal.SIGSTOP)
    try:
        unloading = asyncio.create_task(backend._pool.unload("tiny"))
        deadline = time.monotonic() + 30
        while "tiny" in backend.loaded_models():
            assert time.monotonic() < deadline, "the unload never started"
            await asyncio.sleep(0.02)
        answer = await asyncio.wait_for(backend.chat({"model": "tiny2", **hello}), 60)
        assert answer["choices"]
        # tiny2 could only be planned once tiny's runner had gone (killed after the grace)
        assert unloading.done() and runner.state in ("stopped", "dead")
        assert backend.loaded_models() == ["tiny2"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(runner.pid, signal.SIGCONT)

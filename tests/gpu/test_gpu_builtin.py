"""The built-in backend on a real GPU: the model offloaded, its KV pool sized from free VRAM.

Skipped cleanly without an NVIDIA GPU whose driver answers, or with a llama.cpp build that does not
offload (the CPU wheel). Where both exist (a GPU box with the CUDA build), it runs through the real
processes like the CPU tests in ``tests/builtin``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.builtin.runner_stack import start_runner_stack
from worker.gpu.probe import read_gpus


def _gpu_build() -> bool:
    code = "import llama_cpp; print(bool(llama_cpp.llama_supports_gpu_offload()))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return result.stdout.strip().endswith("True")


def _free_vram() -> int:
    readings = [r for r in read_gpus() if r.memory_total and r.memory_used is not None]
    return sum(r.memory_total - r.memory_used for r in readings)


def _skip_reason() -> str | None:
    if _free_vram() <= 0:
        return "no GPU whose free memory can be read"
    if not _gpu_build():
        return "this llama.cpp build does not offload to a GPU"
    return None


_SKIP = _skip_reason()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(_SKIP is not None, reason=_SKIP or ""),
]


def test_gemma_offloaded_with_a_vram_sized_pool(
    tmp_path: Path, clean_env: dict[str, str], gemma_gguf: Path
) -> None:
    before = _free_vram()
    stack = start_runner_stack(tmp_path, clean_env, {"gemma": gemma_gguf})
    try:
        answer = stack.client.chat.completions.create(
            model="gemma", messages=[{"role": "user", "content": "Hello"}], max_tokens=8
        )
        assert answer.usage is not None and answer.usage.completion_tokens > 0
        entry = stack.loaded()["gemma"]
        assert entry["kv_tokens"] == 4 * 8192  # a 253 MB model: VRAM is not the limit
        used = before - _free_vram()
        assert used >= entry["weights_bytes"] // 2, "the weights did not go to the GPU"
    finally:
        stack.close()

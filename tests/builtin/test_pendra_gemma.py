"""The built-in backend on the real Gemma 3 270M (base model, no chat template): slow tests."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from conftest import user

from worker.backends.pendra import PendraBackend
from worker.settings import load_settings

pytestmark = pytest.mark.slow


@pytest.fixture(params=[False, True], ids=["serial", "batched"])
async def gemma_backend(
    gemma_gguf: Path, tmp_path: Path, pendra_home: Path, request: pytest.FixtureRequest
):
    models = tmp_path / "models"
    models.mkdir()
    os.symlink(gemma_gguf, models / "gemma.gguf")  # 253 MB: link, don't copy
    settings = load_settings(
        {"PENDRA_HOME": str(pendra_home), "PENDRA_MODELS_DIR": str(models),
         "PENDRA_MAX_CONTEXT": "1024", "PENDRA_PARALLEL": "4"}
    )  # fmt: skip
    backend = PendraBackend(settings, watch=False, batched=request.param)
    await backend.refresh()
    yield backend
    await backend.close()


async def test_gemma_chat_uses_gemma_format_and_answers(gemma_backend: PendraBackend) -> None:
    body = {"model": "gemma", "messages": user("The capital of France is"), "max_tokens": 16,
            "temperature": 0}  # fmt: skip
    result = await gemma_backend.chat(body)
    assert gemma_backend._pool.get("gemma").renderer.source == "gemma"
    assert result["usage"]["completion_tokens"] > 0, "no tokens: the chat format is wrong"
    assert result["choices"][0]["message"]["content"]
    chunks = [c async for c in gemma_backend.chat_stream({**body, "stream": True})]
    text = "".join(
        json.loads(c.json)["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if json.loads(c.json)["choices"]
    )
    assert text == result["choices"][0]["message"]["content"]


async def test_gemma_cancel_frees_the_model_quickly(gemma_backend: PendraBackend) -> None:
    body = {"model": "gemma", "messages": user("Write a long story."), "max_tokens": 600,
            "temperature": 0}  # fmt: skip
    await gemma_backend.chat({**body, "max_tokens": 1})  # load
    stream = gemma_backend.chat_stream(body)
    for _ in range(4):
        await stream.__anext__()
    await stream.aclose()
    start = time.monotonic()
    result = await asyncio.wait_for(gemma_backend.chat({**body, "max_tokens": 3}), 30)
    elapsed = time.monotonic() - start
    assert result["usage"]["completion_tokens"] <= 3
    assert elapsed < 3.0, f"the next request waited {elapsed:.1f}s behind a closed stream"

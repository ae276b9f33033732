"""The built-in backend on the real Gemma 3 270M (base model, no chat template): slow tests."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from conftest import loaded, user, warm

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
    await warm(gemma_backend, body)
    result = await gemma_backend.chat(body)
    assert gemma_backend._pool.get("gemma").info["template"] == "gemma"
    assert result["usage"]["completion_tokens"] > 0, "no tokens: the chat format is wrong"
    assert result["choices"][0]["message"]["content"]
    chunks = [c async for c in gemma_backend.chat_stream({**body, "stream": True})]
    text = "".join(
        json.loads(c.json)["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if json.loads(c.json)["choices"]
    )
    assert text == result["choices"][0]["message"]["content"]


async def test_gemma_cancel_frees_the_model(gemma_backend: PendraBackend) -> None:
    """Closing a stream stops its generation (the model's token counter stops far short of the
    600 tokens asked for) and frees its slot; the next request is served."""
    body = {"model": "gemma", "messages": user("Write a long story."), "max_tokens": 600,
            "temperature": 0}  # fmt: skip
    await gemma_backend.chat({**body, "max_tokens": 1})  # load
    before = loaded(gemma_backend, "gemma")["tokens_generated"]
    stream = gemma_backend.chat_stream(body)
    for _ in range(4):
        await stream.__anext__()
    await stream.aclose()
    deadline = time.monotonic() + 60  # a failure guard, not a performance bound
    while loaded(gemma_backend, "gemma")["slots_in_use"]:
        assert time.monotonic() < deadline, "the closed stream kept its slot"
        await asyncio.sleep(0.02)
    generated = loaded(gemma_backend, "gemma")["tokens_generated"] - before
    assert generated < 600, f"{generated} tokens: the closed stream ran to the end"
    result = await asyncio.wait_for(gemma_backend.chat({**body, "max_tokens": 3}), 60)
    assert result["usage"]["completion_tokens"] <= 3

"""Concurrency, cancellation, lazy load, idle unload and the LRU bound of the built-in backend."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import MakeBackend, user

ENGINES = [pytest.param(False, id="serial"), pytest.param(True, id="batched")]
PROMPTS = ["hello", "count to ten", "the cat", "one two three", "tell me a story", "abc",
           "pendra model", "red blue green"]  # fmt: skip


@pytest.fixture(params=ENGINES)
def batched(request: pytest.FixtureRequest) -> bool:
    return request.param


def _body(prompt: str, max_tokens: int = 48) -> dict:
    return {"model": "tiny", "messages": user(prompt), "max_tokens": max_tokens, "temperature": 0}


async def _stream_text(backend, body: dict) -> tuple[str, str]:
    text, reason = [], None
    async for chunk in backend.chat_stream({**body, "stream": True}):
        data = json.loads(chunk.json)
        for choice in data["choices"]:
            text.append(choice["delta"].get("content") or "")
            reason = choice["finish_reason"] or reason
    return "".join(text), reason


async def test_eight_concurrent_requests_match_greedy_reference(
    make_backend: MakeBackend, batched: bool
) -> None:
    backend = await make_backend(batched=batched, PARALLEL=8)
    reference = []
    for prompt in PROMPTS:
        result = await backend.chat(_body(prompt))
        reference.append(
            (result["choices"][0]["message"]["content"], result["choices"][0]["finish_reason"])
        )

    # Half streamed, half not, all at once.
    async def one(i: int, prompt: str) -> tuple[str, str]:
        if i % 2:
            return await _stream_text(backend, _body(prompt))
        result = await backend.chat(_body(prompt))
        return result["choices"][0]["message"]["content"], result["choices"][0]["finish_reason"]

    results = await asyncio.wait_for(
        asyncio.gather(*(one(i, p) for i, p in enumerate(PROMPTS))), 60
    )
    assert results == reference


async def test_closing_a_stream_frees_the_model(make_backend: MakeBackend, batched: bool) -> None:
    backend = await make_backend(batched=batched, MAX_CONTEXT=512)
    stream = backend.chat_stream(_body("tell me a story", max_tokens=400))
    await stream.__anext__()
    await stream.__anext__()
    await stream.aclose()
    engine = backend._pool.get("tiny")
    deadline = time.monotonic() + 2
    while not engine.idle:
        assert time.monotonic() < deadline, "the engine did not go idle after the client left"
        await asyncio.sleep(0.01)
    result = await asyncio.wait_for(backend.chat(_body("hello", 5)), 10)
    assert result["choices"]


async def test_cancelled_task_cancels_generation(make_backend: MakeBackend, batched: bool) -> None:
    backend = await make_backend(batched=batched)
    await backend.chat(_body("hello", 1))  # loaded, so the next request starts generating at once
    engine = backend._pool.get("tiny")
    while engine.pending:  # the warm-up job's bookkeeping lands just after its answer
        await asyncio.sleep(0.001)
    served = engine.served
    task = asyncio.create_task(backend.chat(_body("tell me a story", max_tokens=400)))
    while engine.pending == 0:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    result = await asyncio.wait_for(backend.chat(_body("hello", 5)), 10)
    assert result["usage"]["completion_tokens"] <= 5
    deadline = time.monotonic() + 2
    while not (engine.idle and engine.served == served + 2):
        assert time.monotonic() < deadline, (
            f"not idle: {engine.served=} {engine.pending=} {engine.leases=}"
        )
        await asyncio.sleep(0.01)


async def test_idle_unload(make_backend: MakeBackend, batched: bool) -> None:
    backend = await make_backend(batched=batched, IDLE_UNLOAD_S=0.3)
    await backend.chat(_body("hello", 3))
    assert backend.loaded_models() == ["tiny"]
    deadline = time.monotonic() + 5
    while backend.loaded_models():
        assert time.monotonic() < deadline, "the idle model was not unloaded"
        await asyncio.sleep(0.05)
    assert (await backend.chat(_body("hello", 3)))["choices"]  # lazy reload
    assert backend.loaded_models() == ["tiny"]


async def test_lru_bound(make_backend: MakeBackend, batched: bool, models_dir: Path) -> None:
    shutil.copy(models_dir / "tiny.gguf", models_dir / "tiny2.gguf")
    backend = await make_backend(batched=batched, MAX_LOADED_MODELS=2)
    await backend.chat(_body("hello", 2))
    await backend.embeddings({"model": "emb", "input": "x"})
    assert backend.loaded_models() == ["tiny", "emb"]
    await backend.chat({**_body("hello", 2), "model": "tiny2"})
    assert backend.loaded_models() == ["emb", "tiny2"]  # tiny was least recently used
    await backend.embeddings({"model": "emb", "input": "x"})
    await backend.chat(_body("hello", 2))
    assert backend.loaded_models() == ["emb", "tiny"]


async def test_lru_waits_for_a_busy_model(make_backend: MakeBackend, models_dir: Path) -> None:
    shutil.copy(models_dir / "tiny.gguf", models_dir / "tiny2.gguf")
    backend = await make_backend(MAX_LOADED_MODELS=1)
    stream = backend.chat_stream(_body("tell me a story", max_tokens=300))
    await stream.__anext__()
    other = asyncio.create_task(backend.chat({**_body("hello", 2), "model": "tiny2"}))
    await asyncio.sleep(0.3)
    assert not other.done() and backend.loaded_models() == ["tiny"]
    await stream.aclose()
    assert (await asyncio.wait_for(other, 10))["choices"]
    assert backend.loaded_models() == ["tiny2"]


async def test_dropped_in_model_is_served_without_restart(
    make_backend: MakeBackend, models_dir: Path
) -> None:
    backend = await make_backend(watch=True)
    shutil.copy(models_dir / "tiny.gguf", models_dir / ".new.gguf.part")
    (models_dir / ".new.gguf.part").rename(models_dir / "new.gguf")
    deadline = time.monotonic() + 10
    while "new" not in {m.id for m in backend.models}:
        assert time.monotonic() < deadline, "the watcher did not pick up the new model"
        await asyncio.sleep(0.05)
    assert (await backend.chat({**_body("hi", 2), "model": "new"}))["choices"]
    (models_dir / "new.gguf").unlink()
    while "new" in {m.id for m in backend.models}:
        assert time.monotonic() < deadline + 10, "the watcher did not drop the removed model"
        await asyncio.sleep(0.05)

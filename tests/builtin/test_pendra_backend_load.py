"""Concurrency, cancellation, lazy load, idle unload and the LRU bound of the built-in backend.

Outputs of concurrent requests are never compared with outputs computed alone: llama.cpp does not
promise bit-identical floats across batch shapes, and a random tiny model has near-ties
everywhere. Isolation is shown with the ``isolation`` model instead, whose greedy answer is the
letter its own prompt is made of by a wide margin, and with what is exact whatever the floats:
prompt token counts, answer lengths and finish reasons.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import MakeBackend, loaded, user

from tests.model_factory import NO_EARLY_END

ENGINES = [pytest.param(False, id="serial"), pytest.param(True, id="batched")]
LETTERS = "abcdefgh"


@pytest.fixture(params=ENGINES)
def batched(request: pytest.FixtureRequest) -> bool:
    return request.param


def _body(prompt: str, max_tokens: int = 48, model: str = "tiny") -> dict:
    return {"model": model, "messages": user(prompt), "max_tokens": max_tokens, "temperature": 0}


async def _stream_text(backend, body: dict) -> tuple[str, str, dict]:
    text, reason, usage = [], None, None
    async for chunk in backend.chat_stream({**body, "stream": True}):
        data = json.loads(chunk.json)
        for choice in data["choices"]:
            text.append(choice["delta"].get("content") or "")
            reason = choice["finish_reason"] or reason
        if chunk.usage is not None:
            usage = {"prompt_tokens": chunk.usage.prompt_tokens,
                     "completion_tokens": chunk.usage.completion_tokens}  # fmt: skip
    return "".join(text), reason, usage


async def _wait_until(condition, what: str, timeout_s: float = 60) -> None:
    """Poll a state change the backend reports asynchronously (the timeout is a failure guard,
    not a performance bound)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_eight_concurrent_requests_are_isolated(
    make_backend: MakeBackend, batched: bool, models_dir: Path, isolation_gguf: Path
) -> None:
    """Eight requests at once, half streamed: each gets its own prompt's answer, its own prompt
    token count, exactly its own max_tokens, and a well-formed finish — no cross-talk."""
    shutil.copy(isolation_gguf, models_dir / "iso.gguf")
    backend = await make_backend(batched=batched, PARALLEL=8)
    # Prompts of different lengths and letters; answers of different lengths.
    bodies = [_body(letter * (30 + 3 * i), 6 + i, "iso") for i, letter in enumerate(LETTERS)]
    alone = [await backend.chat(body) for body in bodies]
    for letter, body, result in zip(LETTERS, bodies, alone, strict=True):
        assert result["choices"][0]["message"]["content"] == letter * body["max_tokens"]

    async def one(i: int, body: dict) -> tuple[str, str, dict]:
        if i % 2:
            return await _stream_text(backend, body)
        result = await backend.chat(body)
        usage = {k: result["usage"][k] for k in ("prompt_tokens", "completion_tokens")}
        return result["choices"][0]["message"]["content"], result["choices"][0][
            "finish_reason"], usage  # fmt: skip

    results = await asyncio.wait_for(
        asyncio.gather(*(one(i, body) for i, body in enumerate(bodies))), 120
    )
    for letter, body, single, (text, reason, usage) in zip(
        LETTERS, bodies, alone, results, strict=True
    ):
        assert text == letter * body["max_tokens"], f"request {letter!r} got {text!r}"
        assert reason == "length"
        assert usage == {
            "prompt_tokens": single["usage"]["prompt_tokens"],
            "completion_tokens": body["max_tokens"],
        }
    assert loaded(backend, "iso")["slots"] == (8 if batched else 1)


async def test_closing_a_stream_frees_the_model(make_backend: MakeBackend, batched: bool) -> None:
    backend = await make_backend(batched=batched, MAX_CONTEXT=512)
    stream = backend.chat_stream(_body("tell me a story", max_tokens=400))
    await stream.__anext__()
    await stream.__anext__()
    await stream.aclose()
    await _wait_until(
        lambda: loaded(backend, "tiny")["slots_in_use"] == 0 and backend._pool.get("tiny").idle,
        "the model did not go idle after the client left",
    )
    result = await asyncio.wait_for(backend.chat(_body("hello", 5)), 60)
    assert result["choices"]


async def test_cancelled_task_cancels_generation(
    make_backend: MakeBackend, batched: bool, models_dir: Path, long_chat_gguf: Path
) -> None:
    """A request cancelled mid-answer stops generating: the model's token counter stops far
    short of the 4000 tokens it asked for (end tokens banned, so only a cancel can stop it
    early; on the 8192-token model that is seconds of work), and the next request is served."""
    shutil.copy(long_chat_gguf, models_dir / "long.gguf")
    backend = await make_backend(batched=batched)
    await backend.chat(_body("hello", 1, "long"))  # loaded: the next request generates at once
    body = {**_body("tell me a story", 4000, "long"), "logit_bias": NO_EARLY_END}
    stream = backend.chat_stream(body)
    await stream.__anext__()  # the role chunk: the generation is running
    await stream.__anext__()
    task = asyncio.ensure_future(stream.__anext__())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()
    await _wait_until(
        lambda: loaded(backend, "long")["slots_in_use"] == 0,
        "the cancelled generation did not leave its slot",
    )
    generated = loaded(backend, "long")["tokens_generated"]
    assert generated < 1 + 4000, f"{generated} tokens: the cancelled request ran to the end"
    result = await asyncio.wait_for(backend.chat(_body("hello", 5, "long")), 60)
    assert result["usage"]["completion_tokens"] <= 5


async def test_idle_unload(make_backend: MakeBackend, batched: bool) -> None:
    backend = await make_backend(batched=batched, IDLE_UNLOAD_S=0.3)
    await backend.chat(_body("hello", 3))
    assert backend.loaded_models() == ["tiny"]
    pid = backend._pool.get("tiny").pid
    await _wait_until(lambda: not backend.loaded_models(), "the idle model was not unloaded")
    await _wait_until(lambda: not _alive(pid), "the unloaded model's runner is still running")
    assert (await backend.chat(_body("hello", 3)))["choices"]  # lazy reload
    assert backend.loaded_models() == ["tiny"]


def _alive(pid: int | None) -> bool:
    return pid is not None and Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except OSError:
        return "Z"


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
    await _wait_until(lambda: backend._pool._waiting["tiny2"] == 1, "tiny2 never queued")
    assert not other.done() and backend.loaded_models() == ["tiny"]
    await stream.aclose()
    assert (await asyncio.wait_for(other, 60))["choices"]
    assert backend.loaded_models() == ["tiny2"]


async def test_dropped_in_model_is_served_without_restart(
    make_backend: MakeBackend, models_dir: Path
) -> None:
    backend = await make_backend(watch=True)
    shutil.copy(models_dir / "tiny.gguf", models_dir / ".new.gguf.part")
    (models_dir / ".new.gguf.part").rename(models_dir / "new.gguf")
    await _wait_until(
        lambda: "new" in {m.id for m in backend.models}, "the watcher did not pick up the model"
    )
    assert (await backend.chat({**_body("hi", 2), "model": "new"}))["choices"]
    assert "new" in backend.loaded_models()
    pid = backend._pool.get("new").pid
    (models_dir / "new.gguf").unlink()
    await _wait_until(
        lambda: "new" not in {m.id for m in backend.models}, "the watcher kept the removed model"
    )
    # A deleted model unloads: it leaves the status, frees its slot and its runner ends.
    await _wait_until(lambda: "new" not in backend.loaded_models(), "the deleted model stayed")
    await _wait_until(lambda: not _alive(pid), "the deleted model's runner is still running")

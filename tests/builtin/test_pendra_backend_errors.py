"""Bad requests and bad models on the built-in backend: clear errors, and it keeps serving."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import MakeBackend, user

from worker.errors import BadRequest, InstallError, ModelLoadError, ModelNotFound

BODY = {"model": "tiny", "messages": user("hi"), "max_tokens": 3, "temperature": 0}


async def test_unknown_model(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    with pytest.raises(ModelNotFound, match="'nope'") as info:
        await backend.chat({**BODY, "model": "nope"})
    assert "tiny" in (info.value.hint or "")
    with pytest.raises(ModelNotFound):
        await backend.embeddings({"model": "nope", "input": "x"})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"messages": []}, "'messages'"),
        ({"max_tokens": 0}, "'max_tokens'"),
        ({"temperature": 9}, "'temperature'"),
    ],
)
async def test_bad_fields(make_backend: MakeBackend, change: dict, field: str) -> None:
    backend = await make_backend()
    with pytest.raises(BadRequest, match=field):
        await backend.chat({**BODY, **change})
    with pytest.raises(BadRequest, match=field):
        [c async for c in backend.chat_stream({**BODY, **change})]


async def test_wrong_task_is_a_400(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    with pytest.raises(BadRequest, match="embedding model") as info:
        await backend.chat({**BODY, "model": "emb"})
    assert info.value.http_status == 400
    with pytest.raises(BadRequest, match="chat model"):
        await backend.embeddings({"model": "tiny", "input": "x"})


async def test_prompt_longer_than_context(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    with pytest.raises(BadRequest, match="tokens of context"):
        await backend.chat({**BODY, "messages": user("one two three " * 200)})
    assert (await backend.chat(BODY))["choices"]


async def test_max_tokens_beyond_context_is_capped(make_backend: MakeBackend) -> None:
    backend = await make_backend(MAX_CONTEXT=128)
    result = await backend.chat({**BODY, "messages": user("tell me a story"), "max_tokens": 100000})
    usage = result["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] <= 128


async def test_corrupt_model_is_unusable_and_backend_keeps_serving(
    make_backend: MakeBackend, models_dir: Path, tiny_chat_gguf: Path
) -> None:
    data = tiny_chat_gguf.read_bytes()
    (models_dir / "cut.gguf").write_bytes(data[: len(data) - 1000])
    (models_dir / "junk.gguf").write_bytes(b"GGUF" + b"\xff" * 64)
    backend = await make_backend()
    assert "cut" not in {m.id for m in backend.models}
    assert {u["id"] for u in backend.describe()["unusable"]} == {"cut", "junk"}
    with pytest.raises(ModelLoadError, match=r"'cut'.*truncated"):
        await backend.chat({**BODY, "model": "cut"})
    assert (await backend.chat(BODY))["choices"][0]["message"]["role"] == "assistant"


async def test_model_that_llama_cpp_rejects(make_backend: MakeBackend, models_dir: Path) -> None:
    """A header that parses but tensors llama.cpp cannot use: ModelLoadError, not a crash."""
    from model_factory import write_header_only

    write_header_only(models_dir / "hollow.gguf", "llama", {"llama.context_length": 256})
    backend = await make_backend()
    with pytest.raises(ModelLoadError, match="'hollow'"):
        await backend.chat({**BODY, "model": "hollow"})
    assert (await backend.chat(BODY))["choices"]


async def test_model_too_big_for_memory(make_backend: MakeBackend, models_dir: Path) -> None:
    """A real sparse file of 1 TiB: the size check refuses it before llama.cpp maps anything."""
    path = models_dir / "huge.gguf"
    shutil.copy(models_dir / "tiny.gguf", path)
    with path.open("r+b") as handle:
        handle.truncate(1024**4)
    backend = await make_backend(GPU_LAYERS=0)
    with pytest.raises(ModelLoadError, match=r"does not fit in memory: it needs about") as info:
        await backend.chat({**BODY, "model": "huge"})
    assert "'huge'" in str(info.value)
    assert info.value.http_status == 503
    assert "smaller quantisation" in (info.value.hint or "")
    assert backend.loaded_models() == []


async def test_uninstall(make_backend: MakeBackend, models_dir: Path) -> None:
    (models_dir / "tiny.gguf.meta.json").write_text(
        '{"ref": "tiny:1", "task": "chat", "sha256": null}'
    )
    backend = await make_backend()
    assert "tiny:1" in {m.id for m in backend.models}
    await backend.chat({**BODY, "model": "tiny:1"})
    assert backend.loaded_models() == ["tiny:1"]
    stream = backend.chat_stream({**BODY, "model": "tiny:1", "max_tokens": 50})
    await stream.__anext__()  # serving now
    with pytest.raises(InstallError, match="serving"):
        await backend.uninstall("tiny:1")
    await stream.aclose()
    # closing the stream released its slot before aclose() returned, not a loop turn later
    assert not backend._pool.busy("tiny:1")
    await backend.uninstall("tiny:1")
    assert not (models_dir / "tiny.gguf").exists()
    assert not (models_dir / "tiny.gguf.meta.json").exists()
    assert "tiny:1" not in {m.id for m in backend.models}
    assert backend.loaded_models() == []
    with pytest.raises(ModelNotFound):
        await backend.uninstall("tiny:1")

"""The modelstore on a real directory: sidecars, header classification, bad files, watching."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from model_factory import write_header_only

from worker.backends.base import Task
from worker.modelstore import ModelStore, StoredModel, is_partial
from worker.modelstore import store as store_module
from worker.modelstore.sidecar import Sidecar, SidecarError, parse_sidecar, write_sidecar

SHA = "a" * 64


def _sidecar(path: Path, **data: object) -> None:
    (path.parent / (path.name + ".meta.json")).write_text(json.dumps(data))


def test_missing_dir_is_empty(tmp_path: Path) -> None:
    assert ModelStore(tmp_path / "nope").scan() == []


def test_scan_sidecar_and_header(
    tmp_path: Path, tiny_chat_gguf: Path, tiny_embed_gguf: Path
) -> None:
    shutil.copy(tiny_chat_gguf, tmp_path / "chat-model.gguf")
    shutil.copy(tiny_embed_gguf, tmp_path / "embedder.gguf")
    _sidecar(
        tmp_path / "chat-model.gguf",
        ref="tiny:chat",
        task="chat",
        sha256=SHA,
        source_url="https://example.invalid/x.gguf",
        context_length=256,
        installed_at="2026-01-01T00:00:00Z",
    )
    models = {m.id: m for m in ModelStore(tmp_path).scan()}
    assert set(models) == {"tiny:chat", "embedder"}
    chat = models["tiny:chat"]
    assert (chat.source, chat.ref, chat.sha256, chat.context_length) == (
        "sidecar",
        "tiny:chat",
        SHA,
        256,
    )
    assert chat.task is Task.CHAT and chat.servable
    embed = models["embedder"]
    assert (embed.source, embed.task, embed.context_length) == ("header", Task.EMBEDDING, 512)
    assert embed.size_bytes == tiny_embed_gguf.stat().st_size
    assert embed.as_dict()["architecture"] == "llama"


def test_bad_files_are_listed_unusable(tmp_path: Path, tiny_chat_gguf: Path) -> None:
    (tmp_path / "html.gguf").write_text("<html>rate limited</html>")
    data = tiny_chat_gguf.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 3])
    (tmp_path / "empty.gguf").write_bytes(b"")
    models = {m.id: m for m in ModelStore(tmp_path).scan()}
    assert set(models) == {"html", "cut", "empty"}
    assert "not a GGUF" in (models["html"].error or "")
    assert "truncated" in (models["cut"].error or "")
    assert "empty" in (models["empty"].error or "")
    assert not any(m.usable or m.servable for m in models.values())


def test_partials_and_other_files_are_ignored(tmp_path: Path, tiny_chat_gguf: Path) -> None:
    for name in (
        "a.gguf.part",
        "b.gguf.partial",
        ".c.gguf",
        "d.gguf.tmp",
        "e.gguf.download",
        "notes.txt",
    ):
        shutil.copy(tiny_chat_gguf, tmp_path / name)
    assert ModelStore(tmp_path).scan() == []
    assert is_partial("x.GGUF.PART") and not is_partial("x.gguf")


def test_subdirectory_and_duplicate_ids(tmp_path: Path, tiny_chat_gguf: Path) -> None:
    (tmp_path / "sub").mkdir()
    shutil.copy(tiny_chat_gguf, tmp_path / "m.gguf")
    shutil.copy(tiny_chat_gguf, tmp_path / "sub" / "m.gguf")
    models = ModelStore(tmp_path).scan()
    assert len(models) == 2
    assert sum(m.usable for m in models) == 1
    loser = next(m for m in models if not m.usable)
    assert "already provides the model id 'm'" in (loser.error or "")


def test_reranker_is_listed_not_served(tmp_path: Path) -> None:
    write_header_only(tmp_path / "rr.gguf", "bert", {"bert.pooling_type": 4})
    (model,) = ModelStore(tmp_path).scan()
    assert model.task is Task.RERANKER and model.usable and not model.servable


def test_malformed_sidecar_falls_back_to_header(tmp_path: Path, tiny_chat_gguf: Path) -> None:
    shutil.copy(tiny_chat_gguf, tmp_path / "m.gguf")
    (tmp_path / "m.gguf.meta.json").write_text("{not json")
    (model,) = ModelStore(tmp_path).scan()
    assert model.id == "m" and model.source == "header" and model.usable
    assert "ignored" in model.notes[0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "not a JSON object"),
        ({"ref": ""}, "'ref'"),
        ({"ref": "a/b"}, "'ref'"),
        ({"ref": "x", "task": "dance"}, "'task'"),
        ({"ref": "x", "sha256": "12"}, "'sha256'"),
        ({"ref": "x", "context_length": -1}, "'context_length'"),
        ({"ref": "x", "context_length": True}, "'context_length'"),
    ],
)
def test_sidecar_validation(data: object, message: str) -> None:
    with pytest.raises(SidecarError, match=message):
        parse_sidecar(data)


def test_sidecar_roundtrip(tmp_path: Path) -> None:
    side = Sidecar(ref="gemma3:270m", task=Task.CHAT, sha256=SHA, context_length=32768)
    (tmp_path / "store").mkdir()
    path = tmp_path / "store" / "g.gguf.meta.json"
    write_sidecar(path, side)
    assert parse_sidecar(json.loads(path.read_text())) == side
    assert [p.name for p in path.parent.iterdir()] == ["g.gguf.meta.json"]


def test_scan_cache_notices_changes(tmp_path: Path, tiny_chat_gguf: Path) -> None:
    store = ModelStore(tmp_path)
    shutil.copy(tiny_chat_gguf, tmp_path / "m.gguf")
    assert store.scan()[0].id == "m"
    _sidecar(tmp_path / "m.gguf", ref="renamed:1", task="chat")
    assert store.scan()[0].id == "renamed:1"
    (tmp_path / "m.gguf").unlink()
    assert store.scan() == []
    assert store.find("renamed:1") is None


async def _wait_for(changes: list[list[StoredModel]], predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (changes and predicate(changes[-1])):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no matching change; last: {changes[-1:] if changes else None}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("force_polling", "inotify"),
    [(False, store_module.USE_INOTIFY), (False, False), (True, False)],
    ids=["os-watcher", "watchfiles", "polling"],
)
async def test_watch_drop_in_partial_and_remove(
    tmp_path: Path,
    tiny_chat_gguf: Path,
    force_polling: bool,
    inotify: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_module, "USE_INOTIFY", inotify)
    models_dir = tmp_path / "models"
    store = ModelStore(models_dir)
    changes: list[list[StoredModel]] = []
    task = asyncio.create_task(
        store.watch(changes.append, poll_interval_s=0.2, force_polling=force_polling)
    )
    try:
        await _wait_for(changes, lambda ms: ms == [])
        # A partial download is invisible, the finished rename appears.
        shutil.copy(tiny_chat_gguf, models_dir / "dropped.gguf.part")
        await asyncio.sleep(0.6)
        assert all(m == [] for m in changes)
        (models_dir / "dropped.gguf.part").rename(models_dir / "dropped.gguf")
        await _wait_for(changes, lambda ms: [m.id for m in ms] == ["dropped"])
        (models_dir / "dropped.gguf").unlink()
        await _wait_for(changes, lambda ms: ms == [])
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_a_stored_model_answers_to_its_id_file_name_and_install_ref() -> None:
    installed = StoredModel(
        path=Path("/models/gemma3-270m-q4_k_m.gguf"),
        id="gemma3:270m",
        task=Task.CHAT,
        context_length=None,
        size_bytes=1,
        ref="gemma3:270m-q4_k_m",
    )
    for name in ("gemma3:270m", "gemma3-270m-q4_k_m.gguf", "gemma3:270m-q4_k_m", " gemma3:270m "):
        assert installed.answers_to(name), name
    assert not installed.answers_to("gemma3")
    assert not installed.answers_to("")
    copied_in = StoredModel(
        path=Path("/models/mine.gguf"), id="mine", task=None, context_length=None, size_bytes=1
    )
    assert copied_in.answers_to("mine") and copied_in.answers_to("mine.gguf")
    assert not copied_in.answers_to("None")

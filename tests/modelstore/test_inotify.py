"""The Linux watcher of the models directory: real inotify on real directories."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from worker.modelstore import ModelStore, StoredModel
from worker.modelstore import store as store_module
from worker.modelstore.inotify import (
    IN_CREATE,
    IN_ISDIR,
    DirectoryWatch,
    InotifyUnavailable,
    parse_events,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


def test_parse_events_reads_names_padded_with_nuls() -> None:
    first = struct.pack("iIII", 1, IN_CREATE, 0, 16) + b"model.gguf".ljust(16, b"\0")
    second = struct.pack("iIII", 2, IN_CREATE | IN_ISDIR, 0, 0)
    events = parse_events(first + second)
    assert events == [(1, IN_CREATE, "model.gguf"), (2, IN_CREATE | IN_ISDIR, "")]


async def _next_change(changes: AsyncIterator[None], timeout: float = 10.0) -> None:
    await asyncio.wait_for(changes.__anext__(), timeout)


@linux_only
async def test_writes_new_folders_and_files_in_them_are_changes(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "existing").mkdir(parents=True)
    watch = DirectoryWatch(models)
    assert watch.subdirectories == {"existing"}
    changes = watch.changes(debounce_s=0.1)
    try:
        for i in range(20):
            (models / f"f{i}.part").write_bytes(b"x")
        await _next_change(changes)
        # a folder made after the watch started is watched too (the store looks one level down)
        (models / "org").mkdir()
        while "org" not in watch.subdirectories:
            await _next_change(changes)
        (models / "org" / "m.gguf").write_bytes(b"GGUF")
        await _next_change(changes)
        (models / "existing" / "n.gguf").write_bytes(b"GGUF")
        await _next_change(changes)
        # the directory itself going away ends the watch
        shutil.rmtree(models)
        with pytest.raises(StopAsyncIteration):
            while True:
                await _next_change(changes)
    finally:
        await changes.aclose()
        watch.close()


@linux_only
def test_a_missing_directory_cannot_be_watched(tmp_path: Path) -> None:
    with pytest.raises(InotifyUnavailable):
        DirectoryWatch(tmp_path / "absent")


@linux_only
def test_close_releases_the_descriptor(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    watch = DirectoryWatch(tmp_path)
    assert len(os.listdir("/proc/self/fd")) == before + 1
    watch.close()
    assert len(os.listdir("/proc/self/fd")) == before


async def test_the_store_polls_when_its_os_watcher_cannot_start(
    tmp_path: Path,
    tiny_chat_gguf: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts: list[Path] = []

    def refuse(root: Path) -> DirectoryWatch:
        attempts.append(root)
        raise InotifyUnavailable(28, "inotify_add_watch: No space left on device")

    monkeypatch.setattr(store_module, "USE_INOTIFY", True)
    monkeypatch.setattr(store_module, "DirectoryWatch", refuse)  # the watch limit, reached
    store = ModelStore(tmp_path / "models")
    changes: list[list[StoredModel]] = []
    task = asyncio.create_task(store.watch(changes.append, poll_interval_s=0.1))
    try:
        with caplog.at_level(logging.WARNING, logger="worker.modelstore.store"):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not changes:
                assert loop.time() < deadline, "no first scan"
                await asyncio.sleep(0.02)
            shutil.copy(tiny_chat_gguf, tmp_path / "models" / "tiny.gguf")
            while not changes or [m.id for m in changes[-1]] != ["tiny"]:
                assert loop.time() < deadline, f"the drop-in was not seen: {changes[-1:]}"
                await asyncio.sleep(0.02)
            while len(attempts) < 3:  # the OS watcher is retried after each poll
                assert loop.time() < deadline, "the OS watcher was not tried again"
                await asyncio.sleep(0.02)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]  # said once, not per retry
        assert "polling every" in warnings[0].getMessage()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@linux_only
async def test_a_folder_that_cannot_be_watched_ends_the_watch_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch limit reached when a new sub-directory appears: the watch cannot see the whole
    store any more, so it raises (the store then polls) instead of missing that folder."""
    watch = DirectoryWatch(tmp_path)
    real_add = watch._add

    def limited(path: Path) -> int:
        if path.name == "new":
            raise InotifyUnavailable(28, "inotify_add_watch: No space left on device")
        return real_add(path)

    monkeypatch.setattr(watch, "_add", limited)
    changes = watch.changes(debounce_s=0.05)
    try:
        (tmp_path / "new").mkdir()
        with pytest.raises(InotifyUnavailable):
            while True:
                await _next_change(changes)
    finally:
        await changes.aclose()
        watch.close()

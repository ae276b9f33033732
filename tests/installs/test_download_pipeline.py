"""The download's fast path end to end: real loopback server, real files, real threads and the
real kernel writeback; the sync call is only counted (then really made)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from install_rangeserver import RangeServer, make_blob

from worker.installs import download, writeback
from worker.installs.download import download_verified, partial_path

MiB = 1 << 20
SIZE = 20 * MiB + 777  # two whole writeback windows and a tail


@pytest.fixture
async def server() -> AsyncIterator[RangeServer]:
    srv = await RangeServer().start()
    yield srv
    await srv.stop()


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("blob") / "source.bin"
    return path, make_blob(path, SIZE, seed=7)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux-only")
async def test_writeback_runs_during_the_download(
    server: RangeServer, blob: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, sha = blob
    real = writeback._SYNC_RANGE
    assert real is not None
    calls: list[tuple[int, int, int]] = []

    def counted(fd: int, offset: int, length: int, flags: int) -> None:
        calls.append((offset, length, flags))
        real(fd, offset, length, flags)

    monkeypatch.setattr(writeback, "_SYNC_RANGE", counted)
    dest = tmp_path / "store" / "m.gguf"
    result = await download_verified(server.add("m.gguf", source), dest, sha256=sha, size=SIZE)
    assert result.sha256 == sha and dest.read_bytes() == source.read_bytes()
    window = writeback.WINDOW
    started = [(o, n) for o, n, f in calls if f == writeback.SYNC_FILE_RANGE_WRITE]
    waited = [(o, n) for o, n, f in calls if f != writeback.SYNC_FILE_RANGE_WRITE]
    assert started == [(i * window, window) for i in range(SIZE // window)]
    assert waited == started[:-1]  # each window but the last is waited for one window later


async def test_progress_is_monotonic_and_bounded(
    server: RangeServer, blob: tuple[Path, str], tmp_path: Path
) -> None:
    source, sha = blob
    seen: list[tuple[str, int]] = []
    started = time.monotonic()
    await download_verified(
        server.add("m.gguf", source),
        tmp_path / "m.gguf",
        sha256=sha,
        size=SIZE,
        progress=lambda phase, done, total: seen.append((phase, done)),
    )
    downloading = [done for phase, done in seen if phase == "downloading"]
    assert downloading == sorted(downloading) and downloading[-1] == SIZE
    took = time.monotonic() - started
    # The start, the end, and at most one per interval between: not one per network read.
    assert len(downloading) <= 2 + took / download.PROGRESS_INTERVAL_S + 1
    assert seen[-1] == ("verifying", SIZE)


async def test_cancel_mid_download_leaves_a_clean_prefix_that_resumes(
    server: RangeServer, blob: tuple[Path, str], tmp_path: Path
) -> None:
    source, sha = blob
    url = server.add("m.gguf", source, delay_per_chunk_s=0.01)  # 256 KiB per 10 ms
    dest = tmp_path / "store" / "m.gguf"
    progressed = asyncio.Event()

    def on_progress(phase: str, done: int, total: int | None) -> None:
        if done >= 4 * MiB:
            progressed.set()

    task = asyncio.create_task(
        download_verified(url, dest, sha256=sha, size=SIZE, progress=on_progress)
    )
    await asyncio.wait_for(progressed.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    partial = partial_path(dest).read_bytes()
    assert not dest.exists()
    assert 4 * MiB <= len(partial) < SIZE
    assert partial == source.read_bytes()[: len(partial)]  # no gap, no stray chunk
    server.files["m.gguf"].delay_per_chunk_s = 0.0
    result = await download_verified(url, dest, sha256=sha, size=SIZE)
    assert result.resumed_from == len(partial)
    assert dest.read_bytes() == source.read_bytes()

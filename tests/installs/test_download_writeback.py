"""Writeback pacing of a download: which windows go to the disk when, on real files."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from worker.installs import writeback
from worker.installs.writeback import (
    SYNC_FILE_RANGE_WAIT_AFTER,
    SYNC_FILE_RANGE_WAIT_BEFORE,
    SYNC_FILE_RANGE_WRITE,
    Writeback,
    windows_to_start,
)

MiB = 1 << 20
WAIT_WRITE_WAIT = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER


def test_only_whole_windows_are_started() -> None:
    assert windows_to_start(0, 0, 8) == []
    assert windows_to_start(0, 7, 8) == []
    assert windows_to_start(0, 8, 8) == [(0, 8)]
    assert windows_to_start(0, 25, 8) == [(0, 8), (8, 8), (16, 8)]
    # A resume starts counting at its offset, not at a multiple of the window.
    assert windows_to_start(5, 21, 8) == [(5, 8), (13, 8)]
    assert windows_to_start(21, 22, 8) == []
    with pytest.raises(ValueError):
        windows_to_start(0, 10, 0)


def appender(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def test_each_window_is_started_once_and_waited_for_one_window_later(tmp_path: Path) -> None:
    # The sync call is recorded (and then really made on Linux) to check the order of requests.
    calls: list[tuple[int, int, int]] = []
    real = writeback._SYNC_RANGE

    def record(fd: int, offset: int, length: int, flags: int) -> None:
        calls.append((offset, length, flags))
        if real is not None:
            real(fd, offset, length, flags)

    fd = appender(tmp_path / "f")
    try:
        pacer = Writeback(fd, 0, window=2 * MiB, sync_range=record)
        end = 0
        for _ in range(7):  # 7 MiB in 1 MiB writes: windows [0,2) [2,4) [4,6); 6-7 stays dirty
            end += os.write(fd, os.urandom(MiB))
            pacer.wrote(end)
    finally:
        os.close(fd)
    assert calls == [
        (0, 2 * MiB, SYNC_FILE_RANGE_WRITE),
        (2 * MiB, 2 * MiB, SYNC_FILE_RANGE_WRITE),
        (0, 2 * MiB, WAIT_WRITE_WAIT),
        (4 * MiB, 2 * MiB, SYNC_FILE_RANGE_WRITE),
        (2 * MiB, 2 * MiB, WAIT_WRITE_WAIT),
    ]
    assert (tmp_path / "f").stat().st_size == 7 * MiB


def test_a_resumed_file_is_paced_from_its_resume_offset(tmp_path: Path) -> None:
    calls: list[tuple[int, int, int]] = []
    path = tmp_path / "f"
    path.write_bytes(b"x" * 3000)
    fd = appender(path)
    try:
        pacer = Writeback(fd, 3000, window=MiB, sync_range=lambda *a: calls.append(a[1:]))
        os.write(fd, b"y" * MiB)
        pacer.wrote(3000 + MiB)
    finally:
        os.close(fd)
    assert calls == [(3000, MiB, SYNC_FILE_RANGE_WRITE)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux-only")
def test_the_real_sync_file_range_is_found_and_accepts_the_file(tmp_path: Path) -> None:
    assert writeback._SYNC_RANGE is not None
    data = os.urandom(3 * MiB)
    fd = appender(tmp_path / "f")
    try:
        pacer = Writeback(fd, 0, window=MiB)
        os.write(fd, data)
        pacer.wrote(len(data))
        assert pacer._enabled  # no error from the kernel: the pacing stays on
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux-only")
def test_a_kernel_error_turns_pacing_off() -> None:
    # sync_file_range on a pipe fails for real (ESPIPE): speed is lost, never an error raised.
    read_end, write_end = os.pipe()
    try:
        pacer = Writeback(write_end, 0, window=16)
        pacer.wrote(64)
        assert not pacer._enabled
        pacer.wrote(128)  # later calls are no-ops
    finally:
        os.close(read_end)
        os.close(write_end)


def test_without_sync_file_range_each_window_is_flushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The non-Linux fallback, run here for real with the real fdatasync (counted).
    flushed: list[int] = []
    real = getattr(os, "fdatasync", os.fsync)

    def counting(fd: int) -> None:
        flushed.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting, raising=False)
    fd = appender(tmp_path / "f")
    try:
        pacer = Writeback(fd, 0, window=MiB, sync_range=None)
        end = 0
        for _ in range(5):
            end += os.write(fd, b"a" * (MiB // 2))
            pacer.wrote(end)
    finally:
        os.close(fd)
    assert flushed == [fd, fd]  # 2.5 MiB written: two whole windows


def test_a_failing_flush_turns_pacing_off(tmp_path: Path) -> None:
    def unsupported(fd: int, offset: int, length: int, flags: int) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")  # as in some sandboxes

    pacer = Writeback(-1, 0, window=1, sync_range=unsupported)
    pacer.wrote(10)
    assert not pacer._enabled

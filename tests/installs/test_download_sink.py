"""ChunkSink: ordered writing and hashing on two threads, bounded, safe to stop at any point.

Real files and real threads throughout; only the write function is wrapped where a test needs a
write to fail (ENOSPC cannot be produced without root) or to be held back (to catch it in flight).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import threading
from pathlib import Path

import pytest

from worker.installs.download import _write_all
from worker.installs.sink import ChunkSink, WriteFailed

KiB = 1 << 10


def chunks(count: int, size: int = 64 * KiB) -> list[bytes]:
    return [os.urandom(size) for _ in range(count)]


def open_part(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


async def test_chunks_are_written_and_hashed_in_order(tmp_path: Path) -> None:
    path = tmp_path / "part"
    path.write_bytes(b"prefix")  # a resume: the sink appends after what is there
    data = chunks(40)
    hasher = hashlib.sha256(b"prefix")
    fd = open_part(path)
    async with ChunkSink(fd, 6, hasher, _write_all, depth=3) as sink:
        for chunk in data:
            await sink.put(chunk)
            assert sink.done <= 6 + sum(map(len, data))
        await sink.drain()
        assert sink.done == 6 + sum(map(len, data))
    assert not fd_is_open(fd)  # the sink owns the descriptor and closed it
    expected = b"prefix" + b"".join(data)
    assert path.read_bytes() == expected
    assert hasher.hexdigest() == hashlib.sha256(expected).hexdigest()


async def test_at_most_depth_chunks_are_in_flight(tmp_path: Path) -> None:
    gate = threading.Event()

    def held_write(fd: int, data: bytes) -> None:
        gate.wait(10)
        _write_all(fd, data)

    fd = open_part(tmp_path / "part")
    async with ChunkSink(fd, 0, hashlib.sha256(), held_write, depth=2) as sink:
        await sink.put(b"a" * KiB)
        await sink.put(b"b" * KiB)
        third = asyncio.create_task(sink.put(b"c" * KiB))
        await asyncio.sleep(0.2)
        assert not third.done()  # two in flight: the third waits (memory stays bounded)
        gate.set()
        await asyncio.wait_for(third, 10)
        await sink.drain()
        assert sink.done == 3 * KiB
    assert (tmp_path / "part").read_bytes() == b"a" * KiB + b"b" * KiB + b"c" * KiB


async def test_nothing_is_written_after_a_failed_write(tmp_path: Path) -> None:
    # ENOSPC injected on the 3rd write, as os.write raises it on a full disk.
    calls = 0

    def full_on_third(fd: int, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        _write_all(fd, data)

    data = chunks(8)
    fd = open_part(tmp_path / "part")
    with pytest.raises(WriteFailed) as caught:
        async with ChunkSink(fd, 0, hashlib.sha256(), full_on_third, depth=4) as sink:
            for chunk in data:
                await sink.put(chunk)
            await sink.drain()
    assert caught.value.error.errno == errno.ENOSPC
    assert sink.done == len(data[0]) + len(data[1])
    # A clean prefix for the resume: chunks queued after the failure never reached the file.
    assert (tmp_path / "part").read_bytes() == data[0] + data[1]
    assert calls == 3
    assert not fd_is_open(fd)


async def test_a_cancel_waits_for_the_write_in_progress_and_drops_the_queue(
    tmp_path: Path,
) -> None:
    started, gate = threading.Event(), threading.Event()
    writes_done: list[bytes] = []

    def slow_write(fd: int, data: bytes) -> None:
        started.set()
        gate.wait(10)
        _write_all(fd, data)  # would fail with EBADF if the fd had been closed meanwhile
        writes_done.append(data[:1])

    fd = open_part(tmp_path / "part")

    async def download() -> None:
        async with ChunkSink(fd, 0, hashlib.sha256(), slow_write, depth=2) as sink:
            await sink.put(b"1" * KiB)  # held in the writer thread
            await sink.put(b"2" * KiB)  # queued behind it
            await sink.put(b"3" * KiB)  # waits for the first: cancelled here

    task = asyncio.create_task(download())
    await asyncio.to_thread(started.wait, 10)
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.1)
    assert not task.done()  # the cancel waits for the write in progress (the lock is still held)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert writes_done == [b"1"]  # completed into a still-open file; the queued chunk dropped
    assert not fd_is_open(fd)
    assert (tmp_path / "part").read_bytes() == b"1" * KiB


async def test_depth_must_be_positive(tmp_path: Path) -> None:
    fd = open_part(tmp_path / "part")
    try:
        with pytest.raises(ValueError):
            ChunkSink(fd, 0, hashlib.sha256(), _write_all, depth=0)
    finally:
        os.close(fd)

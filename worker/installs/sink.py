"""Write and hash a stream of chunks off the event loop, in order, with bounded memory.

Receiving, writing and hashing each cost about the same CPU per byte at loopback speed, and each
releases the GIL (``recv``, ``os.write``, OpenSSL's SHA-256 on large buffers). So they run on
three threads: the event loop receives, one thread writes (and drives the disk writeback, see
writeback.py), another hashes. One thread per job keeps each job's order without any locking, and
both read the same immutable ``bytes`` chunk, so nothing is copied for the split.

At most ``depth`` chunks are in flight: the loop waits for the oldest before handing over more,
which bounds memory to ``depth`` chunks and lets TCP flow control slow the sender down when the
disk is the bottleneck. A failed write stops all later writes (they must not land after a gap in
the file); the error surfaces from :meth:`ChunkSink.put` or :meth:`ChunkSink.drain` as
:class:`WriteFailed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from worker.installs.writeback import Writeback

DEPTH = 4

WriteAll = Callable[[int, bytes], None]


class ChunkSink:
    """Append chunks to ``fd`` (positioned at ``offset``) and feed them to ``hasher``.

    ``done`` counts the bytes that are both written and hashed: that is what may be reported as
    progress. The sink owns ``fd`` and closes it: use it as an async context manager.
    """

    def __init__(
        self,
        fd: int,
        offset: int,
        hasher: Any,
        write_all: WriteAll,
        *,
        depth: int = DEPTH,
        writeback: Writeback | None = None,
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.done = offset
        self._fd = fd
        self._end = offset  # where the writer thread has got to (touched by that thread only)
        self._hasher = hasher
        self._write_all = write_all
        self._depth = depth
        self._writeback = writeback if writeback is not None else Writeback(fd, offset)
        self._failed: BaseException | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="pendra-dl-write")
        self._hashing = ThreadPoolExecutor(1, thread_name_prefix="pendra-dl-hash")
        self._in_flight: deque[tuple[Future[None], Future[None], int]] = deque()

    async def __aenter__(self) -> ChunkSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _store(self, chunk: bytes) -> None:
        # Runs on the writer thread, one chunk at a time, in order.
        if self._failed is not None:
            raise self._failed  # never write after a failed write: it would leave a gap
        try:
            self._write_all(self._fd, chunk)
        except BaseException as exc:
            self._failed = exc
            raise
        self._end += len(chunk)
        self._writeback.wrote(self._end)

    async def put(self, chunk: bytes) -> None:
        """Hand ``chunk`` over; waits first while ``depth`` chunks are already in flight."""
        while len(self._in_flight) >= self._depth:
            await self._settle_oldest()
        self._in_flight.append(
            (
                self._writer.submit(self._store, chunk),
                self._hashing.submit(self._hasher.update, chunk),
                len(chunk),
            )
        )

    async def drain(self) -> None:
        """Wait until every chunk handed over is written and hashed."""
        while self._in_flight:
            await self._settle_oldest()

    async def _settle_oldest(self) -> None:
        written, hashed, length = self._in_flight[0]
        try:
            await asyncio.wrap_future(written)
            await asyncio.wrap_future(hashed)
        except OSError as exc:
            # Wrapped: the caller must tell a full disk from a network error, and aiohttp's
            # connection errors and timeouts are OSErrors too.
            raise WriteFailed(exc) from None
        self._in_flight.popleft()
        self.done += length

    async def aclose(self) -> None:
        """Close the file and let the threads go; after an error or a cancellation, chunks not
        yet written are dropped (the partial stays a clean prefix for the resume).

        The close runs on the writer thread after everything it holds, so the descriptor can
        never be closed (and its number reused) under a write still in progress, even when this
        wait is cancelled: the thread then closes it on its own a moment later."""
        if self._in_flight:
            self._failed = self._failed or _Aborted()
        self._in_flight.clear()
        closed = self._writer.submit(os.close, self._fd)
        self._writer.shutdown(wait=False)
        self._hashing.shutdown(wait=False)
        with contextlib.suppress(OSError):
            await asyncio.shield(asyncio.wrap_future(closed))


class WriteFailed(Exception):
    """Writing the file failed with :attr:`error` (ENOSPC, EDQUOT, EIO...)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _Aborted(Exception):
    """Set as the failure when the download stops early: queued writes are skipped."""

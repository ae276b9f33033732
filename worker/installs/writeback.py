"""Write a large file to disk while it is still being written, so the final fsync is short.

A download that only fsyncs at the end leaves the whole file dirty in the page cache: the fsync
then writes all of it (about 70 ms for 256 MiB on a fast NVMe disk, seconds for a 20 GB model on a
slower one) while the install looks finished, and gigabytes of dirty pages meanwhile push the
kernel into throttling every writer on the machine. Instead, the writer thread starts the
writeback of each finished window as soon as it is written and, one window later, waits for it,
so the disk works in parallel with the network, at most two windows are ever dirty, and the final
fsync finds little left to do. The fsync at the end is still what makes the file durable (it also
flushes metadata and the disk's cache, which ``sync_file_range`` does not).

On Linux this is ``sync_file_range(2)``, through libc (Python's ``os`` has no binding). Elsewhere
a periodic ``fdatasync`` bounds the dirty data instead. Either way a failure here only costs
speed, never correctness: errors stop the pacing and the final fsync reports anything real.

The written pages are deliberately left in the page cache (no ``posix_fadvise(DONTNEED)``): they
are clean, so the kernel reclaims them as cheaply as free memory, the model is usually loaded right
after its install and then comes from memory, and dropping them measured 10-15 % slower on
loopback (bench/bench_install.py) for the extra page freeing in the writer thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW = 8 << 20
"""Bytes per writeback window: big enough that the syscalls cost nothing, small enough that the
dirty data stays in the tens of MiB."""

SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4

SyncRange = Callable[[int, int, int, int], None]


def windows_to_start(started: int, written: int, window: int) -> list[tuple[int, int]]:
    """The whole windows ``(offset, length)`` between ``started`` and ``written`` (pure).

    ``started`` is where writeback has been started up to; a partial window at the end waits until
    it is full (or for the final fsync), so every window is handed to the disk exactly once.
    """
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    spans = []
    while written - started >= window:
        spans.append((started, window))
        started += window
    return spans


def _libc_sync_file_range() -> SyncRange | None:
    """``sync_file_range`` from libc, or None where it does not exist (not Linux, no libc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int

    def sync_range(fd: int, offset: int, length: int, flags: int) -> None:
        # ctypes releases the GIL for the call, so waiting on the disk does not stall the loop.
        if func(fd, offset, length, flags) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return sync_range


_SYNC_RANGE: SyncRange | None = _libc_sync_file_range()


@dataclass
class Writeback:
    """Drive the writeback of one file descriptor as bytes are appended to it.

    Call :meth:`wrote` from the thread that writes, after each write, with the file offset the
    data now reaches. Not thread-safe by itself: the download has one writer at a time.
    """

    fd: int
    start: int
    """File offset of the first byte this writer appends (the resume point)."""
    window: int = WINDOW
    sync_range: SyncRange | None = field(default_factory=lambda: _SYNC_RANGE)
    _started: int = field(init=False)
    _previous: tuple[int, int] | None = field(init=False, default=None)
    _enabled: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        self._started = self.start

    def wrote(self, end: int) -> None:
        if not self._enabled:
            return
        for offset, length in windows_to_start(self._started, end, self.window):
            try:
                self._push(offset, length)
            except OSError:
                # ENOSYS in a sandbox, EINVAL on an odd filesystem: stop trying, lose only speed.
                self._enabled = False
                return
            self._started = offset + length

    def _push(self, offset: int, length: int) -> None:
        if self.sync_range is None:
            # No async writeback here: flushing each window keeps the dirty data bounded.
            fdatasync = getattr(os, "fdatasync", os.fsync)
            fdatasync(self.fd)
            return
        self.sync_range(self.fd, offset, length, SYNC_FILE_RANGE_WRITE)
        if self._previous is not None:
            # The window before has had a whole window's time to reach the disk: wait for it
            # (usually done already), so at most two windows are ever dirty.
            prev_offset, prev_length = self._previous
            self.sync_range(
                self.fd,
                prev_offset,
                prev_length,
                SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER,
            )
        self._previous = (offset, length)

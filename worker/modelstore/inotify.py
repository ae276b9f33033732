"""Linux inotify on the models directory, read on the event loop: no thread, no extra module.

The modelstore needs one thing from a file watcher: "something in the directory (or one of its
first-level sub-directories, where the store also looks) changed; scan again". inotify gives that
with one file descriptor the event loop reads directly, so an idle worker keeps neither a watcher
thread nor a native watcher library in memory. Other systems (and a Linux whose inotify cannot be
used: watch limits, exotic filesystems) use the store's other watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)

WATCHED = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
"""What changes a scan's answer: files created, written, renamed, deleted or re-permissioned, and
the watched directory itself going away."""

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (the name follows, NUL-padded)


class InotifyUnavailable(OSError):
    """inotify cannot be used here; the caller picks another way to follow the directory."""


def parse_events(buffer: bytes) -> list[tuple[int, int, str]]:
    """``(watch descriptor, mask, name)`` of each ``struct inotify_event`` in ``buffer``."""
    events = []
    offset = 0
    while offset + _HEADER.size <= len(buffer):
        wd, mask, _cookie, length = _HEADER.unpack_from(buffer, offset)
        start = offset + _HEADER.size
        raw = buffer[start : start + length].split(b"\0", 1)[0]
        events.append((wd, mask, os.fsdecode(raw)))
        offset = start + length
    return events


class DirectoryWatch:
    """inotify on ``root`` and its first-level sub-directories (added as they appear)."""

    def __init__(self, root: Path) -> None:
        if not sys.platform.startswith("linux"):
            raise InotifyUnavailable(errno.ENOSYS, "inotify is Linux's")
        self.root = root
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise InotifyUnavailable(code, f"inotify_init1: {os.strerror(code)}")
        self._fd: int | None = fd
        self._root_wd = -1
        self._subdirs: dict[int, str] = {}
        try:
            self._root_wd = self._add(root)
            with os.scandir(root) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=True):
                        self._add_subdir(entry.name)
        except BaseException:
            self.close()
            raise
        self._ready = asyncio.Event()
        self._gone = False
        self._failure: InotifyUnavailable | None = None

    @property
    def subdirectories(self) -> set[str]:
        """The first-level sub-directories watched now."""
        return set(self._subdirs.values())

    def _add(self, path: Path) -> int:
        assert self._fd is not None
        wd = int(self._libc.inotify_add_watch(self._fd, os.fsencode(path), WATCHED))
        if wd < 0:
            code = ctypes.get_errno()
            raise InotifyUnavailable(code, f"inotify_add_watch {path}: {os.strerror(code)}")
        return wd

    def _add_subdir(self, name: str) -> None:
        try:
            self._subdirs[self._add(self.root / name)] = name
        except InotifyUnavailable as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                raise  # a watch limit: the caller falls back rather than miss a folder
            # gone again already, or not ours to read: the scan skips it the same way

    def _readable(self) -> None:
        assert self._fd is not None
        while True:
            try:
                buffer = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                break
            if not buffer:
                break
            for wd, mask, name in parse_events(buffer):
                if wd == self._root_wd and mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                    self._gone = True
                elif wd == self._root_wd and mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                    try:
                        self._add_subdir(name)
                    except InotifyUnavailable as exc:  # the watch limit: this watch cannot
                        self._failure = exc  # see all the store any more; changes() says so
                elif mask & IN_IGNORED:
                    self._subdirs.pop(wd, None)
        self._ready.set()

    async def changes(self, debounce_s: float) -> AsyncIterator[None]:
        """Yield once per burst of changes (quiet for ``debounce_s``, or at most every
        ``4 × debounce_s`` while writes go on); ends when the directory itself goes away, and
        raises :class:`InotifyUnavailable` when a new sub-directory could not be watched."""
        loop = asyncio.get_running_loop()
        assert self._fd is not None
        loop.add_reader(self._fd, self._readable)
        try:
            while not self._gone:
                await self._ready.wait()
                burst_ends = loop.time() + 4 * debounce_s
                while not self._gone:
                    self._ready.clear()
                    quiet = min(debounce_s, burst_ends - loop.time())
                    if quiet <= 0:
                        break
                    try:
                        await asyncio.wait_for(self._ready.wait(), quiet)
                    except asyncio.TimeoutError:  # TimeoutError itself from 3.11 on
                        break
                self._ready.clear()
                yield None
                if self._failure is not None:
                    raise self._failure
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

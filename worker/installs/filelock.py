"""A non-blocking, process-wide exclusive lock on a file (``flock``), so the running worker and a
direct ``pendra models install`` never write the same partial download at once. The kernel drops
the lock when its holder dies, even by ``kill -9``, so a stale lock file never blocks a resume.

The holder removes the lock file when it is done (no litter in the modelstore). That is safe
because a taker checks, after locking, that the file it locked is still the one at the path; if
the holder removed it meanwhile, the taker starts over with the new file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; the worker is the only writer there
    fcntl = None  # type: ignore[assignment]


class FileLock:
    """``with FileLock(path) as lock: if lock.acquired: ...``"""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.acquired = False
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is None:
                self._fd, self.acquired = fd, True
                return self
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return self
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd, self.acquired = fd, True
                return self
            os.close(fd)  # the previous holder removed it while we waited: retry on the new one
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            if self.acquired:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            os.close(self._fd)
            self._fd = None

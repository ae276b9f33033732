"""The admin socket's place on disk: a private run directory, one worker per PENDRA_HOME, and stale
sockets from crashed workers replaced.

One-worker-per-home is decided by an exclusive ``flock`` on ``run/worker.lock`` held for the
worker's lifetime, not by looking at the socket: the kernel drops the lock when the process dies
however it dies, so a crash never leaves a home locked, and two workers starting at the same moment
cannot both win. Whoever holds the lock owns ``admin.sock``; a socket file already there is a
leftover and is replaced.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from pathlib import Path

from worker.admin.errors import AdminSocketError, WorkerAlreadyRunning

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no Unix-socket admin API
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "worker.lock"
# sun_path is 108 bytes on Linux (104 on macOS) including the terminating NUL.
MAX_SOCKET_PATH = 103


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run directory 0700 and owned by us; refuse one another user owns."""
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = run_dir.stat()
    if info.st_uid != os.geteuid():
        raise AdminSocketError(
            f"{run_dir} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}).",
            hint="run the worker as the user that owns PENDRA_HOME, or use another PENDRA_HOME",
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(run_dir, 0o700)


class InstanceLock:
    """Held while a worker runs on this PENDRA_HOME; records the holder's pid for messages."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise AdminSocketError(f"cannot lock {self.path}: {exc.strerror}") from None
            who = f" (pid {holder})" if holder else ""
            raise WorkerAlreadyRunning(
                f"Another Pendra worker{who} is already running for {self.path.parent.parent}.",
                hint="use it (`pendra status`, `pendra attach`), stop it first, or set a different "
                "PENDRA_HOME for a second worker",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing drops the flock; the file stays (unlinking a lock file races)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def socket_answers(path: Path, timeout_s: float = 1.0) -> bool:
    """Whether something is listening on the Unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout_s)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


def clear_stale_socket(path: Path) -> None:
    """Remove a leftover socket file; refuse anything that is not a socket, or a live socket."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise AdminSocketError(
            f"{path} exists and is not a socket.",
            hint="move that file away; the worker creates its admin socket there",
        )
    if socket_answers(path):
        raise WorkerAlreadyRunning(
            f"A Pendra worker is already answering on {path}.",
            hint="use it (`pendra status`), or stop it before starting another",
        )
    path.unlink()


def bind_private_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 before it accepts any connection."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise AdminSocketError(
            f"The admin socket path {path} is {len(os.fsencode(path))} bytes; Unix sockets allow "
            f"at most {MAX_SOCKET_PATH}.",
            hint="set PENDRA_HOME to a shorter path",
        )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise AdminSocketError(f"cannot create the admin socket {path}: {exc.strerror}") from None
    return sock

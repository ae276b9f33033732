"""A private Docker daemon for one test session.

The tests never touch a system Docker daemon: they start their own ``dockerd`` with its socket,
data, exec root and pid file in a temporary directory, point ``DOCKER_HOST`` at it, and stop it by
its pid at the end. It runs with no bridge and no iptables rules (``--bridge=none
--iptables=false``): test containers use the host's network (``--network host``) and stay on
loopback, and the host's firewall is left as it was. Debian's ``docker.io`` and ``debootstrap``
are installed with apt when missing and possible (root); otherwise the tests skip, saying why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Debian bookworm's docker-compose is Compose v1 (1.29): the tests check and run the compose.yaml
# `pendra stack compose` writes with it, or with Compose v2 (`docker compose`) where that exists.
PACKAGES = {
    "docker.io": "dockerd",
    "debootstrap": "debootstrap",
    "docker-compose": "docker-compose",
}
SBIN_PATHS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
START_TIMEOUT_S = 90.0
# The daemon's data (a gigabyte or two of image layers) lives on a tmpfs: builds write faster and
# the end of a session is one unmount instead of minutes deleting small files. Only the pages in
# use take memory; the limit guards the machine.
DATA_TMPFS_SIZE = "8g"


def _which(binary: str) -> str | None:
    found = shutil.which(binary)
    if found:
        return found
    for directory in SBIN_PATHS:
        candidate = Path(directory) / binary
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _apt_install(packages: list[str]) -> tuple[bool, str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    for attempt in range(2):
        if attempt:
            subprocess.run(
                ["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300, check=False
            )
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode == 0:
            return True, ""
    return False, (result.stderr or result.stdout).strip()[-400:]


def prerequisites() -> str | None:
    """None when dockerd and debootstrap are (now) here; else why the Docker tests must skip."""
    if sys.platform != "linux":
        return "the Docker tests need Linux"
    if os.environ.get("PENDRA_SKIP_DOCKER_TESTS", "").strip() in {"1", "true", "yes"}:
        return "PENDRA_SKIP_DOCKER_TESTS is set"
    if os.geteuid() != 0:
        return "the Docker tests start their own dockerd, which needs root"
    missing = [package for package, binary in PACKAGES.items() if _which(binary) is None]
    if not missing:
        return None
    if _which("apt-get") is None:
        return f"{', '.join(missing)} missing and no apt-get to install them"
    ok, reason = _apt_install(missing)
    if not ok:
        return f"could not install {', '.join(missing)} with apt-get: {reason}"
    still = [package for package, binary in PACKAGES.items() if _which(binary) is None]
    return f"{', '.join(still)} still missing after apt-get install" if still else None


def binary(name: str) -> str:
    found = _which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed")
    return found


ROOT_PREFIX = "pendra-dockerd-"
OWNER_FILE = "owner.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale_daemons() -> list[Path]:
    """Stop private daemons whose test session died without stopping them (killed pytest): each
    records its session's pid, and only daemons of dead sessions are touched."""
    reaped = []
    for root in Path("/tmp").glob(f"{ROOT_PREFIX}*"):
        try:
            owner = int((root / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        daemon = PrivateDaemon(root)
        try:
            pid = int((root / "docker.pid").read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid is not None and _alive(pid) and b"dockerd" in _cmdline(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        daemon.stop()
        reaped.append(root)
    return reaped


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class PrivateDaemon:
    """``dockerd`` with everything under one temporary directory."""

    def __init__(self, root: Path | None = None) -> None:
        # Short: the Unix socket path (and containerd's under exec/) must fit in 108 bytes.
        self.root = root or Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.log_path = self.root / "dockerd.log"
        self.pidfile = self.root / "docker.pid"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def _mount_data_tmpfs(self) -> None:
        data = self.root / "data"
        data.mkdir(mode=0o700)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DATA_TMPFS_SIZE},mode=0700", "tmpfs", str(data)],
            capture_output=True,
            timeout=30,
            check=False,  # without it the layers go to disk, only slower
        )

    def start(self) -> None:
        import docker

        self._mount_data_tmpfs()
        argv = [
            binary("dockerd"),
            "--host",
            self.host,
            "--data-root",
            str(self.root / "data"),
            "--exec-root",
            str(self.root / "exec"),
            "--pidfile",
            str(self.pidfile),
            "--bridge=none",
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--storage-driver=overlay2",
        ]
        path = os.environ.get("PATH", "") + ":" + ":".join(SBIN_PATHS)
        (self.root / OWNER_FILE).write_text(f"{os.getpid()}\n")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "PATH": path},
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.socket.exists():
                with contextlib.suppress(docker.errors.DockerException):
                    docker.DockerClient(base_url=self.host, timeout=10).ping()
                    return
            time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"the private dockerd did not start:\n{tail}")

    def client(self) -> object:
        import docker

        return docker.DockerClient(base_url=self.host, timeout=300)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop dockerd by its pid (it stops its containers and its containerd), unmount what it
        left mounted under the temporary directory, and remove it."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        self._unmount_leftovers()
        # rm is several times faster than shutil.rmtree on the daemon's many small layer files.
        subprocess.run(
            ["rm", "-rf", "--one-file-system", str(self.root)],
            capture_output=True,
            timeout=600,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)

    def _unmount_leftovers(self) -> None:
        try:
            lines = Path("/proc/self/mountinfo").read_text().splitlines()
        except OSError:
            return
        prefix = str(self.root) + "/"
        points = [line.split()[4] for line in lines if len(line.split()) > 4]
        for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30, check=False)

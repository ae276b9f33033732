"""Host-side processes of the Docker tests: ``pendra`` commands, ``pendra sandbox``, emulators."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

SANDBOX_API_KEY = "sk-docker-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pendra(
    args: list[str], env: dict[str, str], timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    """``pendra ARGS`` as a user runs it, from this installation."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def spawn_until(
    argv: list[str], env: dict[str, str], marker: str, log: Path, timeout_s: float = 30
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output in ``log`` and wait until ``marker`` appears there."""
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            argv, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    deadline = time.monotonic() + timeout_s
    while marker not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise AssertionError(f"{argv[1:4]} did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    return proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def start_sandbox(
    env: dict[str, str], key_out: Path, log: Path
) -> tuple[str, subprocess.Popen[bytes]]:
    """``pendra sandbox`` on 127.0.0.1; ``key_out`` receives a worker key it accepts."""
    port = free_port()
    argv = [sys.executable, "-m", "worker", "sandbox", "--port", str(port)]
    argv += ["--api-key", SANDBOX_API_KEY, "--key-out", str(key_out)]
    proc = spawn_until(argv, env, "Pendra sandbox ready", log)
    return f"http://127.0.0.1:{port}", proc

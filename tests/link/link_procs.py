"""Running ``pendra sandbox`` and ``pendra --no-ui`` as real processes for the link tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from worker.settings import BACKEND_KINDS

API_KEY = "sk-test-proc"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        return self.popen.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)


def spawn(args: list[str], env: dict[str, str], logs: Path, name: str) -> Proc:
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    popen = subprocess.Popen(
        [sys.executable, "-m", "worker", *args],
        env=env,
        stdout=out.open("wb"),
        stderr=err.open("wb"),
        stdin=subprocess.DEVNULL,
    )
    return Proc(popen, out, err)


def start_sandbox_proc(
    env: dict[str, str], logs: Path, port: int, key_out: Path, *extra: str
) -> Proc:
    proc = spawn(
        ["sandbox", "--port", str(port), "--api-key", API_KEY, "--key-out", str(key_out), *extra],
        env,
        logs,
        f"sandbox-{time.monotonic_ns()}",
    )
    deadline = time.monotonic() + 30
    while "Pendra sandbox ready" not in proc.out.read_text(errors="replace"):
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"sandbox did not start:\n{proc.output()}")
        time.sleep(0.05)
    return proc


def worker_env(
    base: dict[str, str], api_url: str, key_file: Path, models_dir: Path
) -> dict[str, str]:
    env = dict(base)
    env.update(
        {
            "PENDRA_API_URL": api_url,
            "PENDRA_WORKER_KEY_FILE": str(key_file),
            "PENDRA_MODELS_DIR": str(models_dir),
            "PENDRA_HEARTBEAT_INTERVAL": "1",
            "PENDRA_DRAIN_TIMEOUT": "60",
            "PENDRA_THREADS": "1",
            **{f"{kind.upper()}_ENDPOINT": "off" for kind in BACKEND_KINDS},
        }
    )
    return env


def wait_for_models(api_url: str, wanted: set[str], proc: Proc, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    seen: set[str] = set()
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise AssertionError(f"worker exited ({proc.popen.returncode}):\n{proc.output()}")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(
                api_url + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5
            )
            seen = {m["id"] for m in r.json()["data"]}
            if wanted <= seen:
                return
        time.sleep(0.1)
    raise AssertionError(f"models {wanted} not served (saw {seen}):\n{proc.output()}")


def stop(proc: Proc, timeout_s: float = 30) -> int:
    if proc.popen.poll() is None:
        proc.signal(signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def cmdline(pid: int) -> str:
    path = Path(f"/proc/{pid}/cmdline")
    return path.read_bytes().replace(b"\0", b" ").decode() if path.exists() else ""


def environ_has(pid: int, text: str) -> bool:
    with contextlib.suppress(OSError):
        return text.encode() in Path(f"/proc/{pid}/environ").read_bytes()
    return False


@dataclass
class ProcessStack:
    """A ``pendra sandbox`` process and a ``pendra --no-ui`` worker process linked to it."""

    url: str
    """The sandbox: its OpenAI ingress, its catalogue, the worker's control plane."""
    env: dict[str, str]
    """The worker's environment; a ``pendra`` CLI run with it talks to this worker."""
    sandbox: Proc
    worker: Proc

    def close(self) -> None:
        """Stop the worker as an operator would (SIGTERM: it drains and exits), then the
        sandbox; SIGKILL for whichever hangs."""
        try:
            stop(self.worker)
        finally:
            self.worker.kill()
            self.sandbox.kill()


def start_process_stack(
    env: dict[str, str], tmp_path: Path, models: dict[str, Path], *sandbox_args: str
) -> ProcessStack:
    """Start the sandbox (with ``sandbox_args``) and a worker serving ``models`` (served id →
    GGUF, linked into its models directory); returns once the sandbox routes every model."""
    logs = tmp_path / "logs"
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    for model_id, gguf in models.items():
        (models_dir / f"{model_id}.gguf").symlink_to(gguf)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    key_file = tmp_path / "sandbox-worker.key"
    sandbox = start_sandbox_proc(env, logs, port, key_file, *sandbox_args)
    worker_environ = worker_env(env, url, key_file, models_dir)
    worker = spawn(["--no-ui"], worker_environ, logs, "worker")
    stack = ProcessStack(url, worker_environ, sandbox, worker)
    try:
        wait_for_models(url, set(models), worker)
    except BaseException:
        stack.close()
        raise
    return stack


__all__ = ["API_KEY", "os"]


def stop_detached_worker(home: Path) -> None:
    """SIGTERM the process group of the worker the app started detached (its pid is in the
    home's lock file; it drains and exits), SIGKILL if it hangs."""
    lock = home / "run" / "worker.lock"
    with contextlib.suppress(OSError, ValueError):
        pid = int(lock.read_text().split()[0])
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)

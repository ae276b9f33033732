"""A real control-plane + worker pair for the benches: ``pendra sandbox`` and ``pendra --no-ui``.

Both run as their own processes from this checkout (``python -m worker``), with a private
PENDRA_HOME, on 127.0.0.1 only. Every external backend kind is ``off`` unless the bench passes its
endpoint, so discovery never probes the developer's own Ollama & co.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from worker.settings import BACKEND_KINDS

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk-bench"
START_TIMEOUT_S = 60.0


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
        text = self.out.read_text(errors="replace") + self.err.read_text(errors="replace")
        return text[-4000:]

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (the worker drains and exits 0), then SIGKILL if it hangs."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode


def _clean_env(home: Path) -> dict[str, str]:
    leaky = {
        "PENDRA_MODELS_DIR",
        "PENDRA_API_URL",
        "PENDRA_WORKER_KEY",
        "PENDRA_WORKER_KEY_FILE",
        "APP_SERVER_WS_URL",
        "GPU_WORKER_PRIVATE_KEY",
        "WORKER_ID",
        "WORKER_NAME",
        "MODELS",
        "MAX_CONCURRENT",
        "OPENAI_API_KEY",
    }
    env = {k: v for k, v in os.environ.items() if k not in leaky and not k.endswith("_ENDPOINT")}
    env["PENDRA_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class Stack:
    """Sandbox + worker processes; use :func:`start_stack` and :meth:`close`."""

    home: Path
    url: str
    sandbox: Proc
    worker: Proc
    keep_home: bool = False
    _cleanup: list[Path] = field(default_factory=list)

    @property
    def api(self) -> str:
        return self.url + "/v1"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    def wait_for_models(self, wanted: set[str], timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        seen: set[str] = set()
        while time.monotonic() < deadline:
            for proc in (self.sandbox, self.worker):
                if proc.popen.poll() is not None:
                    raise RuntimeError(f"a bench process exited early:\n{proc.output()}")
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                r = httpx.get(self.api + "/models", headers=self.headers(), timeout=5)
                seen = {m["id"] for m in r.json()["data"]}
                if wanted <= seen:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"models {wanted} not served (saw {seen}):\n{self.worker.output()}")

    def wait_for_worker(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until the sandbox lists one connected worker (used when no model is served)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.worker.popen.poll() is not None:
                raise RuntimeError(f"the worker exited early:\n{self.worker.output()}")
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                r = httpx.get(self.url + "/api/v1/workers", timeout=5)
                if r.json()["workers"]:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the worker did not connect:\n{self.worker.output()}")

    def close(self) -> None:
        self.worker.stop()
        self.sandbox.stop()
        if not self.keep_home:
            shutil.rmtree(self.home, ignore_errors=True)


def _spawn(args: list[str], env: dict[str, str], logs: Path, name: str) -> Proc:
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    popen = subprocess.Popen(
        [sys.executable, *args],
        env=env,
        cwd=ROOT,
        stdout=out.open("wb"),
        stderr=err.open("wb"),
        stdin=subprocess.DEVNULL,
    )
    return Proc(popen, out, err)


def _exit_on_sigterm() -> None:
    """A SIGTERM to the bench (a timeout, ``kill``) unwinds it like an error, so its ``finally``
    blocks stop the processes it started instead of leaving them running."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        with contextlib.suppress(ValueError):  # only the main thread may set a handler
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def start_stack(
    *,
    models: dict[str, Path] | None = None,
    endpoints: dict[str, str] | None = None,
    worker_env: dict[str, str] | None = None,
    builtin: bool = True,
    profile_dir: Path | None = None,
    trace_dir: Path | None = None,
) -> Stack:
    """Start the sandbox, then a worker serving ``models`` (id -> GGUF, linked into a fresh
    models dir) and the external backends in ``endpoints`` (kind -> URL). ``profile_dir`` runs
    both processes under cProfile; each writes ``sandbox.prof`` / ``worker.prof`` there when it
    exits on SIGTERM. ``trace_dir`` runs both under :mod:`bench.hop_trace` instead; each writes
    ``sandbox.trace`` / ``worker.trace`` there when it exits."""
    _exit_on_sigterm()
    home = Path(tempfile.mkdtemp(prefix="pendra-bench-"))
    logs = home / "bench-logs"
    logs.mkdir()
    models_dir = home / "models"
    models_dir.mkdir()
    for model_id, path in (models or {}).items():
        (models_dir / f"{model_id}.gguf").symlink_to(path.resolve())
    env = _clean_env(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    key_file = home / "sandbox-worker.key"
    sandbox = _spawn(
        [
            *_profiled(profile_dir, "sandbox"),
            *_pendra(trace_dir, "sandbox"),
            "sandbox",
            "--port",
            str(port),
            "--api-key",
            API_KEY,
            "--key-out",
            str(key_file),
        ],
        env,
        logs,
        "sandbox",
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while "Pendra sandbox ready" not in sandbox.out.read_text(errors="replace"):
        if sandbox.popen.poll() is not None or time.monotonic() > deadline:
            sandbox.stop()
            raise RuntimeError(f"the sandbox did not start:\n{sandbox.output()}")
        time.sleep(0.05)
    wenv = dict(env)
    wenv.update(
        {
            "PENDRA_API_URL": url,
            "PENDRA_WORKER_KEY_FILE": str(key_file),
            "PENDRA_MODELS_DIR": str(models_dir),
            "PENDRA_BUILTIN": "true" if builtin else "false",
            "PENDRA_LOG_LEVEL": "warning",
            **{f"{kind.upper()}_ENDPOINT": "off" for kind in BACKEND_KINDS},
        }
    )
    for kind, endpoint in (endpoints or {}).items():
        wenv[f"{kind.upper()}_ENDPOINT"] = endpoint
    wenv.update(worker_env or {})
    worker = _spawn(
        [*_profiled(profile_dir, "worker"), *_pendra(trace_dir, "worker"), "--no-ui"],
        wenv,
        logs,
        "worker",
    )
    return Stack(home=home, url=url, sandbox=sandbox, worker=worker)


def _pendra(trace_dir: Path | None, name: str) -> list[str]:
    """How to start ``pendra``: plainly, or under the hop-timing probes."""
    if trace_dir is None:
        return ["-m", "worker"]
    trace_dir.mkdir(parents=True, exist_ok=True)
    return ["-m", "bench.hop_trace", str(trace_dir / f"{name}.trace"), "--"]


def _profiled(profile_dir: Path | None, name: str) -> list[str]:
    if profile_dir is None:
        return []
    profile_dir.mkdir(parents=True, exist_ok=True)
    return ["-m", "cProfile", "-o", str(profile_dir / f"{name}.prof")]

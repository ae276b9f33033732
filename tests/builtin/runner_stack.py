"""The assembled product for the built-in backend's process tests.

A real ``pendra sandbox`` and a real ``pendra --no-ui`` worker as child processes, a models
directory the test fills, the official ``openai`` client against the sandbox's ingress (no
retries: a test sees every error), the status document through the worker's admin socket (what
``pendra status --json`` reads) and the CLI itself where a test wants the command a user types.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

from tests.link.link_procs import (
    API_KEY,
    Proc,
    free_port,
    spawn,
    start_sandbox_proc,
    wait_for_models,
    worker_env,
)
from worker.admin.client import AdminClient


@dataclass
class RunnerStack:
    sandbox: Proc
    worker: Proc
    env: dict[str, str]
    api_url: str
    models_dir: Path
    home: Path
    client: OpenAI = field(init=False)

    def __post_init__(self) -> None:
        self.client = OpenAI(base_url=f"{self.api_url}/v1", api_key=API_KEY, max_retries=0,
                             timeout=120)  # fmt: skip

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        socket_path = self.home / "run" / "admin.sock"
        return asyncio.run(AdminClient(socket_path).status())

    def loaded(self) -> dict[str, dict[str, Any]]:
        """The built-in backend's ``loaded`` entries by model id."""
        pendra = next(b for b in self.status()["backends"] if b["name"] == "pendra")
        return {entry["id"]: entry for entry in pendra["loaded"]}

    def wait_for(self, condition: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
        """Poll until ``condition()`` is truthy (the timeout is a failure guard only)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.assert_worker_alive()
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def assert_worker_alive(self) -> None:
        code = self.worker.popen.poll()
        assert code is None, f"the worker exited ({code}):\n{self.worker.output()[-4000:]}"

    def wait_models(self, wanted: set[str]) -> None:
        wait_for_models(self.api_url, wanted, self.worker, timeout_s=60)

    # -- requests -------------------------------------------------------------------------------
    def post(self, path: str, body: Any, *, raw: str | None = None) -> httpx.Response:
        """A request outside the openai client, for bodies it would not send."""
        headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        content = raw if raw is not None else json.dumps(body)
        return httpx.post(f"{self.api_url}{path}", content=content, headers=headers, timeout=120)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "worker", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def runner_pid(self, model: str) -> int:
        pid = self.wait_for(lambda: (self.loaded().get(model) or {}).get("pid"), f"{model} loaded")
        return int(pid)

    def close(self) -> None:
        for proc in (self.worker, self.sandbox):
            if proc.popen.poll() is None:
                proc.signal(signal.SIGTERM)
        for proc in (self.worker, self.sandbox):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_runner_stack(
    tmp_path: Path, base_env: dict[str, str], models: dict[str, Path], **settings: str
) -> RunnerStack:
    """Sandbox + worker serving ``models`` (file name stem → source GGUF, copied in).

    ``settings`` become ``PENDRA_<NAME>`` environment variables of the worker.
    """
    models_dir = tmp_path / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    for name, source in models.items():
        target = models_dir / f"{name}.gguf"
        if not target.exists():
            target.write_bytes(source.read_bytes())
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    key_file = tmp_path / "sandbox-worker.key"
    logs = tmp_path / "logs"
    sandbox = start_sandbox_proc(base_env, logs, port, key_file)
    env = worker_env(base_env, api_url, key_file, models_dir)
    env["PENDRA_HOME"] = str(tmp_path / "home")  # one worker per home: a stack gets its own
    env.update({f"PENDRA_{k.upper()}": str(v) for k, v in settings.items()})
    # These tests are about the built-in backend's own admission (slots, queues, 429s): the
    # worker's in-flight cap across backends (max_concurrent, default 1) is lifted out of the way
    # unless the test sets it.
    env.setdefault("MAX_CONCURRENT", "64")
    worker = spawn(["--no-ui"], env, logs, "worker")
    stack = RunnerStack(sandbox, worker, env, api_url, models_dir, Path(env["PENDRA_HOME"]))
    try:
        stack.wait_models(set(models))
    except BaseException:
        stack.close()
        raise
    return stack


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state != "Z"


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


__all__ = ["RunnerStack", "process_alive", "rss", "start_runner_stack"]

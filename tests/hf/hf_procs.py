"""The Hub emulator in a thread of its own, and the real ``pendra`` processes, for the HF tests.

The emulator runs on its own event loop in a background thread so the tests can drive the real
processes with plain blocking calls (``subprocess``) while it answers them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.emulators.hf_hub import HubEmulator
from tests.link.link_procs import Proc, free_port, spawn, stop, worker_env
from worker.keys import generate_key, write_key_file


@contextmanager
def hub_in_thread(hub: HubEmulator) -> Iterator[HubEmulator]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="hf-hub", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(hub.start(), loop).result(30)
        yield hub
    finally:
        asyncio.run_coroutine_threadsafe(hub.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def pendra(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def hf_env(base: dict[str, str], tmp_path: Path, hub: HubEmulator) -> dict[str, str]:
    """A worker environment: no control plane reachable (the link keeps retrying, which is fine
    for installs), every external backend off, the Hub at the emulator."""
    key_file = tmp_path / "worker.key"
    if not key_file.exists():
        write_key_file(key_file, generate_key())
    env = worker_env(
        base, f"http://127.0.0.1:{free_port()}", key_file, Path(base["PENDRA_HOME"]) / "models"
    )
    env["HF_ENDPOINT"] = hub.url
    return env


def wait_ready(env: dict[str, str], proc: Proc, timeout_s: float = 60) -> None:
    """Until the worker's admin socket answers ``pendra status``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.popen.poll() is not None:
            raise AssertionError(f"the worker exited:\n{proc.output()}")
        result = pendra(env, "status", "--json", timeout=30)
        if result.returncode == 0 and json.loads(result.stdout)["worker"]["state"]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker never answered:\n{proc.output()}")
        time.sleep(0.2)


@contextmanager
def running_worker(env: dict[str, str], logs: Path, name: str = "worker") -> Iterator[Proc]:
    """``pendra --no-ui``, ready when its admin socket answers ``pendra status``."""
    proc = spawn(["--no-ui"], env, logs, f"{name}-{time.monotonic_ns()}")
    try:
        wait_ready(env, proc)
        yield proc
    finally:
        if proc.popen.poll() is None:
            stop(proc)


def tree(directory: Path) -> list[str]:
    """Every file under ``directory``, relative, sorted (hidden partials included)."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())

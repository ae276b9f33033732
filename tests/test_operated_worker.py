"""The operated worker end to end: real processes, as an administrator over SSH would use them.

A real ``pendra sandbox`` (control plane, catalogue, model file server) and a real
``pendra --no-ui`` worker; then the CLI talks to the running worker through its admin socket:
``pendra status --json`` (the docs/status.md contract), ``pendra models install gemma3:270m``
from the sandbox catalogue (download, SHA-256 verify, live progress), a streamed chat through the
sandbox's OpenAI ingress with the official client, ``pendra logs``, ``pendra models rm``, and a
SIGTERM drain.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai import OpenAI

from tests.link.link_procs import (
    API_KEY,
    Proc,
    free_port,
    spawn,
    start_sandbox_proc,
    stop,
    wait_for_models,
    worker_env,
)
from worker.keys import generate_key

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

STATUS_KEYS = {"worker", "backends", "gpus", "installs", "requests"}


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


def wait_connected(env: dict[str, str], timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        result = pendra(env, "status", "--json", timeout=30)
        last = result.stdout + result.stderr
        if result.returncode == 0 and json.loads(result.stdout)["worker"]["state"] == "connected":
            return json.loads(result.stdout)
        time.sleep(0.3)
    raise AssertionError(f"worker never connected: {last}")


def wait_answering(env: dict[str, str], worker: Proc, timeout_s: float = 60) -> None:
    """Until the worker answers on its admin socket (no control plane needed for that)."""
    deadline = time.monotonic() + timeout_s
    while pendra(env, "status", "--json", timeout=30).returncode != 0:
        assert worker.popen.poll() is None, worker.output()
        assert time.monotonic() < deadline, "the worker never answered"
        time.sleep(0.3)


def test_install_serve_status_logs_and_remove_on_a_running_worker(
    tmp_path: Path, clean_env: dict[str, str], gemma_gguf: Path
) -> None:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    key_file = tmp_path / "sandbox-worker.key"
    models_dir = tmp_path / "models"
    sandbox = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_file)
    env = worker_env(clean_env, api_url, key_file, models_dir)
    worker = spawn(["--no-ui"], env, tmp_path / "logs", "worker")
    try:
        status = wait_connected(env)
        assert status.keys() >= STATUS_KEYS
        assert status["worker"]["version"]
        assert status["backends"][0]["name"] == "pendra"

        installed = pendra(env, "models", "install", "gemma3:270m", timeout=240)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        model_file = models_dir / "gemma-3-270m-q4_k_m.gguf"
        assert model_file.stat().st_size == gemma_gguf.stat().st_size
        sidecar = json.loads(Path(f"{model_file}.meta.json").read_text())
        assert sidecar["ref"] == "gemma3:270m"
        assert not [p.name for p in models_dir.iterdir() if p.name.startswith(".")]

        wait_for_models(api_url, {"gemma3:270m"}, worker)
        client = OpenAI(base_url=f"{api_url}/v1", api_key=API_KEY, max_retries=0)
        stream = client.chat.completions.create(
            model="gemma3:270m",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=12,
            temperature=0,
            stream=True,
        )
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        assert "".join(pieces).strip()

        status = json.loads(pendra(env, "status", "--json").stdout)
        assert status["requests"]["served"] >= 1
        pendra_models = next(b for b in status["backends"] if b["name"] == "pendra")["models"]
        assert "gemma3:270m" in {m["id"] for m in pendra_models}
        readable = pendra(env, "status")
        assert readable.returncode == 0 and "connected" in readable.stdout

        logs = pendra(env, "logs", "-n", "200")
        assert logs.returncode == 0
        assert "connected" in logs.stdout
        key_text = key_file.read_text().strip()
        assert key_text not in logs.stdout
        assert key_text not in json.dumps(status)

        removed = pendra(env, "models", "rm", "gemma3:270m")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert not model_file.exists()
        assert not Path(f"{model_file}.meta.json").exists()

        assert stop(worker, 60) == 0
    finally:
        worker.kill()
        sandbox.kill()
    assert key_file.read_text().strip() not in worker.output()


def test_cli_without_a_worker_says_how_to_start_one(clean_env: dict[str, str]) -> None:
    result = pendra(clean_env, "status", "--json")
    assert result.returncode == 3
    assert result.stdout == ""
    assert "pendra --no-ui" in result.stderr
    assert "Traceback" not in result.stderr


def test_pendra_stop_drains_a_worker_started_in_a_terminal(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """``pendra stop`` on a ``pendra --no-ui`` that has no service: it drains and exits 0; a
    second ``pendra stop`` says there is nothing to stop. No control plane is needed for it."""
    key_file = tmp_path / "worker.key"
    key_file.write_text(generate_key().text + "\n")
    key_file.chmod(0o600)
    env = worker_env(clean_env, f"http://127.0.0.1:{free_port()}", key_file, tmp_path / "models")
    worker = spawn(["--no-ui"], env, tmp_path / "logs", "worker")
    try:
        wait_answering(env, worker)
        stopped = pendra(env, "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert f"stopped the worker (pid {worker.pid})" in stopped.stdout
        assert worker.wait(30) == 0
    finally:
        worker.kill()
    again = pendra(env, "stop")
    assert again.returncode == 3
    assert "No Pendra worker is running" in again.stderr and "Traceback" not in again.stderr


def test_pendra_rm_removes_a_gguf_the_user_copied_in(
    tmp_path: Path, clean_env: dict[str, str], tiny_chat_gguf: Path
) -> None:
    """A GGUF dropped into the models directory by hand (no install record) is served under its
    file's name; `pendra rm` with that name removes that file and only it."""
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    for name in ("mine.gguf", "keep.gguf"):
        shutil.copy(tiny_chat_gguf, models_dir / name)
    key_file = tmp_path / "worker.key"
    key_file.write_text(generate_key().text + "\n")
    key_file.chmod(0o600)
    env = worker_env(clean_env, f"http://127.0.0.1:{free_port()}", key_file, models_dir)
    worker = spawn(["--no-ui"], env, tmp_path / "logs", "worker")
    try:
        wait_answering(env, worker)
        removed = pendra(env, "models", "rm", "mine")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert sorted(p.name for p in models_dir.iterdir()) == ["keep.gguf"]
        status = json.loads(pendra(env, "status", "--json").stdout)
        served = next(b for b in status["backends"] if b["name"] == "pendra")["models"]
        assert [m["id"] for m in served] == ["keep"]
        # by file name too; and a name nothing answers to is a clear error that removes nothing
        assert pendra(env, "models", "rm", "keep.gguf").returncode == 0
        assert list(models_dir.iterdir()) == []
        missing = pendra(env, "models", "rm", "mine")
        assert missing.returncode != 0 and "not installed" in missing.stderr
        assert "Traceback" not in missing.stderr
    finally:
        worker.kill()


def test_pendra_rm_without_a_running_worker_removes_a_copied_in_gguf(
    tmp_path: Path, clean_env: dict[str, str], tiny_chat_gguf: Path
) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    shutil.copy(tiny_chat_gguf, models_dir / "Hand Copied.gguf")  # not a valid catalogue ref
    env = {**clean_env, "PENDRA_MODELS_DIR": str(models_dir)}
    removed = pendra(env, "models", "rm", "Hand Copied")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "Removed Hand Copied" in removed.stdout
    assert list(models_dir.iterdir()) == []

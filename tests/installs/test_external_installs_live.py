"""Installs into external backends through a running worker, as a user and the control plane do.

Real processes: ``pendra sandbox`` (its bundled catalogue) and ``pendra --no-ui`` with Ollama,
LM Studio and Speaches emulators as its discovered backends (served from a thread of this test,
so it can run the CLI synchronously). For each installable kind a catalogue model is installed
and removed (a) with ``pendra models install/rm`` and (b) with the sandbox's model commands,
which travel to the worker as ``install``/``uninstall`` frames over its link.

Each emulator holds the install midway (its ``install_gate``) until the test has seen the job's
live progress in ``pendra status --json`` — and, for (b), in the sandbox's answer stream — so the
checks do not depend on how fast the install runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import _LEAKY_VARS
from tests.emulators import LmStudioEmulator, OllamaEmulator, OllamaModel, SpeachesEmulator
from tests.emulators.base import Emulator
from tests.emulators.in_thread import EmulatorThread
from tests.link.link_procs import (
    API_KEY,
    Proc,
    free_port,
    spawn,
    start_sandbox_proc,
    stop,
    worker_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

FINAL = {"done", "failed", "cancelled"}
INSTALL = "/api/v1/workers/models/install"
UNINSTALL = "/api/v1/workers/models/uninstall"


@dataclass(frozen=True)
class Case:
    kind: str
    ref: str  # a model of the bundled sample catalogue
    target: str  # what the catalogue calls it in that backend
    removable: bool = True


# Different models for the CLI and the sandbox path, so neither test depends on the other.
CLI_CASES = [
    Case("ollama", "qwen3:0.6b", "qwen3:0.6b"),
    Case("lmstudio", "qwen3:0.6b", "qwen/qwen3-0.6b", removable=False),
    Case("speaches", "whisper:large-v3", "Systran/faster-whisper-large-v3"),
]
SANDBOX_CASES = [
    Case("ollama", "llama3.2:1b", "llama3.2:1b"),
    Case("lmstudio", "llama3.2:1b", "meta-llama/llama-3.2-1b", removable=False),
    Case("speaches", "whisper:small", "Systran/faster-whisper-small"),
]


@dataclass
class Stack:
    env: dict[str, str]
    api_url: str
    emulators: EmulatorThread
    backends: dict[str, Emulator]
    worker: Proc

    def pendra(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "worker", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def status(self) -> dict[str, Any]:
        result = self.pendra("status", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)

    def installed(self, kind: str) -> list[str]:
        """The models the backend itself has (read from the emulator)."""
        emulator = self.backends[kind]
        return self.emulators.call(lambda: list(emulator.models))

    def hold_installs(self, kind: str) -> asyncio.Event:
        gate = asyncio.Event()
        emulator = self.backends[kind]
        self.emulators.call(lambda: setattr(emulator, "install_gate", gate))
        return gate

    def release(self, gate: asyncio.Event) -> None:
        self.emulators.call(gate.set)

    def wait_for_job(self, case: Case, test: Callable[[dict[str, Any]], bool], what: str) -> dict:
        deadline = time.monotonic() + 60
        jobs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            jobs = [
                j
                for j in self.status()["installs"]
                if j["ref"] == case.ref and j["backend"] == case.kind
            ]
            if jobs and test(jobs[-1]):
                return jobs[-1]
            time.sleep(0.1)
        raise AssertionError(f"{what}: never seen in `pendra status --json` (last: {jobs})")

    def served_models(self) -> set[str]:
        r = httpx.get(
            self.api_url + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        )
        return {m["id"] for m in r.json()["data"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("external-installs")
    home = root / "home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items() if k not in _LEAKY_VARS}
    base["PENDRA_HOME"] = str(home)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    key_file = root / "sandbox-worker.key"
    with EmulatorThread() as emulators:
        pullable = {tag: OllamaModel(tag) for tag in ("qwen3:0.6b", "llama3.2:1b")}
        backends: dict[str, Emulator] = {
            "ollama": OllamaEmulator([OllamaModel("gemma3:4b")], pullable=pullable),
            "lmstudio": LmStudioEmulator(models=["google/gemma-3-4b"]),
            "speaches": SpeachesEmulator(models=["speaches-ai/Kokoro-82M-v1.0-ONNX"]),
        }
        urls = {kind: emulators.start(emulator) for kind, emulator in backends.items()}
        sandbox = start_sandbox_proc(base, root / "logs", port, key_file)
        env = worker_env(base, api_url, key_file, root / "models")
        env["PENDRA_BUILTIN"] = "false"
        env.update({f"{kind.upper()}_ENDPOINT": url for kind, url in urls.items()})
        worker = spawn(["--no-ui"], env, root / "logs", "worker")
        box = Stack(env, api_url, emulators, backends, worker)
        try:
            deadline = time.monotonic() + 60
            while True:
                status = box.pendra("status", "--json")
                if status.returncode == 0:
                    doc = json.loads(status.stdout)
                    ready = {b["name"] for b in doc["backends"] if b["status"] == "ready"}
                    if doc["worker"]["state"] == "connected" and ready >= set(backends):
                        break
                assert worker.popen.poll() is None, worker.output()
                assert time.monotonic() < deadline, status.stdout + status.stderr
                time.sleep(0.2)
            yield box
        finally:
            stop(worker)
            stop(sandbox)


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.kind)
def test_pendra_models_install_and_rm_through_the_running_worker(stack: Stack, case: Case) -> None:
    gate = stack.hold_installs(case.kind)
    install = subprocess.Popen(
        [sys.executable, "-m", "worker", "models", "install", case.ref, "--backend", case.kind],
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        running = stack.wait_for_job(
            case, lambda job: job["phase"] not in FINAL, "the running install"
        )
        assert running["target"] == case.target
        stack.release(gate)
        out, err = install.communicate(timeout=60)
    finally:
        stack.release(gate)
        if install.poll() is None:
            install.kill()
            install.wait()
    assert install.returncode == 0, out + err
    assert f"Installed {case.ref} into {case.kind}" in out
    assert "downloading" in err  # the live progress lines (phase changes: not a terminal)
    assert case.target in stack.installed(case.kind)
    done = stack.wait_for_job(case, lambda job: job["phase"] == "done", "the finished install")
    assert done["error"] is None
    listed = json.loads(stack.pendra("models", "--json").stdout)
    assert {"backend": case.kind, "id": case.target} in [
        {"backend": row["backend"], "id": row["id"]} for row in listed
    ]

    removed = stack.pendra("models", "rm", case.ref, "--backend", case.kind)
    if case.removable:
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert f"Removed {case.ref} from {case.kind}" in removed.stdout
        assert case.target not in stack.installed(case.kind)
        listed = json.loads(stack.pendra("models", "--json").stdout)
        assert case.target not in [row["id"] for row in listed if row["backend"] == case.kind]
    else:
        assert removed.returncode == 1
        assert "LM Studio has no API to delete models" in removed.stderr
        assert removed.stderr.count("remove it in the LM Studio app") == 1, removed.stderr
        assert case.target in stack.installed(case.kind)


def read_frames(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.strip():
            yield json.loads(line)


@pytest.mark.parametrize("case", SANDBOX_CASES, ids=lambda c: c.kind)
def test_control_plane_install_and_uninstall_commands(stack: Stack, case: Case) -> None:
    gate = stack.hold_installs(case.kind)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"ref": case.ref, "backend": case.kind}
    frames: list[dict[str, Any]] = []
    try:
        with httpx.stream(
            "POST", stack.api_url + INSTALL, json=body, headers=headers, timeout=60
        ) as response:
            assert response.status_code == 200, response.read()
            stream = read_frames(response.iter_lines())
            frames.append(next(stream))  # the first progress frame, while the backend holds
            assert frames[0]["type"] == "install_progress", frames
            running = stack.wait_for_job(
                case, lambda job: job["phase"] not in FINAL, "the running install"
            )
            assert running["target"] == case.target
            stack.release(gate)
            frames.extend(stream)
    finally:
        stack.release(gate)
    assert frames[-1] == {
        "type": "install_done",
        "id": frames[0]["id"],
        "ref": case.ref,
        "backend": case.kind,
    }, frames
    assert all(f["type"] == "install_progress" for f in frames[:-1]), frames
    assert case.target in stack.installed(case.kind)
    stack.wait_for_job(case, lambda job: job["phase"] == "done", "the finished install")
    deadline = time.monotonic() + 30  # the worker pushes a fresh status frame after the command
    while case.target not in stack.served_models():
        assert time.monotonic() < deadline, stack.served_models()
        time.sleep(0.1)

    with httpx.stream(
        "POST", stack.api_url + UNINSTALL, json=body, headers=headers, timeout=60
    ) as response:
        answer = list(read_frames(response.iter_lines()))
    if case.removable:
        assert [f["type"] for f in answer] == ["install_done"], answer
        assert case.target not in stack.installed(case.kind)
    else:
        assert answer[-1]["type"] == "error", answer
        assert "LM Studio has no API to delete models" in answer[-1]["message"]
        assert case.target in stack.installed(case.kind)


def test_model_commands_need_the_api_key(stack: Stack) -> None:
    body = {"ref": "qwen3:0.6b", "backend": "ollama"}
    for path in (INSTALL, UNINSTALL):
        r = httpx.post(stack.api_url + path, json=body, timeout=10)
        assert r.status_code == 401, r.text
        r = httpx.post(
            stack.api_url + path, json=body, headers={"Authorization": "Bearer nope"}, timeout=10
        )
        assert r.status_code == 401, r.text
    assert "qwen3:0.6b" not in stack.installed("ollama")

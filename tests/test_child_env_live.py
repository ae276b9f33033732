"""No secret of the worker's environment reaches a process it starts: checked on real processes.

The GPU tools are stand-ins (no real GPU driver here): ``nvidia-smi``, ``amd-smi`` and
``rocm-smi`` scripts first on PATH that write their whole environment to a file. ``nvidia-smi``
and ``amd-smi`` then fail, so the worker's telemetry falls through to ``rocm-smi``, which answers
with a recorded real output — all three run. The worker runs in container mode: the key itself in
``PENDRA_WORKER_KEY``, next to other secrets (a Hugging Face token, a password).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.link.link_procs import free_port, spawn, start_sandbox_proc, stop, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

DATA = Path(__file__).parent / "gpu" / "data"
MARKER = ("PENDRA_TEST_CHILD_MARKER", "inherited-on-purpose")
SECRETS = {"HF_TOKEN": "hf_aSecretTokenValue123", "DB_PASSWORD": "hunter2-but-longer"}


def fake_tools(bin_dir: Path, records: Path) -> None:
    """Stand-ins for the vendor tools: record the environment, then fail or answer."""
    bin_dir.mkdir()
    records.mkdir()
    answers = {
        "nvidia-smi": "echo 'NVIDIA-SMI has failed because it could not communicate with the "
        "NVIDIA driver.'; exit 9",
        "amd-smi": "echo 'amd-smi: no AMD GPU driver'; exit 1",
        "rocm-smi": f"cat '{DATA / 'rocm-smi.json'}'",
    }
    for tool, answer in answers.items():
        script = bin_dir / tool
        record = f"'{records}/{tool}.'$$'.env'"
        # Written aside, then renamed: a reader never sees half a record.
        script.write_text(
            f"#!/bin/sh\nenv -0 > {record}.tmp && mv {record}.tmp {record}\n{answer}\n"
        )
        script.chmod(0o755)


def recorded(records: Path) -> dict[str, list[dict[str, str]]]:
    """Every environment the tools saw, by tool."""
    seen: dict[str, list[dict[str, str]]] = {}
    for path in sorted(records.glob("*.env")):
        pairs = [item.split("=", 1) for item in path.read_bytes().decode().split("\0") if item]
        seen.setdefault(path.name.split(".")[0], []).append(dict(pairs))
    return seen


def assert_clean(envs: list[dict[str, str]], key_text: str) -> None:
    assert envs
    for env in envs:
        assert env.get(MARKER[0]) == MARKER[1]  # the recording works: ordinary variables pass
        assert "PENDRA_WORKER_KEY" not in env
        for name in SECRETS:
            assert name not in env
        values = "\0".join(env.values())
        assert key_text not in values
        for value in SECRETS.values():
            assert value not in values


def test_gpu_tools_run_by_the_worker_doctor_and_installer_get_no_secret(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    bin_dir, records = tmp_path / "bin", tmp_path / "records"
    fake_tools(bin_dir, records)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    key_file = tmp_path / "sandbox-worker.key"
    sandbox = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_file)
    key_text = key_file.read_text().strip()
    env = worker_env(clean_env, api_url, key_file, tmp_path / "models")
    del env["PENDRA_WORKER_KEY_FILE"]
    env.update(
        {
            "PENDRA_WORKER_KEY": key_text,  # container mode
            "PENDRA_BUILTIN": "false",
            "PENDRA_GPU_INTERVAL": "0.5",
            "PATH": f"{bin_dir}:{env['PATH']}",
            MARKER[0]: MARKER[1],
            **SECRETS,
        }
    )
    worker = spawn(["--no-ui"], env, tmp_path / "logs", "worker")
    try:
        deadline = time.monotonic() + 60
        while True:  # until the worker shows the GPU rocm-smi reported, over a live link
            status = subprocess.run(
                [sys.executable, "-m", "worker", "status", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            if status.returncode == 0:
                doc = json.loads(status.stdout)
                names = [gpu["name"] for gpu in doc["gpus"]]
                if doc["worker"]["state"] == "connected" and names:
                    break
            assert worker.popen.poll() is None, worker.output()
            assert time.monotonic() < deadline, status.stdout + status.stderr + worker.output()
            time.sleep(0.2)
        assert "Radeon RX 7900 XTX" in names[0]
        by_worker = recorded(records)
        assert set(by_worker) == {"nvidia-smi", "amd-smi", "rocm-smi"}
        for envs in by_worker.values():
            assert_clean(envs, key_text)
    finally:
        assert stop(worker) == 0, worker.output()
        stop(sandbox)

    for path in records.glob("*.env"):
        path.unlink()
    doctor = subprocess.run(
        [sys.executable, "-m", "worker", "doctor", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert doctor.stdout.strip().startswith("{") or doctor.stdout.strip().startswith("["), (
        doctor.stdout + doctor.stderr
    )
    accel = subprocess.run(
        [sys.executable, "-m", "installer.accel", "--shell", "--probe"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert accel.returncode == 0, accel.stdout + accel.stderr
    by_tools = recorded(records)
    assert "nvidia-smi" in by_tools  # both ran it
    for envs in by_tools.values():
        assert_clean(envs, key_text)

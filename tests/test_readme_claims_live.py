"""What the README and ``--help`` say about the commands holds on real processes.

A real ``pendra sandbox`` and ``pendra --no-ui`` pointed at it; the commands then run in a shell
that has the worker's ``PENDRA_HOME`` but not its ``APP_SERVER_WS_URL`` (the default, the public
service, is unreachable from here). ``pendra catalogue`` and ``pendra doctor`` still answer for
the control plane the worker uses, because they go through the running worker.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.link.link_procs import free_port, spawn, start_sandbox_proc, stop, worker_env

ROOT = Path(__file__).resolve().parents[1]


def pendra(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_catalogue_and_doctor_go_through_the_running_worker(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    key_file = tmp_path / "sandbox-worker.key"
    sandbox = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_file)
    env = worker_env(clean_env, api_url, key_file, tmp_path / "models")
    env["PENDRA_BUILTIN"] = "false"
    worker = spawn(["--no-ui"], env, tmp_path / "logs", "worker")
    shell = dict(clean_env)  # same PENDRA_HOME, no control plane URL
    try:
        deadline = time.monotonic() + 60
        while pendra(shell, "status", "--json", timeout=30).returncode != 0:
            assert worker.popen.poll() is None and time.monotonic() < deadline, worker.output()
            time.sleep(0.2)

        catalogue = pendra(shell, "catalogue", "--json")
        assert catalogue.returncode == 0, catalogue.stderr
        document = json.loads(catalogue.stdout)
        assert document["cached"] is False
        assert document["source_url"] == f"{api_url}/api/v1/catalogue"
        refs = {f"{m['id']}:{v['tag']}" for m in document["models"] for v in m["variants"]}
        assert "gemma3:270m" in refs
        assert all("fit" in v for m in document["models"] for v in m["variants"])
        table = pendra(shell, "catalogue")
        assert table.returncode == 0 and "gemma3:270m" in table.stdout, table.stderr

        doctor = pendra(shell, "doctor", "--json")
        report = json.loads(doctor.stdout)
        ws_url = "ws" + api_url.removeprefix("http")  # the status names the WebSocket base
        assert report["running_worker"]["control_plane"] == ws_url
        plane = next(c for c in report["checks"] if c["id"] == "control_plane")
        assert plane["status"] == "ok", plane
        assert "control_plane" not in report["required_failed"]
        text = pendra(shell, "doctor")
        assert f"running worker's control plane ({ws_url})" in text.stdout
    finally:
        assert stop(worker) == 0, worker.output()
        stop(sandbox)
    logs = pendra(shell, "logs", "-n", "5")  # no worker now: the log file is read
    assert logs.returncode == 0 and logs.stdout.strip(), logs.stderr


def test_the_documents_the_cli_and_readme_point_to_exist(clean_env: dict[str, str]) -> None:
    help_text = pendra(clean_env, "status", "--help").stdout
    assert "docs/status.md" in help_text
    assert (ROOT / "docs" / "status.md").is_file()
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    local = [link for link in links if "://" not in link]
    assert "docs/status.md" in local
    for link in local:
        assert (ROOT / link).exists(), link
    for path in ROOT.glob("docs/*.md"):
        for link in re.findall(r"\]\(([^)#]+)\)", path.read_text()):
            if "://" not in link:
                assert (path.parent / link).exists(), (path.name, link)

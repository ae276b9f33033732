"""``pendra stack`` and ``pendra healthcheck`` without a Docker daemon, and how the host's CLI finds
the containerised worker: its admin socket under ``stack/run`` (the bind mount), used when no
process or service worker answers. Real admin servers, real subprocesses."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "admin"))
from admin_test_worker import TestWorker

from worker.admin import AdminServer
from worker.admin.locate import admin_socket_for, stack_socket
from worker.cli.stack import render_stack_status
from worker.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


async def pendra(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str, str]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout)
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


async def test_the_host_cli_reaches_the_stack_worker(
    pendra_home: Path, clean_env: dict[str, str]
) -> None:
    settings = load_settings()
    assert admin_socket_for(settings) == settings.admin_socket  # nothing runs: the default
    worker = TestWorker()
    socket = stack_socket(pendra_home)
    socket.parent.mkdir(parents=True, mode=0o700)
    async with AdminServer(worker, socket):
        assert admin_socket_for(settings) == socket
        code, out, err = await pendra(clean_env, "status", "--json")
        assert code == 0, err
        assert json.loads(out)["worker"]["state"] == "connected"
        # A process/service worker does not start beside it (tests/admin/test_admin_socket.py);
        # a stale socket file of an earlier one does not hide the stack's worker.
        settings.admin_socket.parent.mkdir(parents=True, exist_ok=True)
        settings.admin_socket.touch()
        assert admin_socket_for(settings) == socket
    settings.admin_socket.unlink()
    # Should both run anyway (the stack's container started by hand with `docker start`), the
    # process/service worker on the same home answers first.
    own = TestWorker()
    own.state = "draining"
    async with AdminServer(own, settings.admin_socket), AdminServer(worker, socket):
        assert admin_socket_for(settings) == settings.admin_socket
        code, out, _ = await pendra(clean_env, "status", "--json")
        assert json.loads(out)["worker"]["state"] == "draining"


async def test_healthcheck(pendra_home: Path, clean_env: dict[str, str]) -> None:
    code, out, _ = await pendra(clean_env, "healthcheck")
    assert code == 1 and out.startswith("unhealthy: No Pendra worker is running")
    worker = TestWorker()
    async with AdminServer(worker, load_settings().admin_socket):
        code, out, _ = await pendra(clean_env, "healthcheck")
        assert (code, out.strip()) == (0, "healthy: connected")
        worker.state = "connecting"
        code, out, _ = await pendra(clean_env, "healthcheck")
        assert code == 1 and "the worker is connecting, not connected" in out


async def test_stack_without_a_daemon_says_how_to_fix_it(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**clean_env, "DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    for action in (["status"], ["down"], ["logs"]):
        code, out, err = await pendra(env, "stack", *action)
        assert code == 1, (action, err)
        assert out == "" and "cannot talk to the Docker daemon" in err
        assert "Traceback" not in err and "pendra doctor" in err


async def test_stack_up_refuses_what_cannot_work(
    clean_env: dict[str, str], pendra_home: Path, tmp_path: Path
) -> None:
    env = {**clean_env, "DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    loopback = {**env, "PENDRA_API_URL": "http://127.0.0.1:8787"}
    code, _, err = await pendra(loopback, "stack", "up", "--network", "bridge")
    assert code == 1 and "cannot reach" in err and "--network host" in err
    code, _, err = await pendra(env, "stack", "up", "--models", "bad name!")
    assert code == 2 and "neither an absolute directory nor a volume name" in err
    worker = TestWorker()
    async with AdminServer(worker, load_settings().admin_socket):
        code, _, err = await pendra(env, "stack", "up")
        assert code == 1 and "already runs for this PENDRA_HOME as a process or service" in err
    assert not (pendra_home / "stack" / "stack.json").exists()  # nothing remembered on failure


def test_stack_status_text() -> None:
    assert "not running" in render_stack_status({"containers": [], "worker": None})
    document = {
        "containers": [
            {
                "name": "pendra-worker-1",
                "service": "worker",
                "state": "running",
                "health": "unhealthy",
                "health_detail": "unhealthy: the worker is connecting, not connected",
                "image": "pendra-worker:0.1.0",
                "exit_code": None,
            }
        ],
        "worker": None,
        "admin_socket": "/home/u/.pendra/stack/run/admin.sock",
    }
    text = render_stack_status(document)
    assert "pendra-worker-1: running, unhealthy  (pendra-worker:0.1.0)" in text
    assert "health: unhealthy: the worker is connecting" in text
    assert "does not answer on /home/u/.pendra/stack/run/admin.sock" in text


@pytest.mark.parametrize("action", ["up", "down", "status", "logs", "compose"])
async def test_stack_help(clean_env: dict[str, str], action: str) -> None:
    code, out, _ = await pendra(clean_env, "stack", action, "--help")
    assert code == 0 and f"pendra stack {action}" in out


def test_the_apps_docker_choice_says_why_docker_is_unavailable(
    pendra_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pendra_tui.services import DockerLauncher

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    launcher = DockerLauncher(load_settings())
    reason = launcher.unavailable()
    assert reason is not None and "cannot talk to the Docker daemon" in reason
    assert any("pendra stack up" in line for line in launcher.plan())


def test_docker_api_failures_are_errors_a_person_can_read() -> None:
    import docker

    from installer.stack import StackError
    from installer.stack_docker import api_errors

    failing = pytest.raises(StackError, match="starting the stack failed: no such image")
    with failing as err, api_errors("starting the stack"):
        raise docker.errors.APIError("500 Server Error", explanation="no such image")
    assert "pendra doctor" in str(err.value)
    exited = pytest.raises(StackError, match="exited with 1: chown: invalid user")
    with exited, api_errors("handing the volumes over"):
        raise docker.errors.ContainerError(None, 1, "chown", "img", b"oops\nchown: invalid user")


def test_the_apps_docker_choice_without_the_docker_extra(
    pendra_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pendra_tui.services import DockerLauncher

    monkeypatch.setitem(sys.modules, "docker", None)  # as if the extra were not installed
    reason = DockerLauncher(load_settings()).unavailable()
    assert reason is not None and "'docker'" in reason and "pendra-worker[docker]" in reason

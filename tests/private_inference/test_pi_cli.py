"""``pendra key workload`` and the private-inference lines of ``pendra status``, as subprocesses:
without a worker (straight from the key file) and through a running worker's admin socket."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pi_support import Sandbox, start_sandbox, start_worker

from tests.link.link_fakes import FakeBackend, RunningWorker, wait_for, worker_settings
from worker.private_inference.workload_key import key_path, read_key

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


async def pendra(env: dict[str, str], *args: str) -> tuple[int, str, str]:
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
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


async def test_without_a_worker_it_reads_the_file_and_never_creates_one(
    clean_env: dict[str, str], pendra_home: Path
) -> None:
    code, out, err = await pendra(clean_env, "key", "workload")
    assert code == 1 and out == ""
    assert "No workload key yet" in err and "pendra --no-ui" in err and "Traceback" not in err
    assert not key_path(pendra_home).exists()

    code, out, err = await pendra(clean_env, "key", "workload", "--rotate")
    assert code == 0, err
    created = read_key(key_path(pendra_home))
    assert f"New workload key fingerprint: {created.kid}" in out
    assert "registers the new key when it next starts" in out

    code, out, _ = await pendra(clean_env, "key", "workload", "--json")
    info = json.loads(out)
    assert info == {
        "enabled": True,
        "fingerprint": created.kid,
        "public_key": created.public_b64,
        "file": str(key_path(pendra_home)),
        "worker_running": False,
    }
    code, out, _ = await pendra(clean_env, "key", "workload", "--rotate", "--json")
    rotated = read_key(key_path(pendra_home))
    assert json.loads(out)["fingerprint"] == rotated.kid != created.kid


async def test_a_broken_key_file_is_reported_not_replaced(
    clean_env: dict[str, str], pendra_home: Path
) -> None:
    path = key_path(pendra_home)
    path.write_text("garbage\n")
    path.chmod(0o600)
    for args in (["key", "workload"], ["key", "workload", "--rotate"]):
        code, _out, err = await pendra(clean_env, *args)
        assert code == 4 and "is not a workload key" in err and "Traceback" not in err
    assert path.read_text() == "garbage\n"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = await start_sandbox()
    yield box
    await box.stop()


@pytest.fixture
async def operated(sandbox: Sandbox) -> AsyncIterator[RunningWorker]:
    """A worker with its admin socket in the test's PENDRA_HOME, as `pendra --no-ui` runs one."""
    from worker.runtime import Worker

    worker = Worker(worker_settings(sandbox.url), sandbox.keys[0], backends=[FakeBackend()])
    worker.enable_operations(gpu=False)
    task = asyncio.create_task(worker.run())

    def registered() -> bool:
        current = worker.private.current
        return task.done() or (current is not None and sandbox.registered_kids() == {current.kid})

    await wait_for(registered, what="the worker to register its key")
    if task.done():
        task.result()
    running = RunningWorker(worker, task)
    yield running
    if not task.done():
        await running.stop()


async def test_through_the_running_worker_show_and_rotate(
    sandbox: Sandbox, operated: RunningWorker, clean_env: dict[str, str]
) -> None:
    private = operated.worker.private
    first = private.current
    code, out, err = await pendra(clean_env, "key", "workload", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["fingerprint"] == first.kid and info["worker_running"] is True
    assert info["served"] == 0 and info["enabled"] is True

    code, out, err = await pendra(clean_env, "key", "workload", "--rotate")
    assert code == 0, err
    second = private.current
    assert second.kid != first.kid
    assert f"New workload key fingerprint: {second.kid}" in out and "running" in out
    await wait_for(lambda: sandbox.registered_kids() == {second.kid}, what="the new key")
    assert read_key(private.key_file).kid == second.kid

    code, out, err = await pendra(clean_env, "status")
    assert code == 0, err
    assert "Private   on · 0 served · 0 failed" in out
    assert f"  workload key {second.kid}" in out


async def test_status_says_when_private_inference_is_off(
    sandbox: Sandbox, tmp_path: Path, clean_env: dict[str, str], pendra_home: Path
) -> None:
    (pendra_home / "config.toml").write_text("[private_inference]\nenabled = false\n")
    running = await start_worker(sandbox, FakeBackend(), pendra_home)
    from worker.cli._status_text import render_status

    assert "Private   off" in render_status(running.worker.status())
    await running.stop()


def test_the_sdk_brings_no_pendra_command_of_its_own() -> None:
    """The SDK's import name is ``pendra`` too: it must not install a ``pendra`` console script
    that could shadow this project's command."""
    from importlib.metadata import distribution

    assert list(distribution("pendra").entry_points) == []
    scripts = [ep for ep in distribution("pendra-worker").entry_points if ep.name == "pendra"]
    assert [ep.value for ep in scripts] == ["worker.cli:main"]

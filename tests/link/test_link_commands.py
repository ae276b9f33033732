"""Install/uninstall commands over the link, status pushes, and the sandbox's model files."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from link_fakes import FakeBackend, RunningWorker, Sandbox, send_command, wait_for

from worker.protocol import (
    ErrorFrame,
    InstallCommand,
    InstallDone,
    InstallProgressFrame,
    UninstallCommand,
)

pytestmark = pytest.mark.timeout(60)


async def test_install_then_uninstall_over_the_link_updates_the_models(
    sandbox: Sandbox, running: RunningWorker, fake_backend: FakeBackend
) -> None:
    connection = next(iter(sandbox.hub.workers.values()))
    frames = await send_command(sandbox, InstallCommand(id="job1", ref="new:1b", backend="fake"))
    progress = [f for f in frames if isinstance(f, InstallProgressFrame)]
    assert [p.bytes_done for p in progress] == [0, 50, 100]
    assert isinstance(frames[-1], InstallDone) and frames[-1].backend == "fake"
    await wait_for(lambda: connection.serves("new:1b"), what="a status push with the new model")

    frames = await send_command(sandbox, UninstallCommand(id="job2", ref="new:1b", backend="fake"))
    assert isinstance(frames[-1], InstallDone)
    await wait_for(lambda: not connection.serves("new:1b"), what="the model to disappear")

    frames = await send_command(sandbox, UninstallCommand(id="job3", ref="absent", backend="fake"))
    assert isinstance(frames[-1], ErrorFrame) and "not installed" in frames[-1].message
    frames = await send_command(sandbox, InstallCommand(id="job4", ref="x:1", backend="ollama"))
    assert isinstance(frames[-1], ErrorFrame) and "No ollama backend" in frames[-1].message


async def test_backends_event_pushes_status(
    sandbox: Sandbox, running: RunningWorker, fake_backend: FakeBackend
) -> None:
    connection = next(iter(sandbox.hub.workers.values()))
    fake_backend.installed.append("dropped-in")
    await fake_backend.refresh()
    running.worker.events.publish("models", backend="fake")
    await wait_for(lambda: connection.serves("dropped-in"), what="the pushed status")


async def test_sandbox_serves_model_files_with_ranges(tmp_path: Path) -> None:
    from worker.keys import generate_key
    from worker.sandbox import SandboxConfig, build_app, serve
    from worker.sandbox.app import bound_port

    blob = tmp_path / "files" / "m.gguf"
    blob.parent.mkdir()
    blob.write_bytes(bytes(range(256)) * 4)
    config = SandboxConfig(
        api_key="k",
        accepted_keys={generate_key().public_key},
        catalogue={"version": 1, "models": []},
        files_dir=blob.parent,
        extra_files={},
    )
    runner = await serve(build_app(config), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{bound_port(runner)}"
    try:
        async with httpx.AsyncClient() as http:
            whole = await http.get(base + "/files/m.gguf")
            assert whole.status_code == 200 and whole.content == blob.read_bytes()
            part = await http.get(base + "/files/m.gguf", headers={"Range": "bytes=1000-"})
            assert part.status_code == 206 and part.content == blob.read_bytes()[1000:]
            assert (await http.get(base + "/files/..%2Fsecret")).status_code == 404
            assert (await http.get(base + "/files/absent.gguf")).status_code == 404
    finally:
        await runner.cleanup()

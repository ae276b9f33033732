"""Fault: the admin socket file is deleted while the worker runs (a tmp cleaner, a careless rm).

Decided behaviour (docs/reliability.md): the worker keeps serving the control plane — requests are
not the admin socket's business — and it keeps its claim on PENDRA_HOME: the instance lock is a
``flock`` held by the process, not the socket file, so a second worker on the same home is still
refused, naming the running one. The admin server also re-creates the socket within a few
seconds (test_rel_regressions.py), so the CLI finds the worker again without a restart.
"""

from __future__ import annotations

import httpx
import pytest
from reliability_support import (
    chat_body,
    echo_of,
    start_sandbox,
    stream_chat,
    wait_for,
    worker_environ,
)

from tests.emulators import VllmEmulator
from worker.admin.errors import WorkerAlreadyRunning
from worker.admin.server import AdminServer
from worker.runtime import Worker
from worker.settings import load_settings

pytestmark = pytest.mark.timeout(60)


async def test_removed_admin_socket_keeps_serving_and_keeps_the_home_claimed() -> None:
    import asyncio

    emulator = VllmEmulator(models=["m"])
    await emulator.start()
    sandbox = await start_sandbox()
    settings = load_settings(worker_environ(sandbox.url, {"vllm": emulator.url}))
    worker = Worker(settings, sandbox.key)
    worker.enable_operations(gpu=False)
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(
            lambda: (settings.admin_socket.exists() and bool(sandbox.hub.models())) or task.done(),
            "the worker to start",
            timeout_s=30,
        )
        assert not task.done()
        settings.admin_socket.unlink()
        async with httpx.AsyncClient(timeout=30) as client:
            result = await stream_chat(client, sandbox.url, chat_body("m", "still serving"))
        assert result.done and result.text == echo_of("still serving")
        second = AdminServer(worker, settings.admin_socket)
        with pytest.raises(WorkerAlreadyRunning) as caught:
            await second.start()
        assert caught.value.hint
        assert not task.done()
    finally:
        worker.request_stop()
        assert await asyncio.wait_for(task, 30) == 0
        await sandbox.stop()
        await emulator.stop()

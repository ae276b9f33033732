"""Regression tests for bugs the reliability battery found (each fixed; kept so they stay fixed).

- a failed first send of a stream released its backend slot only at the next GC cycle;
- a deeply nested JSON frame (or catalogue) escaped the parsers as RecursionError, ending the link;
- a deleted admin socket was never re-created, so the CLI said no worker ran while one did.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.emulators import VllmEmulator
from worker.backends.registry import BackendRegistry
from worker.backends.vllm import VllmBackend
from worker.link.streaming import pump_stream
from worker.router import Router

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def vllm_router() -> AsyncIterator[Router]:
    emulator = VllmEmulator(models=["m"])
    await emulator.start()
    backend = VllmBackend(emulator.url)
    await backend.refresh()
    yield Router(BackendRegistry([backend]), default_limit=2)
    await backend.close()
    await emulator.stop()


async def test_failed_first_send_releases_the_backend_slot_at_once(vllm_router: Router) -> None:
    """Seen in test_rel_link_drops: after a link drop, router.in_flight stayed at 2 and two of the
    backend's slots stayed taken until ``gc.collect()`` ran. With the default 8 slots a handful of
    drops at the wrong moment can leave a backend unusable until the next GC cycle."""
    body = {"model": "m", "messages": [{"role": "user", "content": "one two three"}]}
    stream = vllm_router.chat_stream(body)
    first = await stream.__anext__()

    async def send(_text: str) -> None:
        raise ConnectionResetError("Cannot write to closing transport")  # what aiohttp raises

    with pytest.raises(ConnectionResetError):
        await pump_stream("r1", stream, send, first=first)
    counters = vllm_router.counters()
    assert counters.in_flight == 0, "the request still counts as in flight"
    assert vllm_router._semaphores["vllm"]._value == 2, "the backend slot is still taken"


async def test_deeply_nested_frame_is_a_frame_error_and_the_worker_stays_connected() -> None:
    """``[[[[…`` 100 000 deep is a 100 kB frame, far under the 16 MiB limit."""
    from reliability_support import start_sandbox, start_worker, wait_for

    emulator = VllmEmulator(models=["m"])
    await emulator.start()
    sandbox = await start_sandbox()
    running = await start_worker(sandbox, {"vllm": emulator.url}, {"m"})
    link = running.worker.link
    assert link is not None
    try:
        connection = next(iter(sandbox.hub.workers.values()))
        connection.reported_errors.clear()
        await connection.send("[" * 100_000)
        await wait_for(
            lambda: bool(connection.reported_errors) or running.task.done() or link.connections > 1,
            "the worker to answer the nested frame",
        )
        assert not running.task.done(), "the worker stopped"
        assert link.connections == 1, "the frame cost the connection"
        assert connection.reported_errors[0].code == "malformed_frame"
    finally:
        if not running.task.done():
            await running.stop()
        else:
            with contextlib.suppress(BaseException):
                running.task.result()
        await sandbox.stop()
        await emulator.stop()


def test_deeply_nested_catalogue_is_a_catalogue_error() -> None:
    from worker.catalogue.parse import CatalogueError, parse_catalogue_bytes

    with pytest.raises(CatalogueError):
        parse_catalogue_bytes(b'{"version": 1, "models": ' + b"[" * 100_000)


async def test_admin_socket_is_recreated_after_it_was_deleted() -> None:
    import asyncio

    from reliability_support import start_sandbox, wait_for, worker_environ

    from worker.runtime import Worker
    from worker.settings import load_settings

    sandbox = await start_sandbox()
    settings = load_settings(worker_environ(sandbox.url, {}))
    worker = Worker(settings, sandbox.key)
    worker.enable_operations(gpu=False)
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: settings.admin_socket.exists() or task.done(), "the admin socket")
        settings.admin_socket.unlink()
        await wait_for(lambda: settings.admin_socket.exists(), "the socket to come back", 5)
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)
        await sandbox.stop()

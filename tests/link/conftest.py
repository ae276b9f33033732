"""Fixtures of the link tests: an in-process sandbox and a worker with the fast fake backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from link_fakes import FakeBackend, RunningWorker, Sandbox, start_sandbox, start_worker


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = await start_sandbox()
    yield box
    await box.stop()


@pytest.fixture
async def fake_backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
async def running(sandbox: Sandbox, fake_backend: FakeBackend) -> AsyncIterator[RunningWorker]:
    worker = await start_worker(sandbox, fake_backend)
    yield worker
    if not worker.task.done():
        await worker.stop()

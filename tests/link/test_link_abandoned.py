"""A client that hangs up: its request is cancelled on the worker, and the worker is free again.

``pendra sandbox`` and ``pendra --no-ui`` as real processes, the built-in backend generating on a
tiny random-weight GGUF with an 8192-token context (seconds of work, so the request is still
running when its client goes). The worker runs one request at a time (``max_concurrent`` 1, the
default), so a request left running after its client went away would hold up the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.link.link_procs import API_KEY, ProcessStack, start_process_stack
from tests.model_factory import NO_EARLY_END
from worker.admin.client import AdminClient
from worker.settings import load_settings

pytestmark = pytest.mark.timeout(150)

MODEL = "tiny-long"


@pytest.fixture
def stack(
    tmp_path: Path, clean_env: dict[str, str], long_chat_gguf: Path
) -> Iterator[ProcessStack]:
    running = start_process_stack(clean_env, tmp_path, {MODEL: long_chat_gguf})
    try:
        yield running
    finally:
        running.close()


async def wait_until(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def chat(max_tokens: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "logit_bias": NO_EARLY_END,
    }


async def test_a_unary_request_the_client_abandons_is_cancelled_and_frees_the_worker(
    stack: ProcessStack,
) -> None:
    admin = AdminClient.for_settings(load_settings())  # the worker's PENDRA_HOME
    headers = {"Authorization": f"Bearer {API_KEY}"}
    url = f"{stack.url}/v1/chat/completions"

    async def requests() -> dict[str, Any]:
        return (await admin.status())["requests"]

    async def running() -> bool:
        return (await requests())["in_flight"] == 1

    # a non-streamed chat that would generate for seconds; its client gives up mid-way
    async with httpx.AsyncClient(timeout=120) as client:
        abandoned = asyncio.create_task(client.post(url, headers=headers, json=chat(100_000)))
        await wait_until(running, "the request to run on the worker")
        abandoned.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await abandoned
    # leaving the client closed its connection: the sandbox cancels the request on the worker

    async def freed() -> bool:
        counters = await requests()
        return counters["in_flight"] == 0 and counters["cancelled"] == 1

    await wait_until(freed, "the abandoned request to be cancelled")
    counters = await requests()
    assert (counters["served"], counters["failed"]) == (0, 0)

    # the next request finds the worker free: served, and the abandoned one was never finished
    async with httpx.AsyncClient(timeout=120) as client:
        answer = await client.post(url, headers=headers, json=chat(4))
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] == 4
    counters = await requests()
    assert (counters["served"], counters["failed"], counters["cancelled"]) == (1, 0, 1)
    records = await admin.recent_requests()
    assert [(r["model"], r["status"]) for r in records] == [
        (MODEL, "ok"),
        (MODEL, "cancelled"),
    ]

    # the sandbox let go of it too: no request of this worker is in flight there
    async with httpx.AsyncClient(timeout=30) as client:
        workers = (await client.get(f"{stack.url}/api/v1/workers")).json()["workers"]
    assert [w["in_flight"] for w in workers] == [0]


async def test_a_long_unary_answer_moves_the_workers_rate_while_it_runs(
    stack: ProcessStack,
) -> None:
    """tok/s in `pendra status` (and the dashboard) counts a non-streamed answer's tokens as
    they are generated, not all at once when it is done."""
    admin = AdminClient.for_settings(load_settings())
    headers = {"Authorization": f"Bearer {API_KEY}"}

    async def generating() -> bool:
        counters = (await admin.status())["requests"]
        return counters["in_flight"] == 1 and counters["tokens_per_s"] > 0

    async with httpx.AsyncClient(timeout=120) as client:
        request = asyncio.create_task(
            client.post(f"{stack.url}/v1/chat/completions", headers=headers, json=chat(4000))
        )
        # One status snapshot with the request in flight and a rate above 0: counted only at
        # the end, the tokens would reach the rate in the same step that ends the request.
        await wait_until(generating, "the rate to move while the answer is generated")
        answer = await request
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] == 4000
    counters = (await admin.status())["requests"]
    assert counters["tokens_total"] == 4000  # each token counted once

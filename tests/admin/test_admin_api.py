"""The admin API over its real Unix socket: status document, commands, errors, event stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from admin_status_schema import check_status_document
from admin_test_worker import TestWorker

from worker.admin import AdminClient, AdminServer
from worker.errors import BadRequest, InstallError, NoWorkerRunning
from worker.settings import load_settings


@pytest.fixture
async def worker() -> TestWorker:
    return TestWorker()


@pytest.fixture
async def server(worker: TestWorker) -> AsyncIterator[AdminServer]:
    server = AdminServer(worker, load_settings().admin_socket)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def client(server: AdminServer) -> AdminClient:
    return AdminClient.for_settings(load_settings())


async def _wait_for_subscribers(worker: TestWorker, count: int) -> None:
    for _ in range(200):
        if worker.events.subscriber_count >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the event stream never subscribed")


def test_the_checker_catches_contract_violations() -> None:
    good = TestWorker().status()
    assert check_status_document(good) == []
    bad = TestWorker().status()
    del bad["requests"]["failed"]
    bad["worker"]["state"] = "sleeping"
    bad["gpus"][0]["memory_total"] = "80 GB"
    del bad["backends"][0]["capabilities"]["images"]
    assert sorted(check_status_document(bad)) == sorted(
        [
            "requests.failed is missing",
            "worker.state 'sleeping' is not one of "
            "['connected', 'connecting', 'draining', 'offline']",
            "gpus[0].memory_total has the wrong type: '80 GB'",
            "backends[0].capabilities.images is missing",
        ]
    )


async def test_status_document_matches_the_contract(client: AdminClient) -> None:
    document = await client.status()
    assert check_status_document(document) == []
    assert document["worker"]["state"] == "connected"
    assert document["requests"]["tokens_per_s"] == 41.5, "extra keys pass through"


async def test_ping_names_the_worker_process(client: AdminClient) -> None:
    import os

    assert (await client.ping())["pid"] == os.getpid()


async def test_install_progress_events_arrive_in_order_over_the_socket(
    client: AdminClient, worker: TestWorker
) -> None:
    received: list[dict] = []

    async def collect() -> None:
        async for event in client.events({"install"}):
            received.append(event)
            if event["phase"] in {"done", "failed", "cancelled"}:
                return

    collector = asyncio.create_task(collect())
    await _wait_for_subscribers(worker, 1)
    worker.events.publish("gpu", gpus=[])  # filtered out by kinds
    job = await client.install("qwen3.6:27b", "pendra")
    await asyncio.wait_for(collector, 10)

    assert job["ref"] == "qwen3.6:27b" and job["phase"] == "queued"
    assert [(e["phase"], e["bytes_done"]) for e in received] == [
        ("downloading", 1000),
        ("downloading", 2000),
        ("downloading", 3000),
        ("downloading", 4000),
        ("done", 4000),
    ]
    assert {e["kind"] for e in received} == {"install"}
    assert all(
        set(e) >= {"ref", "backend", "bytes_total", "rate_bps", "eta_s", "error", "ts"}
        for e in received
    )
    status = await client.status()
    assert {"id": "qwen3.6:27b", "context_length": 4096} in status["backends"][0]["models"]


async def test_unfiltered_stream_carries_every_kind(
    client: AdminClient, worker: TestWorker
) -> None:
    async with client.event_stream() as stream:
        await _wait_for_subscribers(worker, 1)
        worker.events.publish("state", state="offline")
        worker.events.publish("gpu", gpus=[{"index": 0}])
        worker.events.publish("requests", in_flight=0, served=1, failed=0, tokens_per_s=0.0)
        kinds = []
        async for event in stream:
            kinds.append(event["kind"])
            if len(kinds) == 3:
                break
    assert kinds == ["state", "gpu", "requests"]


async def test_same_install_twice_shares_one_job(client: AdminClient) -> None:
    first = await client.install("qwen3.6:27b")
    second = await client.install("qwen3.6:27b")
    assert first["id"] == second["id"]


async def test_cancel_install(client: AdminClient, worker: TestWorker) -> None:
    worker.step_s = 5.0
    job = await client.install("big:70b")
    cancelled = await client.cancel_install(job["id"])
    assert cancelled["phase"] == "cancelled"


async def test_worker_errors_cross_the_socket_with_class_message_and_hint(
    client: AdminClient,
) -> None:
    with pytest.raises(InstallError) as caught:
        await client.cancel_install("job/../nope")
    assert caught.value.message == "No install job 'job/../nope'."
    assert caught.value.hint == "see `pendra status`"
    with pytest.raises(BadRequest, match="not a model reference"):
        await client.install("no-tag")
    with pytest.raises(InstallError, match="is not installed"):
        await client.uninstall("never:1b")


async def test_uninstall_refresh_drain(client: AdminClient, worker: TestWorker) -> None:
    assert (await client.uninstall("gemma3:270m"))["removed"] is True
    assert worker.models["pendra"] == []
    refreshed = await client.refresh_backends()
    assert [b["name"] for b in refreshed["backends"]] == ["pendra", "ollama"]
    assert worker.refreshes == 1
    assert (await client.drain()) == {"state": "draining"}
    assert (await client.status())["worker"]["state"] == "draining"


async def test_logs_tail_comes_from_the_worker(client: AdminClient, worker: TestWorker) -> None:
    import logging

    logger = logging.getLogger("pendra.test.tail")
    logger.addHandler(worker.log_handler)
    logger.setLevel(logging.INFO)
    try:
        for i in range(5):
            logger.info("line %d", i)
    finally:
        logger.removeHandler(worker.log_handler)
    lines = await client.logs(3)
    assert [line.rsplit(" ", 1)[-1] for line in lines] == ["2", "3", "4"]
    assert "INFO" in lines[0] and "pendra.test.tail" in lines[0]
    assert await client.logs(0) == []


async def test_bad_requests_get_clear_errors(server: AdminServer) -> None:
    import aiohttp

    connector = aiohttp.UnixConnector(path=str(server.socket_path))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post("http://w/v1/installs", data=b"{not json") as response:
            assert response.status == 400
            assert (await response.json())["error"]["message"] == "the request body is not JSON"
        async with session.post("http://w/v1/installs", json={"backend": "pendra"}) as response:
            assert (await response.json())["error"]["message"].startswith("ref is required")
        async with session.get("http://w/v1/logs?tail=lots") as response:
            assert response.status == 400
        async with session.get("http://w/v1/requests?limit=-1") as response:
            assert response.status == 400
            assert (await response.json())["error"]["message"] == "limit must be 0 or more, not -1"
        async with session.get("http://w/v1/nothing") as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "not_found"


async def test_a_crashing_target_is_a_500_with_a_pointer_to_the_logs(
    client: AdminClient, worker: TestWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> dict:
        raise RuntimeError("bug")

    monkeypatch.setattr(worker, "status", broken)
    with pytest.raises(Exception, match="failed while handling /v1/status") as caught:
        await client.status()
    assert "pendra logs" in str(caught.value)


async def test_event_stream_ends_with_no_worker_when_the_server_stops(
    worker: TestWorker,
) -> None:
    server = AdminServer(worker, load_settings().admin_socket)
    await server.start()
    client = AdminClient.for_settings(load_settings())

    async def follow() -> None:
        async for _ in client.events():
            pass

    follower = asyncio.create_task(follow())
    await _wait_for_subscribers(worker, 1)
    await asyncio.wait_for(server.stop(), 5)
    with pytest.raises(NoWorkerRunning):
        await asyncio.wait_for(follower, 5)
    assert worker.events.subscriber_count == 0, "the server dropped the subscription"


async def test_keepalives_are_sent_and_hidden(worker: TestWorker) -> None:
    server = AdminServer(worker, load_settings().admin_socket, keepalive_s=0.05)
    async with server:
        client = AdminClient.for_settings(load_settings())
        async with client.event_stream() as stream:
            await _wait_for_subscribers(worker, 1)
            await asyncio.sleep(0.2)  # several keepalives go by
            worker.events.publish("state", state="connected")
            event = await asyncio.wait_for(stream.__aiter__().__anext__(), 5)
    assert event["kind"] == "state"


async def test_no_worker_running_without_a_socket(pendra_home: Path) -> None:
    client = AdminClient.for_settings(load_settings())
    with pytest.raises(NoWorkerRunning) as caught:
        await client.status()
    assert "No Pendra worker is running" in str(caught.value)
    assert "pendra --no-ui" in str(caught.value)
    with pytest.raises(NoWorkerRunning):
        async for _ in client.events():
            pass


async def test_no_worker_running_on_a_stale_socket(pendra_home: Path) -> None:
    import socket

    path = load_settings().admin_socket
    path.parent.mkdir(parents=True)
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(path))  # bound, never listening, then closed: a crashed worker's socket
    leftover.close()
    with pytest.raises(NoWorkerRunning):
        await AdminClient(path).status()


def test_an_error_code_shared_by_two_classes_is_rebuilt_as_the_general_one() -> None:
    """Whichever modules are imported, a code maps to the class nearest PendraError."""
    from worker.admin import wire
    from worker.errors import BadRequest, PendraError

    class ModuleOwnBadInput(PendraError):  # a later module's 400, sharing BadRequest's code
        code = "invalid_request_error"

    error = wire.error_from_body({"error": {"code": "invalid_request_error", "message": "m"}}, 400)
    assert type(error) is BadRequest and ModuleOwnBadInput.code == BadRequest.code

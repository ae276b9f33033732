"""Bad keys, version mismatches and bad frames, in both directions: clear errors, no crash."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import aiohttp
import openai
import pytest
from link_fakes import FAKE_MODEL, FakeBackend, RunningWorker, Sandbox, start_sandbox, wait_for

from worker.keys import generate_key
from worker.link import AuthRejected, UpgradeRequired
from worker.protocol import (
    MAX_FRAME_BYTES,
    WORKER_PATH,
    Auth,
    ErrorFrame,
    Hardware,
    Hello,
    Request,
    audience,
    auth_transcript,
    parse_server_frame,
)
from worker.runtime import Worker
from worker.sandbox.hub import Channel

pytestmark = pytest.mark.timeout(60)


def _worker(sandbox: Sandbox, key=None, **kwargs) -> Worker:  # type: ignore[no-untyped-def]
    from link_fakes import worker_settings

    return Worker(
        worker_settings(sandbox.url), key or sandbox.key, backends=[FakeBackend()], **kwargs
    )


async def test_wrong_key_is_final_without_retries(sandbox: Sandbox) -> None:
    worker = _worker(sandbox, key=generate_key())
    with pytest.raises(AuthRejected) as info:
        await asyncio.wait_for(worker.run(), 30)
    assert sandbox.hub.auth_failures == 1  # one attempt, no retry storm
    assert info.value.exit_code == 5
    assert "pendra key set" in str(info.value)


async def test_unsupported_protocol_version_is_final() -> None:
    box = await start_sandbox(versions=(2,))
    try:
        with pytest.raises(UpgradeRequired) as info:
            await asyncio.wait_for(_worker(box).run(), 10)
        assert info.value.exit_code == 6
        assert "upgrade" in str(info.value).lower()
    finally:
        await box.stop()


async def test_worker_speaking_only_a_newer_version_gets_upgrade(sandbox: Sandbox) -> None:
    with pytest.raises(UpgradeRequired):
        await asyncio.wait_for(_worker(sandbox, supported_versions=(9,)).run(), 10)


async def _raw_handshake(
    sandbox: Sandbox, http: aiohttp.ClientSession, *, protocol: int = 1
) -> aiohttp.ClientWebSocketResponse:
    url = sandbox.url.replace("http", "ws") + WORKER_PATH
    ws = await http.ws_connect(url)
    challenge = parse_server_frame((await ws.receive()).data)
    key = sandbox.key
    signature = key.sign(
        auth_transcript(
            protocol=protocol,
            nonce=challenge.nonce,  # type: ignore[attr-defined]
            server_id=challenge.server_id,  # type: ignore[attr-defined]
            public_key=key.public_key,
            audience=audience(url),
        )
    )
    auth = Auth(
        protocol=protocol, public_key=key.public_key, signature=signature, worker_version="t"
    )
    await ws.send_str(auth.dump())
    hello = Hello(worker_version="t", protocol=protocol, hardware=Hardware(os="linux", arch="x"))
    await ws.send_str(hello.dump())
    return ws


async def test_control_plane_refuses_unsupported_version_in_auth(sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await _raw_handshake(sandbox, http, protocol=7)
        reply = parse_server_frame((await ws.receive()).data)
        assert isinstance(reply, ErrorFrame) and reply.code == "upgrade_required"
        await ws.receive()
        assert ws.closed and ws.close_code == 4426


async def test_replayed_signature_for_another_endpoint_is_refused(sandbox: Sandbox) -> None:
    """A signature made for another host (a phishing control plane) does not verify here."""
    async with aiohttp.ClientSession() as http:
        url = sandbox.url.replace("http", "ws") + WORKER_PATH
        ws = await http.ws_connect(url)
        challenge = parse_server_frame((await ws.receive()).data)
        signature = sandbox.key.sign(
            auth_transcript(
                protocol=1,
                nonce=challenge.nonce,  # type: ignore[attr-defined]
                server_id=challenge.server_id,  # type: ignore[attr-defined]
                public_key=sandbox.key.public_key,
                audience=audience("wss://evil.example" + WORKER_PATH),
            )
        )
        await ws.send_str(
            Auth(
                protocol=1,
                public_key=sandbox.key.public_key,
                signature=signature,
                worker_version="t",
            ).dump()
        )
        reply = parse_server_frame((await ws.receive()).data)
        assert isinstance(reply, ErrorFrame) and reply.code == "auth_failed"
    assert sandbox.hub.auth_failures == 1


async def test_control_plane_answers_malformed_worker_frames(sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await _raw_handshake(sandbox, http)
        welcome = json.loads((await ws.receive()).data)
        assert welcome["type"] == "welcome"
        for bad, code in (
            ("{not json", "malformed_frame"),
            ('{"type": "teleport"}', "unknown_frame"),
            ('{"type": "chunk", "id": "r1"}', "malformed_frame"),
        ):
            await ws.send_str(bad)
            reply = parse_server_frame((await ws.receive()).data)
            assert isinstance(reply, ErrorFrame) and reply.code == code
        assert len(sandbox.hub.workers) == 1  # still connected
        await ws.close()


async def test_worker_answers_bad_frames_and_keeps_serving(
    sandbox: Sandbox, running: RunningWorker
) -> None:
    connection = next(iter(sandbox.hub.workers.values()))
    for bad in ("{oops", "[1, 2]", '{"type": "warp"}'):
        await connection.send(bad)
    await connection.ws.send_bytes(b"\x00\x01")
    await wait_for(lambda: len(connection.reported_errors) >= 4, what="four error replies")
    codes = [e.code for e in connection.reported_errors]
    assert codes == ["malformed_frame", "malformed_frame", "unknown_frame", "malformed_frame"]

    # An unknown request kind is answered on that request's id.
    channel = Channel(connection, "r-video")
    connection.channels["r-video"] = channel
    await connection.send(
        '{"type": "request", "id": "r-video", "kind": "video", "body": {"model": "m"}}'
    )
    reply = await channel.next(5)
    assert isinstance(reply, ErrorFrame) and reply.code == "unknown_request_kind"
    channel.finished = True
    await channel.close()  # frees the slot: the worker runs one request at a time by default

    api = openai.AsyncOpenAI(base_url=sandbox.url + "/v1", api_key=sandbox.api_key, max_retries=0)
    ok = await api.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "still"}], max_tokens=1
    )
    assert ok.choices[0].message.content == "still-0"
    assert running.worker.link is not None and running.worker.link.connections == 1
    await api.close()


async def test_oversized_frame_to_worker_drops_the_link_then_it_reconnects(
    sandbox: Sandbox, running: RunningWorker
) -> None:
    connection = next(iter(sandbox.hub.workers.values()))
    huge = Request(id="big", kind="chat", body={"model": FAKE_MODEL, "pad": "x" * MAX_FRAME_BYTES})
    # The worker closes the socket (1009, message too big) while the frame is still being sent.
    with contextlib.suppress(ConnectionError):
        await connection.send(huge.dump())
    await wait_for(lambda: running.worker.link.connections == 2, 15, "the reconnect")  # type: ignore[union-attr]
    api = openai.AsyncOpenAI(base_url=sandbox.url + "/v1", api_key=sandbox.api_key, max_retries=0)
    ok = await api.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "ok"}], max_tokens=1
    )
    assert ok.choices[0].message.content == "ok-0"
    await api.close()


async def test_response_over_the_frame_limit_is_an_error_not_a_crash(
    sandbox: Sandbox, running: RunningWorker
) -> None:
    assert running.worker.link is not None and running.worker.link.session is not None
    running.worker.link.session.max_frame_bytes = 2000
    api = openai.AsyncOpenAI(base_url=sandbox.url + "/v1", api_key=sandbox.api_key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        await api.chat.completions.create(
            model=FAKE_MODEL, messages=[{"role": "user", "content": "big"}], max_tokens=400
        )
    assert info.value.status_code == 502 and "exceeds" in str(info.value)
    running.worker.link.session.max_frame_bytes = MAX_FRAME_BYTES
    ok = await api.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "small"}], max_tokens=2
    )
    assert ok.choices[0].message.content == "small-0 small-1"
    await api.close()


async def test_no_tasks_leak_after_a_worker_stops(sandbox: Sandbox) -> None:
    from link_fakes import start_worker

    before = {t for t in asyncio.all_tasks()}
    worker = await start_worker(sandbox, FakeBackend(words=3))
    api = openai.AsyncOpenAI(base_url=sandbox.url + "/v1", api_key=sandbox.api_key, max_retries=0)
    stream = await api.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "t"}], stream=True
    )
    async for _ in stream:
        pass
    await api.close()
    assert await worker.stop() == 0

    def leftovers() -> list[str]:
        left = {t for t in asyncio.all_tasks() if t not in before and not t.done()}
        names = [t.get_coro().__qualname__ for t in left]  # type: ignore[union-attr]
        return [n for n in names if n.startswith(("Session", "LinkClient", "Worker", "pump"))]

    deadline = time.monotonic() + 10  # tasks cancelled by stop() finish on their next turn
    while leftovers():
        assert time.monotonic() < deadline, leftovers()
        await asyncio.sleep(0.01)

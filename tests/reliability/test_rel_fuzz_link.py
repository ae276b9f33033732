"""Bad input on the link: fuzzed, mutated, malformed and oversized control-plane frames.

Two layers. The parsers (``parse_server_frame``/``parse_worker_frame``) get arbitrary text and
mutated valid frames from hypothesis and may raise nothing but ``FrameError``. Then the same kind
of frames go, over the real WebSocket, from the real sandbox hub into a real connected Worker: the
worker must answer what it cannot use with ``error`` frames, keep the same connection (no crash,
no reconnect), and still serve a real request afterwards. Oversized frames (past the 16 MiB limit)
may cost the connection, never the worker: it reconnects.

Hypothesis runs with a bounded number of examples and no deadline so the file stays well inside
the suite's time budget on two cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import (
    RunningWorker,
    Sandbox,
    chat_body,
    echo_of,
    start_sandbox,
    start_worker,
    stream_chat,
    wait_for,
)

from tests.emulators import VllmEmulator
from worker.protocol import (
    MAX_FRAME_BYTES,
    Drain,
    FrameError,
    parse_server_frame,
    parse_worker_frame,
)

pytestmark = pytest.mark.timeout(180)
MODEL = "fuzz-model"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

VALID_SERVER_FRAMES: list[dict[str, Any]] = [
    {
        "type": "request",
        "id": "fz1",
        "kind": "chat",
        "stream": True,
        "body": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    },
    {
        "type": "request",
        "id": "fz2",
        "kind": "chat",
        "body": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    },
    {"type": "request", "id": "fz3", "kind": "embeddings", "body": {"model": MODEL, "input": "x"}},
    {
        "type": "request",
        "id": "fz4",
        "kind": "transcription",
        "body": {"model": MODEL},
        "file": {"name": "a.wav", "data_b64": "UklGRg=="},
    },
    {"type": "request", "id": "fz5", "kind": "images", "body": {"model": MODEL, "prompt": "p"}},
    {"type": "cancel", "id": "fz1"},
    {"type": "install", "id": "fz6", "ref": "tiny:1m", "backend": "vllm"},
    {"type": "uninstall", "id": "fz7", "ref": "tiny:1m"},
    {"type": "ping", "ts": 1.5},
    {"type": "error", "code": "x", "message": "y"},
    {"type": "welcome", "worker_id": "w", "session_id": "s"},
    {"type": "challenge", "versions": [1], "nonce": "n" * 16, "server_id": "s"},
]
WORKER_FRAME_TYPES = [
    "auth",
    "hello",
    "heartbeat",
    "pong",
    "status",
    "start",
    "chunk",
    "end",
    "response",
    "install_progress",
    "install_done",
    "draining",
    "error",
]


@st.composite
def mutated_frames(draw: st.DrawFn) -> dict[str, Any]:
    frame = dict(draw(st.sampled_from(VALID_SERVER_FRAMES)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["drop", "replace", "add", "retype"]))
        keys = sorted(frame)
        if op == "drop" and keys:
            frame.pop(draw(st.sampled_from(keys)))
        elif op == "replace" and keys:
            frame[draw(st.sampled_from(keys))] = draw(json_values)
        elif op == "add":
            frame[draw(st.text(max_size=10))] = draw(json_values)
        else:
            frame["type"] = draw(
                st.sampled_from(["request", "cancel", "install", "ping", "hello", "", "REQUEST"])
                | st.text(max_size=12)
            )
    return frame


def frame_texts() -> st.SearchStrategy[str]:
    return st.one_of(
        mutated_frames().map(json.dumps),
        json_values.map(json.dumps),
        st.text(max_size=200),
        st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
    )


# -- the parsers ------


@settings(max_examples=600, deadline=None)
@given(text=frame_texts())
def test_parsers_raise_only_frame_error(text: str) -> None:
    for parse in (parse_server_frame, parse_worker_frame):
        try:
            frame = parse(text)
        except FrameError as exc:
            assert exc.code and exc.message
            assert exc.request_id is None or len(exc.request_id) <= 64
        else:
            assert frame.type  # a frame that parses is a typed model


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(WORKER_FRAME_TYPES),
    body=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
)
def test_worker_frame_parser_with_random_fields(kind: str, body: dict[str, Any]) -> None:
    with contextlib.suppress(FrameError):
        parse_worker_frame(json.dumps({**body, "type": kind}))


def test_parsers_refuse_oversized_and_non_object_frames() -> None:
    for text, code in (
        ("x" * (MAX_FRAME_BYTES + 1), "frame_too_large"),
        ("[1, 2]", "malformed_frame"),
        ('"request"', "malformed_frame"),
        ("{", "malformed_frame"),
        ('{"type": "request", "id": "../../etc", "kind": "chat"}', "malformed_frame"),
        ('{"type": "request", "id": "ok", "kind": "shell"}', "unknown_request_kind"),
        ('{"type": 7}', "unknown_frame"),
    ):
        with pytest.raises(FrameError) as caught:
            parse_server_frame(text)
        assert caught.value.code == code, text[:60]


# -- the real link ------


@dataclass
class Rig:
    loop: asyncio.AbstractEventLoop
    emulator: VllmEmulator
    sandbox: Sandbox
    running: RunningWorker
    client: httpx.AsyncClient

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 60))

    @property
    def connection(self) -> Any:
        return next(iter(self.sandbox.hub.workers.values()))


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    """One sandbox + worker for every fuzz example (hypothesis calls the test many times)."""
    loop = asyncio.new_event_loop()

    async def setup() -> Rig:
        emulator = VllmEmulator(models=[MODEL])
        await emulator.start()
        sandbox = await start_sandbox()
        running = await start_worker(sandbox, {"vllm": emulator.url}, {MODEL})
        return Rig(loop, emulator, sandbox, running, httpx.AsyncClient(timeout=30))

    rig = loop.run_until_complete(setup())
    yield rig

    async def teardown() -> None:
        await rig.client.aclose()
        assert await rig.running.stop() == 0
        await rig.sandbox.stop()
        await rig.emulator.stop()

    loop.run_until_complete(teardown())
    loop.close()


async def _still_serving(rig: Rig, note: str) -> None:
    result = await stream_chat(rig.client, rig.sandbox.url, chat_body(MODEL, note))
    assert result.done and result.text == echo_of(note), result


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(texts=st.lists(frame_texts(), min_size=1, max_size=8))
def test_fuzzed_frames_into_the_real_link_never_break_it(rig: Rig, texts: list[str]) -> None:
    link = rig.running.worker.link
    assert link is not None

    async def inject() -> None:
        connections = link.connections
        connection = rig.connection
        for text in texts:
            try:
                if isinstance(parse_server_frame(text), Drain):
                    continue  # a valid drain stops the worker, by design: tested elsewhere
            except FrameError:
                pass
            await connection.send(text)
        # A marker frame after the batch: its error reply proves the worker read every frame
        # before it (frames are handled in order) and is still answering on this connection.
        marker = f"sync-{id(texts)}-{len(connection.reported_errors)}"
        await connection.send(json.dumps({"type": marker}))
        await wait_for(
            lambda: any(marker in e.message for e in connection.reported_errors),
            "the worker's answer to the marker frame",
        )
        assert link.connections == connections, "a bad frame cost the connection"
        assert rig.connection is connection
        assert not rig.running.task.done()

    rig.run(inject())


def test_after_fuzzing_the_worker_still_serves_and_said_why_it_refused(rig: Rig) -> None:
    link = rig.running.worker.link
    assert link is not None

    async def check() -> None:
        connection = rig.connection
        connection.reported_errors.clear()  # a bounded deque: make room to count the replies
        before = 0
        await connection.send("{not json")
        await connection.send('{"type":"request","id":"a1","kind":"chat","body":"nope"}')
        await rig.connection.ws.send_bytes(b"\x00binary")
        await wait_for(
            lambda: len(connection.reported_errors) >= before + 2, "error replies from the worker"
        )
        codes = [e.code for e in list(connection.reported_errors)[before:]]
        assert "malformed_frame" in codes, codes
        await _still_serving(rig, "after the fuzz")

    rig.run(check())


def test_oversized_frames_cost_at_most_the_connection(rig: Rig) -> None:
    link = rig.running.worker.link
    assert link is not None

    async def check() -> None:
        # 1 MiB of junk inside the limit: an error reply, same connection.
        connection = rig.connection
        connections = link.connections
        connection.reported_errors.clear()
        before = 0
        await connection.send(
            '{"type":"request","kind":"chat","body":{"x":"' + "a" * (1 << 20) + '"}}'
        )
        await wait_for(lambda: len(connection.reported_errors) > before, "an error reply")
        assert link.connections == connections
        # Past the 16 MiB limit: aiohttp refuses the message and closes; the worker reconnects.
        with contextlib.suppress(ConnectionError):  # the worker hangs up mid-frame (1009)
            await connection.send("x" * (MAX_FRAME_BYTES + 1024))
        await wait_for(
            lambda: link.connections > connections and bool(rig.sandbox.hub.workers),
            "the worker to reconnect after an oversized frame",
            timeout_s=20,
        )
        assert not rig.running.task.done()
        await _still_serving(rig, "after the oversized frame")

    rig.run(check())

"""Fault: the backend process dies (SIGKILL) in the middle of a streamed completion.

The backend is the vLLM emulator running as its own OS process (a real server on 127.0.0.1 that
the test kills with SIGKILL, like the OOM killer would); the sandbox, link, router and Worker are
the real ones in this process. The client must get an SSE ``error`` event (never a hang, never a
silently truncated "success"), the worker must stay up, and once the backend is back on the same
port the next request must work.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from reliability_support import (
    chat_body,
    echo_of,
    start_sandbox,
    start_worker,
    stream_chat,
    unary_chat,
)

pytestmark = pytest.mark.timeout(90)
HERE = Path(__file__).resolve().parent
MODEL = "killme-model"


def spawn_emulator(port: int, delay_s: float) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "reliability_emulator_proc.py"),
            "vllm",
            str(port),
            MODEL,
            str(delay_s),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        raise AssertionError(f"emulator did not start: {line!r}")
    return proc, int(line.split()[1])


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def test_backend_sigkill_mid_stream_gives_an_error_event_and_the_next_request_works(
    procs: list[subprocess.Popen[str]],
) -> None:
    first, port = spawn_emulator(0, delay_s=0.02)
    procs.append(first)
    sandbox = await start_sandbox()
    running = await start_worker(sandbox, {"vllm": f"http://127.0.0.1:{port}"}, {MODEL})
    words = " ".join(f"w{i}" for i in range(400))  # ~8 s of stream at 20 ms a chunk
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            # A clean request first, so the backend's session has a pooled keep-alive connection
            # that the kill leaves dead: the next request must not trip over it.
            ok = await unary_chat(client, sandbox.url, MODEL, "warm up")
            assert ok.status_code == 200, ok.text

            killed = asyncio.Event()

            def kill_after_five(n: int) -> None:
                if n == 5 and not killed.is_set():
                    os.kill(first.pid, signal.SIGKILL)
                    killed.set()

            result = await asyncio.wait_for(
                stream_chat(client, sandbox.url, chat_body(MODEL, words), on_chunk=kill_after_five),
                timeout=30,
            )
            first.wait(timeout=10)
            assert killed.is_set()
            assert result.status == 200
            assert not result.done, "a cut-off stream must not end with [DONE]"
            assert result.error is not None, "the client must get an error event"
            assert result.error["code"] == "backend_unavailable", result.error
            assert "vllm" in result.error["message"]
            assert 5 <= result.chunks < 400
            assert not running.task.done(), "the worker must stay up"
            counters = running.worker.router.counters()
            assert counters.in_flight == 0 and counters.failed >= 1

            # While the backend is down: a clear 503 with the backend named, not a hang.
            down = await unary_chat(client, sandbox.url, MODEL, "anyone there")
            assert down.status_code == 503, down.text
            assert "vllm" in down.json()["error"]["message"]

            # The backend comes back on the same port: the next request works, streamed and not.
            second, _ = spawn_emulator(port, delay_s=0.0)
            procs.append(second)
            again = await stream_chat(client, sandbox.url, chat_body(MODEL, "back again"))
            assert again.error is None, again.error
            assert again.done and again.text == echo_of("back again")
            plain = await unary_chat(client, sandbox.url, MODEL, "and again")
            assert plain.status_code == 200, plain.text
            assert plain.json()["choices"][0]["message"]["content"] == echo_of("and again")
            assert running.worker.router.counters().in_flight == 0
    finally:
        assert await running.stop() == 0
        await sandbox.stop()

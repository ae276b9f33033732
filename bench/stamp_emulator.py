"""A vLLM emulator (tests/emulators) whose streamed tokens carry the time they were sent.

Run in its own process so it never shares an event loop or the GIL with the client or the worker::

    python -m bench.stamp_emulator          # prints "ready http://127.0.0.1:PORT", then serves

Every word ``@@`` of the last user message becomes one content chunk; the ``@@`` is replaced, at
the moment the chunk is written, by ``time.monotonic_ns()`` (one clock for every process on the
machine), so a client can compute each chunk's latency. A word ``pace=<microseconds>`` in the
message spaces the chunks that far apart (absolute schedule, no drift); without it they go out as
fast as the server can write them.

A word ``@T`` makes the first content chunk carry two stamps instead of ``Echo:``:
``T<arrived>:<written>``, the time the request reached the emulator (its first middleware) and the
time that chunk was written — what the time-to-first-token bench splits the path with.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.emulators.vllm import VllmEmulator  # noqa: E402

STAMP = b"@@"
FIRST = b"Echo:"
_PACE = re.compile(r"\bpace=(\d+)\b")
ARRIVED = "stamp_arrived_ns"


def last_user_text(body: Any) -> str:
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def pace_us(body: Any) -> int:
    """The ``pace=<µs>`` of the last user message, 0 when absent (pure)."""
    found = _PACE.search(last_user_text(body))
    return int(found.group(1)) if found else 0


@web.middleware
async def stamp_arrival(request: web.Request, handler: Any) -> web.StreamResponse:
    request[ARRIVED] = time.monotonic_ns()
    return await handler(request)


class StampingVllmEmulator(VllmEmulator):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app.middlewares.insert(0, stamp_arrival)

    async def stream_lines(
        self,
        request: web.Request,
        lines: Any,
        *,
        content_type: str,
        prefix: str = "",
        suffix: str = "\n",
    ) -> web.StreamResponse:
        body = await request.json()  # aiohttp caches the body
        interval_ns = pace_us(body) * 1000
        first_pending = "@T" in last_user_text(body).split()
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        start = time.monotonic_ns()
        for i, text in enumerate(lines):
            if interval_ns:
                delay = (start + i * interval_ns - time.monotonic_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
            data = f"{prefix}{text}{suffix}".encode()
            if first_pending and FIRST in data:
                first_pending = False
                stamps = f"T{request[ARRIVED]}:{time.monotonic_ns()}"
                data = data.replace(FIRST, stamps.encode())
            if STAMP in data:
                data = data.replace(STAMP, str(time.monotonic_ns()).encode())
            await response.write(data)
        await response.write_eof()
        self.streams_completed += 1
        return response


async def _serve() -> None:
    emulator = StampingVllmEmulator(models=["emu-model"])
    url = await emulator.start(port=0)
    print(f"ready {url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve())

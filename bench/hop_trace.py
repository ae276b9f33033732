"""Run ``pendra sandbox`` or ``pendra --no-ui`` with timing probes on the streamed-chat path.

    python -m bench.hop_trace OUT.trace -- sandbox --port 8787 …
    python -m bench.hop_trace OUT.trace -- --no-ui

The probes are installed from outside (wrapping a few functions before the command starts), so
the product carries no timing code; each records ``time.monotonic_ns()`` — one clock for every
process on the machine — and a label, and the list is written to ``OUT.trace`` when the process
exits (SIGTERM drains and exits normally). The bench matches the records to its own requests by
time: it sends one request at a time.

What is recorded (for the first content chunk, the one carrying the stamping emulator's
``T<arrived>:<written>`` marker):

* sandbox: ``sandbox.request_in`` (the chat handler starts), ``sandbox.frame_out`` (the request
  frame is on the WebSocket), ``sandbox.first_in`` (the frame carrying the first content arrives),
  ``sandbox.first_out`` (that chunk is written to the client's SSE stream);
* worker: ``worker.frame_in`` (a frame arrives on the link), ``worker.first_from_backend`` (the
  backend's stream yields the first content chunk), ``worker.first_out`` (the frame carrying it is
  handed to the WebSocket).
"""

from __future__ import annotations

import atexit
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MARKER = re.compile(r"T\d+:\d+")
RECORDS: list[tuple[int, str]] = []


def probe(label: str) -> None:
    RECORDS.append((time.monotonic_ns(), label))


def _has_marker(data: Any) -> bool:
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8", "replace")
    return isinstance(data, str) and MARKER.search(data) is not None


def _before(func: Callable[..., Any], label: str, only_marked: bool = False) -> Any:
    """``func`` (async) with a probe when it is called (with the marker in an argument)."""

    async def traced(*args: Any, **kwargs: Any) -> Any:
        if not only_marked or any(_has_marker(a) for a in args):
            probe(label)
        return await func(*args, **kwargs)

    return traced


def install_sandbox_probes() -> None:
    from aiohttp import web

    from worker.sandbox import hub, ingress

    original_open = hub.WorkerConnection.open

    async def open_traced(self: Any, frame: Any) -> Any:
        channel = await original_open(self, frame)
        probe("sandbox.frame_out")
        return channel

    hub.WorkerConnection.open = open_traced  # type: ignore[method-assign]
    ingress.chat_completions = _before(ingress.chat_completions, "sandbox.request_in")
    hub.WorkerHub._on_text = _before(  # type: ignore[method-assign]
        hub.WorkerHub._on_text, "sandbox.first_in", only_marked=True
    )
    original_write = web.StreamResponse.write

    async def write_traced(self: Any, data: Any) -> None:
        await original_write(self, data)
        if _has_marker(data):
            probe("sandbox.first_out")

    web.StreamResponse.write = write_traced  # type: ignore[method-assign]


def install_worker_probes() -> None:
    from worker.backends.openai_compat import OpenAICompatBackend
    from worker.link.session import Session

    Session._on_text = _before(Session._on_text, "worker.frame_in")  # type: ignore[method-assign]
    Session.send = _before(Session.send, "worker.first_out", only_marked=True)  # type: ignore[method-assign]
    original_together = getattr(Session, "send_together", None)
    if original_together is not None:  # several frames in one write (see worker.link.cork)

        async def together_traced(self: Any, texts: Any) -> None:
            if any(_has_marker(text) for text in texts):
                probe("worker.first_out")
            await original_together(self, texts)

        Session.send_together = together_traced  # type: ignore[attr-defined]
    original_relay = OpenAICompatBackend.relay_sse

    async def relay_traced(self: Any, url: str, body: dict[str, Any]) -> AsyncIterator[Any]:
        stream = original_relay(self, url, body)
        try:
            async for chunk in stream:
                if _has_marker(chunk.json):
                    probe("worker.first_from_backend")
                yield chunk
        finally:
            await stream.aclose()

    OpenAICompatBackend.relay_sse = relay_traced  # type: ignore[method-assign]


def read_trace(path: Path) -> list[tuple[int, str]]:
    """The records a traced process wrote (pure apart from reading the file)."""
    out = []
    for line in path.read_text().splitlines():
        stamp, _, label = line.partition(" ")
        if stamp.isdigit() and label:
            out.append((int(stamp), label))
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] != "--":
        print("usage: python -m bench.hop_trace OUT.trace -- PENDRA-ARGS…", file=sys.stderr)
        return 2
    out, args = Path(argv[0]), argv[2:]

    def dump() -> None:
        out.write_text("".join(f"{stamp} {label}\n" for stamp, label in RECORDS))

    atexit.register(dump)
    if args and args[0] == "sandbox":
        install_sandbox_probes()
    else:
        install_worker_probes()
    from worker.cli import main as pendra

    return pendra(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

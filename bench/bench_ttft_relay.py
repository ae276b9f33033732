"""Time to first token through the relay, split into hops, vs the same request sent directly.

The official ``openai`` client (sync, one request at a time) streams a chat completion from the
stamping vLLM emulator (its own process), alternately:

* direct:  client → emulator
* relayed: client → ``pendra sandbox`` ingress → WSS → ``pendra --no-ui`` → emulator, and back

TTFT is from the call to the first chunk with content, as the client sees it. The emulator writes
into that chunk when the request reached it and when the chunk was written; the sandbox and the
worker run under :mod:`bench.hop_trace`, whose probes stamp each hop of the relayed path. All stamps
are ``time.monotonic_ns()``, one clock for every process on the machine. Each hop is the median
over the requests of that hop's own duration (so the hops need not add up to the TTFT median).

    .venv/bin/python bench/bench_ttft_relay.py [--quick] [--requests 300]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import cli_args  # noqa: E402
from bench.emulator_proc import EmulatorProcess  # noqa: E402
from bench.hop_trace import read_trace  # noqa: E402
from bench.report import Row, Section  # noqa: E402
from bench.stack import API_KEY, start_stack  # noqa: E402
from bench.stats import median, percentile  # noqa: E402

MODEL = "emu-model"
GOAL_ADDED_P50_MS = 3.0
BODY: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "@T one two three"}],
    "max_tokens": 8,
    "stream": True,
}

RELAY_HOPS = (
    ("client → sandbox ingress", "send", "sandbox.request_in"),
    ("sandbox: request → frame on the WebSocket", "sandbox.request_in", "sandbox.frame_out"),
    ("WebSocket → worker", "sandbox.frame_out", "worker.frame_in"),
    ("worker → backend (request in)", "worker.frame_in", "arrived"),
    ("backend: request in → first content written", "arrived", "written"),
    ("backend → worker (first content parsed)", "written", "worker.first_from_backend"),
    (
        "worker: first content → frame to the WebSocket",
        "worker.first_from_backend",
        "worker.first_out",
    ),
    ("WebSocket → sandbox", "worker.first_out", "sandbox.first_in"),
    ("sandbox: frame → SSE written", "sandbox.first_in", "sandbox.first_out"),
    ("SSE → client (first content parsed)", "sandbox.first_out", "first"),
)
DIRECT_HOPS = {
    "client → sandbox ingress": ("client → backend (request in)", "send", "arrived"),
    "backend: request in → first content written": (None, "arrived", "written"),
    "SSE → client (first content parsed)": ("backend → client", "written", "first"),
}


@dataclass
class Sample:
    """One request: client stamps and the emulator's stamps (``time.monotonic_ns()``)."""

    send: int
    first: int
    arrived: int
    written: int

    @property
    def ttft_ms(self) -> float:
        return (self.first - self.send) / 1e6


def parse_marker(content: str) -> tuple[int, int]:
    """``T<arrived>:<written>`` → the two stamps (pure)."""
    arrived, _, written = content.strip().removeprefix("T").partition(":")
    return int(arrived), int(written)


def first_token(client: Any) -> Sample:
    send = time.monotonic_ns()
    first = 0
    stamps = (0, 0)
    for chunk in client.chat.completions.create(**BODY):
        content = chunk.choices[0].delta.content if chunk.choices else None
        if content and not first:
            first = time.monotonic_ns()
            stamps = parse_marker(content)
    if not first:
        raise RuntimeError("the stream produced no content")
    return Sample(send, first, *stamps)


def stamps_of(sample: Sample, records: list[tuple[int, str]]) -> dict[str, int]:
    """The sample's own stamps plus the first record of each probe inside its window (pure;
    requests run one at a time, so a window holds one request's records)."""
    found: dict[str, int] = {
        "send": sample.send,
        "first": sample.first,
        "arrived": sample.arrived,
        "written": sample.written,
    }
    for stamp, label in records:
        if sample.send <= stamp <= sample.first and label not in found:
            found[label] = stamp
    return found


def hop_medians(stamps: list[dict[str, int]], hops: Any) -> list[tuple[str, float | None]]:
    """Each hop's median duration in ms over the requests that have both ends (pure)."""
    out = []
    for label, start, end in hops:
        durations = [(s[end] - s[start]) / 1e6 for s in stamps if start in s and end in s]
        out.append((label, median(durations) if durations else None))
    return out


def main(argv: list[str] | None = None) -> int:
    p = cli_args.parser(__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=300, help="requests per path (300)")
    args = p.parse_args(argv)
    if args.quick:
        args.requests = 5
    from openai import OpenAI

    trace_dir = Path(tempfile.mkdtemp(prefix="pendra-bench-trace-"))
    emulator = EmulatorProcess()
    stack = None
    direct: list[Sample] = []
    relayed: list[Sample] = []
    try:
        stack = start_stack(endpoints={"vllm": emulator.url}, builtin=False, trace_dir=trace_dir)
        stack.wait_for_models({MODEL})
        clients = (
            OpenAI(base_url=emulator.url + "/v1", api_key="unused", max_retries=0),
            OpenAI(base_url=stack.api, api_key=API_KEY, max_retries=0),
        )
        for _ in range(10 if not args.quick else 2):  # connections, imports, first-call paths
            for client in clients:
                first_token(client)
        for _ in range(args.requests):
            direct.append(first_token(clients[0]))
            relayed.append(first_token(clients[1]))
    finally:
        if stack is not None:
            stack.close()  # SIGTERM: the traced processes write their records as they exit
        emulator.stop()
    records = sorted(
        read_trace(trace_dir / "sandbox.trace") + read_trace(trace_dir / "worker.trace")
    )
    shutil.rmtree(trace_dir, ignore_errors=True)

    relay_stamps = [stamps_of(s, records) for s in relayed]
    direct_stamps = [stamps_of(s, []) for s in direct]
    relay_ttft = [s.ttft_ms for s in relayed]
    direct_ttft = [s.ttft_ms for s in direct]
    added = [r - d for r, d in zip(relay_ttft, direct_ttft, strict=True)]
    section = Section(
        title="Time to first token through the relay",
        intro=(
            f"The official `openai` client, streaming, one request at a time, {args.requests} "
            f"alternating requests per path after warm-up, from the vLLM emulator (its own "
            f"process). Relayed: client → sandbox → WSS → worker → emulator; direct: client → "
            f"emulator. Hops from `time.monotonic_ns()` stamps: the client's, the emulator's, and "
            f"the sandbox's and worker's probes (`bench/hop_trace.py`); each hop is the median of "
            f"its own durations."
        ),
        columns=("relayed", "direct"),
    )
    section.rows = [
        Row("TTFT p50", median(relay_ttft), median(direct_ttft), "ms", higher_is_better=False),
        Row(
            "TTFT p90",
            percentile(relay_ttft, 90),
            percentile(direct_ttft, 90),
            "ms",
            higher_is_better=False,
        ),
        Row(
            "added p50",
            median(relay_ttft) - median(direct_ttft),
            None,
            "ms",
            goal=GOAL_ADDED_P50_MS,
            higher_is_better=False,
        ),
        Row("added, median of pairs", median(added), None, "ms", higher_is_better=False),
    ]
    direct_by_label = dict(
        hop_medians(direct_stamps, [(k, a, b) for k, (_, a, b) in DIRECT_HOPS.items()])
    )
    for label, value in hop_medians(relay_stamps, RELAY_HOPS):
        base = direct_by_label.get(label)
        if value is None:
            continue
        name = label
        if label in DIRECT_HOPS and DIRECT_HOPS[label][0] is not None:
            name = f"{label} (direct: {DIRECT_HOPS[label][0]})"
        section.rows.append(Row(f"hop: {name}", value, base, "ms", higher_is_better=False))
    section.notes.append(
        "added, median of pairs: the median of (relayed − direct) over back-to-back pairs; the "
        "hops are per-request medians, so they need not add up to the TTFT difference"
    )
    section.publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

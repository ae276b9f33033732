"""Relay of an external backend's stream through the worker vs straight to the backend.

A vLLM emulator (tests/emulators, in its own process) streams many tiny chunks, each stamped with
the time it was written. The same client reads the same stream twice per round:

* direct:  client → emulator
* relayed: client → ``pendra sandbox`` ingress → WSS → ``pendra --no-ui`` → emulator

Two measurements: throughput (chunks/s, the emulator writing as fast as it can) and per-chunk
latency (send stamp → client arrival, with chunks paced so nothing queues; "added" is the relayed
percentile minus the direct one). Rounds alternate direct/relayed so drift hits both alike.

    .venv/bin/python bench/bench_relay.py [--quick] [--rounds N] [--chunks N] [--profile]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import cli_args  # noqa: E402
from bench.emulator_proc import EmulatorProcess  # noqa: E402
from bench.profiling import take_profiles  # noqa: E402
from bench.report import Row, Section  # noqa: E402
from bench.sse_client import StreamTrace, session, stream_chat  # noqa: E402
from bench.stack import Stack, start_stack  # noqa: E402
from bench.stats import median, percentile, rate, ratio  # noqa: E402

MODEL = "emu-model"
GOAL_THROUGHPUT = 0.95
GOAL_ADDED_P50_MS = 2.0


def chat_body(chunks: int, pace_us: int = 0) -> dict[str, object]:
    words = ([f"pace={pace_us}"] if pace_us else []) + ["@@"] * chunks
    return {"model": MODEL, "messages": [{"role": "user", "content": " ".join(words)}]}


def stamped(trace: StreamTrace) -> list[tuple[int, int]]:
    """(sent, arrived) of every stamped chunk of a trace (pure)."""
    out = []
    for arrived, content in zip(trace.content_ns, trace.contents, strict=True):
        text = content.strip()
        if text.isdigit():
            out.append((int(text), arrived))
    return out


def chunks_per_s(trace: StreamTrace) -> float:
    pairs = stamped(trace)
    if len(pairs) < 2:
        raise RuntimeError(f"only {len(pairs)} stamped chunks arrived")
    return rate(len(pairs) - 1, (pairs[-1][1] - pairs[0][1]) / 1e9)


def latencies_ms(trace: StreamTrace) -> list[float]:
    return [(arrived - sent) / 1e6 for sent, arrived in stamped(trace)]


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        times = psutil.Process(pid).cpu_times()
        out[name] = times.user + times.system
    return out


async def measure(
    url: str,
    headers: dict[str, str],
    chunks: int,
    paced: int,
    pace_us: int,
    pids: dict[str, int],
) -> tuple[float, list[float], dict[str, float]]:
    """(chunks/s, per-chunk latencies in ms, CPU µs per chunk of each process in ``pids``)."""
    async with session() as http:
        endpoint = url + "/v1/chat/completions"
        await stream_chat(http, endpoint, chat_body(20), headers)  # warm the connection + path
        before = cpu_seconds(pids)
        fast = await stream_chat(http, endpoint, chat_body(chunks), headers)
        after = cpu_seconds(pids)
        slow = await stream_chat(http, endpoint, chat_body(paced, pace_us), headers)
    got = len(stamped(fast))
    if got != chunks:
        raise RuntimeError(f"{got} of {chunks} chunks arrived")
    per_chunk = {name: (after[name] - before[name]) / chunks * 1e6 for name in pids}
    return chunks_per_s(fast), latencies_ms(slow), per_chunk


def main(argv: list[str] | None = None) -> int:
    p = cli_args.parser(__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="alternating direct/relayed rounds (3)")
    p.add_argument("--chunks", type=int, default=5000, help="chunks per throughput stream (5000)")
    p.add_argument("--paced", type=int, default=1000, help="chunks per latency stream (1000)")
    p.add_argument("--pace-us", type=int, default=2000, help="gap between paced chunks (2000 µs)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.chunks, args.paced, args.pace_us = 1, 300, 50, 1000
    emulator = EmulatorProcess()
    profile_dir = Path(tempfile.mkdtemp(prefix="pendra-bench-prof-")) if args.profile else None
    stack: Stack | None = None
    try:
        stack = start_stack(
            endpoints={"vllm": emulator.url}, builtin=False, profile_dir=profile_dir
        )
        stack.wait_for_models({MODEL})
        direct_rates: list[float] = []
        relay_rates: list[float] = []
        direct_lat: list[float] = []
        relay_lat: list[float] = []
        cpu_rounds: list[dict[str, float]] = []
        for n in range(args.rounds):
            me = os.getpid()
            d_rate, d_lat, _ = asyncio.run(
                measure(
                    emulator.url,
                    {},
                    args.chunks,
                    args.paced,
                    args.pace_us,
                    {"client": me, "emulator": emulator.pid},
                )
            )
            r_rate, r_lat, cpu = asyncio.run(
                measure(
                    stack.url,
                    stack.headers(),
                    args.chunks,
                    args.paced,
                    args.pace_us,
                    {
                        "client": me,
                        "emulator": emulator.pid,
                        "sandbox": stack.sandbox.pid,
                        "worker": stack.worker.pid,
                    },
                )
            )
            cpu_rounds.append(cpu)
            direct_rates.append(d_rate)
            relay_rates.append(r_rate)
            direct_lat += d_lat
            relay_lat += r_lat
            print(
                f"bench relay: round {n + 1}: direct {d_rate:,.0f} chunks/s, relayed "
                f"{r_rate:,.0f} chunks/s",
                file=sys.stderr,
            )
    finally:
        if stack is not None:
            stack.close()
        emulator.stop()
    d_p50, r_p50 = percentile(direct_lat, 50), percentile(relay_lat, 50)
    d_p99, r_p99 = percentile(direct_lat, 99), percentile(relay_lat, 99)
    section = Section(
        title="Relay of an external backend's stream",
        intro=(
            f"vLLM emulator streaming tiny chunks; client → sandbox → WSS → worker → emulator vs "
            f"client → emulator. Throughput: {args.chunks} chunks as fast as the emulator writes, "
            f"median of {args.rounds} alternating rounds. Latency: {args.paced} chunks paced "
            f"{args.pace_us} µs apart, stamp at write → arrival at the client."
        ),
        columns=("relayed", "direct"),
    )
    section.rows = [
        Row(
            "throughput",
            median(relay_rates),
            median(direct_rates),
            "chunks/s",
            goal=GOAL_THROUGHPUT,
        ),
        Row("latency p50", r_p50, d_p50, "ms", higher_is_better=False),
        Row("latency p99", r_p99, d_p99, "ms", higher_is_better=False),
        Row("added p50", r_p50 - d_p50, None, "ms", goal=GOAL_ADDED_P50_MS, higher_is_better=False),
        Row("added p99", r_p99 - d_p99, None, "ms", higher_is_better=False),
    ]
    section.notes.append(
        f"throughput ratio {ratio(median(relay_rates), median(direct_rates)):.2f}× "
        f"(rounds relayed: {', '.join(f'{r:,.0f}' for r in relay_rates)}; direct: "
        f"{', '.join(f'{r:,.0f}' for r in direct_rates)})."
    )
    if cpu_rounds:
        names = list(cpu_rounds[0])
        costs = {n: median([c[n] for c in cpu_rounds]) for n in names}
        section.notes.append(
            "CPU per relayed chunk (median over rounds; the relayed path's processes share "
            f"{os.cpu_count()} CPUs): "
            + ", ".join(f"{n} {costs[n]:.0f} µs" for n in names)
            + f"; total {sum(costs.values()):.0f} µs."
        )
    section.profile = take_profiles(profile_dir)
    section.publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Private inference vs the same request in plaintext, through the same sandbox and worker.

A vLLM emulator (in its own process) streams tiny chunks stamped with the time it wrote them. Each
round the client reads the same stream twice through ``pendra sandbox`` → WSS → ``pendra --no-ui``:

* plaintext: the request and every chunk in the clear (the baseline);
* private:   the request sealed with the official SDK's code, every chunk sealed by the worker and
             opened by the client (what a ``private_inference=True`` client pays).

Measured: streamed throughput (chunks/s, opened at the client), per-chunk latency with paced chunks
(write stamp → opened at the client), the round trip of small unary requests (the HPKE set-up per
request), and the CPU each process spends per chunk. Rounds alternate so drift hits both alike.

    .venv/bin/python bench/bench_private.py [--quick] [--rounds N] [--chunks N]
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pendra import _private_inference as sdk_pi  # noqa: E402
from pendra._streaming import PrivateStreamGuard  # noqa: E402

from bench import cli_args  # noqa: E402
from bench.emulator_proc import EmulatorProcess  # noqa: E402
from bench.report import Row, Section  # noqa: E402
from bench.sse_client import StreamTrace, session  # noqa: E402
from bench.stack import Stack, start_stack  # noqa: E402
from bench.stats import median, percentile, rate, ratio  # noqa: E402

MODEL = "emu-model"
GOAL_THROUGHPUT = 0.8
GOAL_ADDED_P50_MS = 1.0


def chat_body(chunks: int, pace_us: int = 0) -> dict[str, Any]:
    words = ([f"pace={pace_us}"] if pace_us else []) + ["@@"] * chunks
    return {"model": MODEL, "messages": [{"role": "user", "content": " ".join(words)}]}


def _record(trace: StreamTrace, chunk: dict[str, Any], now: int) -> None:
    trace.events += 1
    for choice in chunk.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if content:
            trace.content_ns.append(now)
            trace.contents.append(content)


async def stream(
    http: Any, url: str, body: dict[str, Any], headers: dict[str, str], keys: list[bytes] | None
) -> StreamTrace:
    """One streamed chat; sealed to ``keys`` and opened chunk by chunk when given."""
    payload: dict[str, Any] = {**body, "stream": True}
    guard = None
    if keys is not None:
        sealed = json.dumps({**payload, "pendra_stream_terminator": 1}).encode()
        envelope, reply_keys = sdk_pi.seal_request(
            keys, sealed, model=MODEL, stream=True, task_type="chat"
        )
        payload = {"model": MODEL, "stream": True, "pendra_encrypted": envelope}
        guard = PrivateStreamGuard(sdk_pi.ResponseDecryptor(reply_keys))
    trace = StreamTrace(sent_ns=time.monotonic_ns())
    async with http.post(url, json=payload, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {(await response.text())[:500]}")
        async for raw in response.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip().decode()
            if data == "[DONE]":
                break
            if guard is not None:
                opened = guard.open(data)
                if opened is None:
                    continue
                data = opened
            _record(trace, json.loads(data), time.monotonic_ns())
    if guard is not None:
        guard.end(eof=False)
    trace.done_ns = time.monotonic_ns()
    return trace


async def unary(http: Any, url: str, headers: dict[str, str], keys: list[bytes] | None) -> float:
    """Seconds for one small non-streamed chat, sealed and opened when ``keys`` are given."""
    body = {**chat_body(4), "stream": False}
    started = time.perf_counter()
    decryptor = None
    if keys is not None:
        envelope, reply_keys = sdk_pi.seal_request(
            keys, json.dumps(body).encode(), model=MODEL, stream=False, task_type="chat"
        )
        body = {"model": MODEL, "stream": False, "pendra_encrypted": envelope}
        decryptor = sdk_pi.ResponseDecryptor(reply_keys)
    async with http.post(url, json=body, headers=headers) as response:
        reply = await response.json()
    if decryptor is not None:
        reply = json.loads(decryptor.open_result(reply["pendra_encrypted"]))
    if not reply.get("choices"):
        raise RuntimeError(f"no completion: {reply}")
    return time.perf_counter() - started


def stamped(trace: StreamTrace) -> list[tuple[int, int]]:
    return [
        (int(c.strip()), t)
        for c, t in zip(trace.contents, trace.content_ns, strict=True)
        if c.strip().isdigit()
    ]


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    return {n: sum(psutil.Process(p).cpu_times()[:2]) for n, p in pids.items()}


async def measure(
    stack: Stack, keys: list[bytes] | None, args: Any, pids: dict[str, int]
) -> dict[str, Any]:
    url = stack.url + "/api/v1/chat/completions"
    headers = stack.headers()
    async with session() as http:
        await stream(http, url, chat_body(20), headers, keys)  # warm the path
        before = cpu_seconds(pids)
        fast = await stream(http, url, chat_body(args.chunks), headers, keys)
        after = cpu_seconds(pids)
        slow = await stream(http, url, chat_body(args.paced, args.pace_us), headers, keys)
        unary_s = [await unary(http, url, headers, keys) for _ in range(args.unary)]
    pairs = stamped(fast)
    if len(pairs) != args.chunks:
        raise RuntimeError(f"{len(pairs)} of {args.chunks} chunks arrived")
    return {
        "rate": rate(len(pairs) - 1, (pairs[-1][1] - pairs[0][1]) / 1e9),
        "latency": [(t - s) / 1e6 for s, t in stamped(slow)],
        "unary_ms": [u * 1000 for u in unary_s],
        "cpu": {n: (after[n] - before[n]) / args.chunks * 1e6 for n in pids},
    }


def workload_keys(stack: Stack) -> list[bytes]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = httpx.get(stack.url + "/v1/private-inference/key", headers=stack.headers())
        if answer.status_code == 200:
            return [base64.b64decode(k["public_key"]) for k in answer.json()["keys"]]
        time.sleep(0.1)
    raise RuntimeError("the worker registered no workload key")


def main(argv: list[str] | None = None) -> int:
    p = cli_args.parser(__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    p.add_argument("--chunks", type=int, default=5000, help="chunks per throughput stream (5000)")
    p.add_argument("--paced", type=int, default=1000, help="chunks per latency stream (1000)")
    p.add_argument("--pace-us", type=int, default=2000, help="gap between paced chunks (2000 µs)")
    p.add_argument("--unary", type=int, default=200, help="small unary requests per round (200)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.chunks, args.paced, args.pace_us, args.unary = 1, 300, 50, 1000, 10
    emulator = EmulatorProcess()
    stack: Stack | None = None
    results: dict[str, list[dict[str, Any]]] = {"plain": [], "private": []}
    try:
        stack = start_stack(endpoints={"vllm": emulator.url}, builtin=False)
        stack.wait_for_models({MODEL})
        keys = workload_keys(stack)
        pids = {
            "client": os.getpid(),
            "sandbox": stack.sandbox.pid,
            "worker": stack.worker.pid,
        }
        for n in range(args.rounds):
            for name, sealed_to in (("plain", None), ("private", keys)):
                results[name].append(asyncio.run(measure(stack, sealed_to, args, pids)))
            print(
                f"bench private: round {n + 1}: plaintext {results['plain'][-1]['rate']:,.0f} "
                f"chunks/s, private {results['private'][-1]['rate']:,.0f} chunks/s",
                file=sys.stderr,
            )
    finally:
        if stack is not None:
            stack.close()
        emulator.stop()

    def pooled(name: str, key: str) -> list[float]:
        return [v for r in results[name] for v in r[key]]

    plain_rate = median([r["rate"] for r in results["plain"]])
    private_rate = median([r["rate"] for r in results["private"]])
    lat = {n: pooled(n, "latency") for n in results}
    uni = {n: pooled(n, "unary_ms") for n in results}
    section = Section(
        title="Private inference overhead",
        intro=(
            "vLLM emulator streaming tiny chunks through `pendra sandbox` → WSS → `pendra "
            "--no-ui`, the same request in plaintext and sealed (the official SDK's sealing and "
            "opening in the client). Throughput: "
            f"{args.chunks} chunks as fast as the emulator writes, median of {args.rounds} "
            f"alternating rounds. Latency: {args.paced} chunks paced {args.pace_us} µs apart, "
            f"stamp at write → opened at the client. Unary: {args.unary} small requests per round."
        ),
        columns=("private", "plaintext"),
    )
    added_p50 = percentile(lat["private"], 50) - percentile(lat["plain"], 50)
    section.rows = [
        Row("throughput", private_rate, plain_rate, "chunks/s", goal=GOAL_THROUGHPUT),
        Row(
            "latency p50",
            percentile(lat["private"], 50),
            percentile(lat["plain"], 50),
            "ms",
            higher_is_better=False,
        ),
        Row("added p50", added_p50, None, "ms", goal=GOAL_ADDED_P50_MS, higher_is_better=False),
        Row(
            "unary round trip p50",
            percentile(uni["private"], 50),
            percentile(uni["plain"], 50),
            "ms",
            higher_is_better=False,
        ),
    ]
    cpu = {
        name: {p: median([r["cpu"][p] for r in results[name]]) for p in results[name][0]["cpu"]}
        for name in results
    }
    section.notes.append(
        f"throughput ratio {ratio(private_rate, plain_rate):.2f}× (rounds private: "
        + ", ".join(f"{r['rate']:,.0f}" for r in results["private"])
        + "; plaintext: "
        + ", ".join(f"{r['rate']:,.0f}" for r in results["plain"])
        + ")."
    )
    section.notes.append(
        f"CPU per chunk (median over rounds; all processes share {os.cpu_count()} CPUs), private "
        "vs plaintext: "
        + ", ".join(
            f"{p} {cpu['private'][p]:.0f} vs {cpu['plain'][p]:.0f} µs" for p in cpu["private"]
        )
        + "."
    )
    section.publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Aggregate decode with N concurrent streams: the full Pendra path vs raw batched llama.cpp.

* full path: N streams at once through client → sandbox → WSS → worker → built-in backend
  (continuous batching when the backend has it; worker ``builtin.parallel`` and
  ``max_concurrent`` = the largest N)
* raw: one ``llama_decode`` per step over a ``llama_batch`` holding N sequences, native greedy
  sampler (:mod:`bench.raw_llama`), same GGUF, threads, per-sequence context and unified KV.
* llama-server (when its binary is available, :mod:`bench.llama_server`): llama.cpp's C++ server
  with as many slots as the worker, the same GGUF, threads and per-slot context, N streams at once
  with the same client.

Aggregate = all generated tokens / (last token − request start), prefill included on both sides.
For each N the raw and full runs alternate; the best round of each is reported (and, with more
than two rounds, the median round against llama-server too).

    .venv/bin/python bench/bench_concurrency.py [--quick] [--streams 1,2,4,8,16] [--tokens 64]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import cli_args, llama_server  # noqa: E402
from bench.model_file import chat_model  # noqa: E402
from bench.profiling import take_profiles  # noqa: E402
from bench.raw_llama import RawModel  # noqa: E402
from bench.report import Row, Section  # noqa: E402
from bench.sse_client import session, stream_chat  # noqa: E402
from bench.stack import Stack, start_stack  # noqa: E402
from bench.stats import rate  # noqa: E402
from bench.workload import MODEL_ID, RAW_PROMPT, chat_body  # noqa: E402

GOAL_AT = 8
GOAL = 0.90
GOAL_VS_SERVER_AT = 4
GOAL_VS_SERVER = 1.0
SLOT_CONTEXT = 1024


async def full_aggregate(stack: Stack, streams: int, tokens: int) -> tuple[float, int]:
    """(aggregate tok/s, total tokens) of ``streams`` simultaneous answers."""
    async with session(max_connections=streams + 4) as http:
        url = stack.api + "/chat/completions"
        jobs = [stream_chat(http, url, chat_body(tokens), stack.headers()) for _ in range(streams)]
        traces = await asyncio.gather(*jobs)
    start = min(t.sent_ns for t in traces)
    end = max(t.content_ns[-1] for t in traces)
    total = sum(t.completion_tokens or len(t.contents) for t in traces)
    return rate(total, (end - start) / 1e9), total


async def server_aggregate(server: llama_server.LlamaServer, streams: int, tokens: int) -> float:
    async with session(max_connections=streams + 4) as http:
        url = server.api + "/chat/completions"
        body = {**chat_body(tokens), "ignore_eos": True}
        traces = await asyncio.gather(*(stream_chat(http, url, body) for _ in range(streams)))
    start = min(t.sent_ns for t in traces)
    end = max(t.content_ns[-1] for t in traces)
    total = sum(t.completion_tokens or len(t.contents) for t in traces)
    return rate(total, (end - start) / 1e9)


def raw_aggregate(raw: RawModel, prompt: list[int], streams: int, tokens: int) -> float:
    timings = raw.generate([prompt] * streams, tokens)
    end = max(t.token_times[-1] for t in timings)
    return rate(streams * tokens, end)


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--streams takes numbers like 1,2,4,8; got {text!r}") from None
    if not levels or min(levels) < 1:
        raise SystemExit(f"--streams needs positive numbers; got {text!r}")
    return levels


def main(argv: list[str] | None = None) -> int:
    p = cli_args.parser(__doc__.split("\n\n")[0])
    p.add_argument("--streams", default="1,2,4,8,16", help="concurrency levels (1,2,4,8,16)")
    p.add_argument("--tokens", type=int, default=64, help="tokens per stream (64)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per level (2)")
    args = p.parse_args(argv)
    if args.quick:
        args.streams, args.tokens, args.rounds = "1,2", 6, 1
    levels = parse_levels(args.streams)
    top = max(levels)
    model = chat_model(args.model)
    threads = cli_args.threads_or_default(args.threads)
    profile_dir = Path(tempfile.mkdtemp(prefix="pendra-bench-prof-")) if args.profile else None
    raw = RawModel(model, threads=threads, n_ctx=SLOT_CONTEXT * top, n_seq=top)
    prompt = raw.tokenize(RAW_PROMPT)
    stack = start_stack(
        models={MODEL_ID: model},
        worker_env={
            "PENDRA_THREADS": str(threads),
            "PENDRA_MAX_CONTEXT": str(SLOT_CONTEXT),
            "PENDRA_PARALLEL": str(top),
            "MAX_CONCURRENT": str(top),  # the worker's in-flight cap (default 1) lets N through
        },
        profile_dir=profile_dir,
    )
    results: dict[int, tuple[float, float, int]] = {}
    served: dict[int, float] = {}
    medians: dict[int, tuple[float, float]] = {}  # (full path, llama-server): the median rounds
    binary = llama_server.find_binary()
    server = None
    try:
        stack.wait_for_models({MODEL_ID})
        asyncio.run(full_aggregate(stack, 1, 4))  # load the model (not timed)
        raw.generate([prompt], 4)
        if binary is not None:
            server = llama_server.start(
                binary, model, threads=threads, context=SLOT_CONTEXT, parallel=top, alias=MODEL_ID
            )
            asyncio.run(server_aggregate(server, 1, 4))
        for n in levels:
            raws, fulls, servers, count = [], [], [], 0
            for _ in range(args.rounds):
                raws.append(raw_aggregate(raw, prompt, n, args.tokens))
                agg, count = asyncio.run(full_aggregate(stack, n, args.tokens))
                fulls.append(agg)
                if server is not None:
                    servers.append(asyncio.run(server_aggregate(server, n, args.tokens)))
            results[n] = (max(fulls), max(raws), count)
            line = f"raw {max(raws):.1f} tok/s, full path {max(fulls):.1f} tok/s ({count} tokens)"
            if servers:
                served[n] = max(servers)
                medians[n] = (statistics.median(fulls), statistics.median(servers))
                line += f", llama-server {served[n]:.1f} tok/s"
            print(f"bench concurrency: {n} streams: {line}", file=sys.stderr)
    finally:
        stack.close()
        raw.close()
        if server is not None:
            server.close()
    section = Section(
        title="Concurrent streams (aggregate decode)",
        intro=(
            f"`{model.name}`, {threads} thread(s), {args.tokens} tokens per stream, greedy, "
            f"best of {args.rounds} alternating rounds per level; worker `builtin.parallel` and "
            f"`max_concurrent` = {top}, {SLOT_CONTEXT} tokens of context per sequence on both "
            f"sides. Raw: one `llama_batch` with N sequences per step."
        ),
        columns=("full path", "baseline (raw batched / llama-server)"),
    )
    for n in levels:
        full, raw_rate, _count = results[n]
        section.rows.append(
            Row(f"{n} stream(s)", full, raw_rate, "tok/s", goal=GOAL if n == GOAL_AT else None)
        )
    for n in levels:
        if n in served:
            goal = GOAL_VS_SERVER if n == GOAL_VS_SERVER_AT else None
            section.rows.append(
                Row(f"{n} stream(s) vs llama-server", results[n][0], served[n], "tok/s", goal=goal)
            )
            if args.rounds > 2:
                full_median, server_median = medians[n]
                section.rows.append(
                    Row(
                        f"{n} stream(s) vs llama-server, median round",
                        full_median,
                        server_median,
                        "tok/s",
                    )
                )
    if binary is None:
        section.notes.append(
            f"no llama-server binary ({llama_server.ENV} or PATH): its rows are left out."
        )
    else:
        section.notes.append(
            f"llama-server rows: baseline = llama-server `-np {top}` "
            f"({llama_server.version(binary)})."
        )
    single = results[levels[0]][0]
    section.notes.append(
        "full-path scaling over its own first level: "
        + ", ".join(f"{n}: {results[n][0] / single:.2f}×" for n in levels)
    )
    section.profile = take_profiles(profile_dir)
    section.publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

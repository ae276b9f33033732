"""What the runner process costs: the full path with models in runner processes vs in the worker.

Two stacks run side by side (each ``pendra sandbox`` + ``pendra --no-ui`` on the same GGUF and
threads): one with the default ``builtin.isolation = "process"`` (the model in its own runner
process, output over the socket wire), one with ``"none"`` (the same engine on a thread of the
worker, output handed to the event loop directly — how the worker ran before runners). Rounds
alternate between them. Measured: single-stream decode rate (prefill left out) and the aggregate
rate of concurrent streams, and the resident memory of each worker (+ its runner) at the end.

    .venv/bin/python bench/bench_runner.py [--quick] [--tokens 192] [--rounds 5] [--streams 4]
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench import cli_args  # noqa: E402
from bench.bench_concurrency import full_aggregate  # noqa: E402
from bench.bench_decode import full_rate, one_stream  # noqa: E402
from bench.model_file import chat_model  # noqa: E402
from bench.profiling import engine_step_cost, take_profiles  # noqa: E402
from bench.report import Row, Section  # noqa: E402
from bench.stack import Stack, start_stack  # noqa: E402
from bench.stats import median  # noqa: E402
from bench.workload import MODEL_ID  # noqa: E402

GOAL = 0.97


def _resident(stack: Stack) -> int:
    """Worker RSS plus its model runners' (children), in bytes."""
    worker = psutil.Process(stack.worker.pid)
    total = worker.memory_info().rss
    for child in worker.children(recursive=True):
        try:
            if "worker.backends.pendra.runner" in " ".join(child.cmdline()):
                total += child.memory_info().rss
        except psutil.Error:
            continue
    return int(total)


def main(argv: list[str] | None = None) -> int:
    p = cli_args.parser(__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=192, help="tokens per answer (192)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    p.add_argument("--streams", type=int, default=4, help="concurrent streams (4)")
    args = p.parse_args(argv)
    if args.quick:
        args.tokens, args.rounds, args.streams = 8, 1, 2
    # A SIGTERM (a timeout, Ctrl-C's cousin) still stops both stacks on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    model = chat_model(args.model)
    threads = cli_args.threads_or_default(args.threads)
    profile_dir = Path(tempfile.mkdtemp(prefix="pendra-bench-prof-")) if args.profile else None
    slots = str(max(4, args.streams))
    # MAX_CONCURRENT: the worker's in-flight cap (default 1) lets the concurrent streams through.
    common = {"PENDRA_THREADS": str(threads), "PENDRA_PARALLEL": slots, "MAX_CONCURRENT": slots}
    stacks: dict[str, Stack] = {}
    single: dict[str, list[float]] = {"process": [], "none": []}
    aggregate: dict[str, list[float]] = {"process": [], "none": []}
    resident: dict[str, int] = {}
    try:
        for mode in ("process", "none"):
            env = {**common, "PENDRA_BUILTIN_ISOLATION": mode}
            if profile_dir is not None and mode == "process":
                env["PENDRA_RUNNER_PROFILE"] = str(profile_dir)
            stacks[mode] = start_stack(models={MODEL_ID: model}, worker_env=env)
        for stack in stacks.values():
            stack.wait_for_models({MODEL_ID})
            asyncio.run(one_stream(stack, 4))  # load (not timed)
        for n in range(args.rounds):
            order = ("process", "none") if n % 2 == 0 else ("none", "process")
            for mode in order:
                rate, _tokens = full_rate(asyncio.run(one_stream(stacks[mode], args.tokens)))
                single[mode].append(rate)
            for mode in order:
                agg, _ = asyncio.run(full_aggregate(stacks[mode], args.streams, args.tokens))
                aggregate[mode].append(agg)
            print(
                f"bench runner: round {n + 1}: single runner {single['process'][-1]:.1f} / "
                f"in-process {single['none'][-1]:.1f} tok/s; {args.streams} streams runner "
                f"{aggregate['process'][-1]:.1f} / in-process {aggregate['none'][-1]:.1f} tok/s",
                file=sys.stderr,
            )
        for mode, stack in stacks.items():
            resident[mode] = _resident(stack)
    finally:
        for stack in stacks.values():
            stack.close()
    section = Section(
        title="Runner process vs in-process",
        intro=(
            f"`{model.name}`, {threads} thread(s), {args.tokens}-token streamed answers, greedy, "
            f"{args.rounds} alternating rounds; both through client → sandbox → WSS → worker. "
            f'Runner: the model in its own process (`builtin.isolation = "process"`, the '
            f"default), tokens over the socket wire. In-process: the same engine on a thread of "
            f'the worker (`"none"`).'
        ),
        columns=("runner", "in-process"),
    )
    runner, inproc = single["process"], single["none"]
    section.rows = [
        Row("single stream, best round", max(runner), max(inproc), "tok/s", goal=GOAL),
        Row("single stream, median", median(runner), median(inproc), "tok/s"),
        Row(
            f"{args.streams} streams aggregate, best",
            max(aggregate["process"]),
            max(aggregate["none"]),
            "tok/s",
        ),
        Row(
            "resident memory (worker + runner)",
            resident["process"] / 1e6,
            resident["none"] / 1e6,
            "MB",
            higher_is_better=False,
        ),
    ]
    section.notes.append(
        "rounds (tok/s) — runner: "
        + ", ".join(f"{r:.1f}" for r in runner)
        + "; in-process: "
        + ", ".join(f"{r:.1f}" for r in inproc)
    )
    if profile_dir is not None:
        cost = engine_step_cost(profile_dir)
        if cost:
            section.notes.append("per-step cost in the runner's engine thread — " + cost)
    section.profile = take_profiles(profile_dir)
    section.publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

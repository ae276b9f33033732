"""Idle cost of the worker: RSS and CPU of a real ``pendra --no-ui`` connected to a sandbox.

No model is loaded (the built-in backend is on, with an empty models dir) and no request is sent;
what remains is the link's heartbeats, discovery ticks, GPU sampling and the modelstore watcher.
The baseline is a bare ``python -c "import time; time.sleep(…)"`` process measured the same way,
so the section shows what the worker adds on top of an interpreter.

    .venv/bin/python bench/bench_idle.py [--quick] [--seconds 20]
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import cli_args  # noqa: E402
from bench.report import Row, Section  # noqa: E402
from bench.stack import start_stack  # noqa: E402

GOAL_RSS_MB = 60.0
"""Pendra's own daemon (a static Go binary) documents under 50 MB resident; this Python worker's
goal is 60 MB with the built-in backend on and no model loaded."""
GOAL_CPU_PCT = 1.0
MB = 1024 * 1024
FOOTPRINT_NOTE = (
    "Pendra documents its own daemon (a static Go binary) at under 50 MB resident; this "
    "worker's goal is 60 MB with the built-in backend on. What keeps it there: the built-in "
    "backend's request code (parsing, grammars, tool-call parsers, response shapes) and its "
    "runner supervisor load with the first request, llama.cpp and numpy with the first model "
    "(in the model's runner process, not the worker), httpx with the first catalogue fetch, the "
    "install machinery with the first install, pyhpke with the first sealed request, pynvml only "
    "where libnvidia-ml exists; on Linux the models directory is followed with inotify read on "
    "the event loop and the host panel's CPU and memory come from /proc (no watcher thread, no "
    "psutil); protocol and catalogue validators are built on first use; the admin API runs on a "
    "small asyncio HTTP layer, not aiohttp.web; `pendra --no-ui` builds no CLI parser. Most of "
    "what remains is aiohttp's client and WebSocket, the interpreter, OpenSSL with "
    "cryptography's Ed25519, and pydantic."
)


def sample(pid: int, seconds: float, every_s: float = 0.5) -> tuple[float, float, float]:
    """(mean RSS MB, peak RSS MB, CPU % of one core) of ``pid`` and its children over ``seconds``.

    CPU is the process's user+system time over the wall time, so short spikes count in full."""
    proc = psutil.Process(pid)

    def tree() -> list[psutil.Process]:
        return [proc, *proc.children(recursive=True)]

    def cpu_s() -> float:
        total = 0.0
        for p in tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def rss() -> int:
        total = 0
        for p in tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    rss_samples: list[int] = []
    cpu0, t0 = cpu_s(), time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        rss_samples.append(rss())
        time.sleep(every_s)
    cpu1, t1 = cpu_s(), time.monotonic()
    mean = sum(rss_samples) / len(rss_samples) / MB
    return mean, max(rss_samples) / MB, 100.0 * (cpu1 - cpu0) / (t1 - t0)


def main(argv: list[str] | None = None) -> int:
    p = cli_args.parser(__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="how long to measure (20 s)")
    p.add_argument("--settle", type=float, default=5.0, help="wait after connecting (5 s)")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.settle = 2.0, 0.5
    stack = start_stack(models={}, builtin=True)
    try:
        stack.wait_for_worker()
        time.sleep(args.settle)  # let start-up work (first discovery, imports) finish
        rss_mean, rss_peak, cpu = sample(stack.worker.pid, args.seconds)
        alive = stack.worker.popen.poll() is None
    finally:
        stack.close()
    if not alive:
        raise SystemExit("the worker exited during the measurement")
    bare = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({args.seconds + 5})"])
    try:
        time.sleep(0.5)
        b_mean, _b_peak, b_cpu = sample(bare.pid, min(args.seconds, 5.0))
    finally:
        bare.kill()
        bare.wait()
    section = Section(
        title="Worker at idle",
        intro=(
            f"A real `pendra --no-ui` connected to `pendra sandbox`, built-in backend on, no model "
            f"loaded, no request; measured with psutil for {args.seconds:g} s after "
            f"{args.settle:g} s of settling. Baseline: a bare `python -c 'time.sleep()'`."
        ),
        columns=("worker", "bare interpreter"),
    )
    section.rows = [
        Row("RSS (mean)", rss_mean, b_mean, "MB"),
        Row("RSS (peak) vs goal", rss_peak, None, "MB", goal=GOAL_RSS_MB, higher_is_better=False),
        Row("CPU (one core)", cpu, None, "%", goal=GOAL_CPU_PCT, higher_is_better=False),
    ]
    section.notes.append(f"bare interpreter CPU over the same kind of window: {b_cpu:.2f} %.")
    section.notes.append(FOOTPRINT_NOTE)
    section.publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

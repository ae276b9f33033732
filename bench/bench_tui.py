"""TUI speed: time to the first dashboard frame, and CPU use of an idle dashboard.

    .venv/bin/python bench/bench_tui.py [--idle-seconds 10]

Each measurement runs in a fresh Python process (so import time counts) with the app headless
and the deterministic fake admin client from tests/tui (a busy worker: 3 backends, 1 GPU, logs).
"First frame" is from interpreter start to the dashboard showing the worker's status. "Idle CPU"
is the app process's CPU time over a window with (a) no events and (b) what a busy worker sends
every 2 s: a GPU event and a metrics sample (all plots and the models view redraw). Targets:
first frame <= 1 s, idle <= 3 % of a core.

``first_frame_real_s`` is the same first frame with the real services (``real_services``: the
admin client over the Unix socket) against a real ``pendra --no-ui`` worker linked to a
``pendra sandbox``, both started here on loopback with a throwaway PENDRA_HOME and stopped after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stack import free_port  # noqa: E402

CHILD = r"""
import time
T0 = time.perf_counter()
import asyncio, json, os, sys
sys.path[:0] = [{root!r}, {tests!r}]
os.environ["PENDRA_HOME"] = {home!r}
from pendra_tui.app import build_app
import tui_fakes

async def main():
    worker = tui_fakes.dashboard_worker(gpus=1)
    worker.scripted = []
    app = build_app(tui_fakes.make_services(worker=worker), start="dashboard")
    async with app.run_test(size=(120, 40)) as pilot:
        while not (worker.live is not None and getattr(app.screen, "model", None)
                   and app.screen.model.reachable):
            await asyncio.sleep(0.005)
        await pilot.pause()
        first_frame = time.perf_counter() - T0
        await asyncio.sleep(1.0)  # let start-up work settle
        results = {{"first_frame_s": first_frame}}
        samples = worker.history_doc["samples"]
        ts = samples[-1]["ts"]
        for label, gpu_every in (("idle_no_events", None), ("idle_gpu_every_2s", 2.0)):
            c0, w0 = time.process_time(), time.perf_counter()
            next_gpu = w0
            while time.perf_counter() - w0 < {idle}:
                if gpu_every and time.perf_counter() >= next_gpu:
                    worker.push({{"kind": "gpu", "gpus": [tui_fakes.gpu_reading(0, 40.0, 30.0)]}})
                    ts += 2.0
                    worker.push({{"kind": "metrics", "loaded": {{"pendra": tui_fakes.LOADED}},
                                  "sample": {{**samples[-1], "ts": ts}}}})
                    next_gpu += gpu_every
                await asyncio.sleep(0.05)
            cpu = time.process_time() - c0
            results[label + "_cpu_percent"] = 100.0 * cpu / (time.perf_counter() - w0)
    print(json.dumps(results))

asyncio.run(main())
"""


REAL_CHILD = r"""
import time
T0 = time.perf_counter()
import asyncio, json
from pendra_tui.app import build_app
from pendra_tui.services import real_services
from worker.settings import load_settings

async def main():
    app = build_app(real_services(load_settings()), start="dashboard")
    async with app.run_test(size=(120, 40)) as pilot:
        while not (getattr(app.screen, "model", None) and app.screen.model.reachable):
            await asyncio.sleep(0.005)
        await pilot.pause()
        print(json.dumps({"first_frame_real_s": time.perf_counter() - T0}))

asyncio.run(main())
"""


@contextlib.contextmanager
def real_worker(home: Path) -> Iterator[dict[str, str]]:
    """``pendra sandbox`` + ``pendra --no-ui`` on loopback; yields the worker's environment."""
    from worker.settings import BACKEND_KINDS

    port = free_port()
    key = home / "sandbox.key"
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_ENDPOINT")},
        "PENDRA_HOME": str(home),
        "PENDRA_API_URL": f"http://127.0.0.1:{port}",
        "PENDRA_WORKER_KEY_FILE": str(key),
        "PENDRA_MODELS_DIR": str(home / "models"),
        **{f"{kind.upper()}_ENDPOINT": "off" for kind in BACKEND_KINDS},
    }
    logs = open(home / "bench-procs.log", "wb")  # noqa: SIM115 - closed in finally
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sandbox = [sys.executable, "-m", "worker", "sandbox", "--port", str(port)]
        procs.append(
            subprocess.Popen([*sandbox, "--key-out", str(key)], env=env, stdout=logs, stderr=logs)
        )
        deadline = time.monotonic() + 30
        while not key.exists():
            if time.monotonic() > deadline:
                raise SystemExit("the sandbox did not start")
            time.sleep(0.05)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "worker", "--no-ui"], env=env, stdout=logs, stderr=logs
            )
        )
        while not (home / "run" / "admin.sock").exists():
            if time.monotonic() > deadline or procs[-1].poll() is not None:
                raise SystemExit(f"the worker did not start; see {home / 'bench-procs.log'}")
            time.sleep(0.05)
        yield env
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        logs.close()


def run_real(runs: int) -> list[float]:
    with (
        tempfile.TemporaryDirectory(prefix="pendra-bench-real-") as tmp,
        real_worker(Path(tmp)) as env,
    ):
        times = []
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", REAL_CHILD],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                cwd=ROOT,
            )
            if out.returncode != 0:
                raise SystemExit(f"bench child failed:\n{out.stderr[-3000:]}")
            times.append(json.loads(out.stdout.strip().splitlines()[-1])["first_frame_real_s"])
    return times


def run_once(idle_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="pendra-bench-") as home:
        code = CHILD.format(
            root=str(ROOT), tests=str(ROOT / "tests" / "tui"), home=home, idle=idle_s
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120 + 3 * idle_s
        )
    if out.returncode != 0:
        raise SystemExit(f"bench child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_average() -> str:
    """``1.2 / 0.9 / 0.7``: how busy the machine was (other work skews these timings)."""
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def render_section(summary: dict[str, float], runs: int, idle_s: float) -> str:
    """The Markdown section bench/run.py writes into docs/benchmarks.md (pure)."""

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    rows = [
        (
            "first frame, fixed test data",
            f"{summary['first_frame_s']:.2f} s",
            "≤ 1 s",
            met(summary["first_frame_s"] <= 1.0),
        ),
        (
            "first frame, real sandbox + worker",
            f"{summary['first_frame_real_s']:.2f} s",
            "≤ 1 s",
            met(summary["first_frame_real_s"] <= 1.0),
        ),
        (
            "idle dashboard, no events",
            f"{summary['idle_no_events_cpu_percent']:.2f} % of a core",
            "≤ 3 %",
            met(summary["idle_no_events_cpu_percent"] <= 3.0),
        ),
        (
            "idle dashboard, a GPU event and a metrics sample every 2 s",
            f"{summary['idle_gpu_every_2s_cpu_percent']:.2f} % of a core",
            "≤ 3 %",
            met(summary["idle_gpu_every_2s_cpu_percent"] <= 3.0),
        ),
    ]
    lines = [
        "## Terminal app (`bench/bench_tui.py`)",
        "",
        "First frame: from interpreter start to the dashboard showing the worker's status. Idle: "
        f"CPU of the app process over {idle_s:.0f} s, with nothing happening and with what a "
        "busy worker sends every 2 s (the plots and the models view redraw). Median of "
        f"{runs} fresh processes each; load average {load_average()} at the end of the run.",
        "",
        "| measure | result | goal | met |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Pendra TUI speed")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [run_once(args.idle_seconds) for _ in range(args.runs)]
    summary = {key: round(sorted(r[key] for r in runs)[len(runs) // 2], 3) for key in runs[0]}
    real = sorted(run_real(args.runs))
    summary["first_frame_real_s"] = round(real[len(real) // 2], 3)
    first_ok = max(summary["first_frame_s"], summary["first_frame_real_s"]) <= 1.0
    idle = {key: value for key, value in summary.items() if key.endswith("cpu_percent")}
    ok = first_ok and all(value <= 3.0 for value in idle.values())
    print(json.dumps({"median_of": args.runs, **summary}), file=sys.stderr)
    print(render_section(summary, args.runs, args.idle_seconds))
    print(
        "bench ratios | TUI | first frame "
        f"{summary['first_frame_s']:.2f} s (goal <= 1 s); idle "
        f"{summary['idle_no_events_cpu_percent']:.2f} % (goal <= 3 %)",
        file=sys.stderr,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Install throughput: the built-in download (hashing while streaming, fsync, rename) against
plain ``curl -o`` from the same loopback server, in the same run, alternating rounds.

The server runs in its own process (aiohttp ``FileResponse``, sendfile) so neither client shares
an event loop with it. Prints the Markdown section for docs/benchmarks.md on stdout (see run.py)
and a ``bench ratios`` line on stderr.

On a small shared VM the rounds swing by ±30 % with the host's load, so the verdict uses the
median over many alternating rounds of the per-round ratio (curl and pendra measured back to
back, under nearly the same load) and the section shows its spread and the load average.

    .venv/bin/python bench/bench_install.py [--size-mib 256] [--rounds 15] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import free_port  # noqa: E402
from bench.stats import median, percentile  # noqa: E402

GOAL = 0.95


def serve(path: str, port: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/m.gguf", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def make_source(path: Path, size: int) -> str:
    hasher = hashlib.sha256()
    with path.open("wb") as handle:
        for _ in range(size // (1 << 20)):
            block = os.urandom(1 << 20)
            handle.write(block)
            hasher.update(block)
    return hasher.hexdigest()


def wait_for(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the bench server did not start")


def time_curl(url: str, dest: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["curl", "-sSf", "-o", str(dest), url], check=True)
    took = time.perf_counter() - started
    dest.unlink()
    return took


def time_pendra(url: str, dest: Path, sha: str, size: int) -> float:
    from worker.installs.download import download_verified

    started = time.perf_counter()
    asyncio.run(download_verified(url, dest, sha256=sha, size=size))
    took = time.perf_counter() - started
    dest.unlink()
    return took


def loadavg() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def spread(values: list[float]) -> str:
    """``median (IQR low-high, min-max)`` of per-round values, for the section."""
    return (
        f"{median(values):.2f}× (IQR {percentile(values, 25):.2f}-{percentile(values, 75):.2f}, "
        f"min {min(values):.2f}, max {max(values):.2f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--quick", action="store_true", help="16 MiB, 2 rounds: only proves the bench runs"
    )
    parser.add_argument("--serve", nargs=2, metavar=("PATH", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    if args.quick:
        args.size_mib, args.rounds = 16, 2
    if args.size_mib < 1 or args.rounds < 1:
        parser.error("--size-mib and --rounds must be at least 1")
    if not shutil.which("curl"):
        print("bench_install: curl is not installed", file=sys.stderr)
        return 2
    size = args.size_mib * (1 << 20)
    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="pendra-bench-") as tmp:
        work = Path(tmp)
        source = work / "source.gguf"
        sha = make_source(source, size)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(source), str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(port)
            url = f"http://127.0.0.1:{port}/m.gguf"
            time_curl(url, work / "warm.bin")  # warm the page cache and the server
            time_pendra(url, work / "warm.gguf", sha, size)  # and the imports
            curl, pendra = [], []
            for index in range(args.rounds):
                # Alternate who goes first, so neither always runs right after the other's
                # writeback or in the same phase of a periodic load.
                order = ("curl", "pendra") if index % 2 == 0 else ("pendra", "curl")
                for client in order:
                    if client == "curl":
                        curl.append(time_curl(url, work / "curl.bin"))
                    else:
                        pendra.append(time_pendra(url, work / "pendra.gguf", sha, size))
                print(
                    f"round {index + 1}: curl {size / curl[-1] / 1e6:.0f} MB/s, "
                    f"pendra {size / pendra[-1] / 1e6:.0f} MB/s",
                    file=sys.stderr,
                )
        finally:
            server.terminate()
            server.wait(10)
    load_after = loadavg()
    curl_rate = size / median(curl) / 1e6
    pendra_rate = size / median(pendra) / 1e6
    per_round = [c / p for c, p in zip(curl, pendra, strict=True)]  # time ratio = speed ratio
    ratio = median(per_round)
    curl_version = subprocess.run(["curl", "--version"], capture_output=True, text=True)
    import aiohttp

    verdict = "meets" if ratio >= GOAL else "misses"
    curl_rounds = ", ".join(f"{size / t / 1e6:.0f}" for t in curl)
    pendra_rounds = ", ".join(f"{size / t / 1e6:.0f}" for t in pendra)
    print(
        f"bench ratios | install | pendra/curl={ratio:.2f}x; "
        f"ratio of medians={pendra_rate / curl_rate:.2f}x",
        file=sys.stderr,
    )
    print(f"""## Install throughput (`bench/bench_install.py`)

A {args.size_mib} MiB file from a loopback aiohttp server (separate process, sendfile),
{args.rounds} alternating rounds. `pendra` is `worker.installs.download.download_verified`: stream
on the event loop, write and SHA-256 on two threads, disk writeback started during the download
(`sync_file_range`), verify the pin, fsync, atomic rename. `curl` is `curl -sSf -o FILE` (no
hashing, no fsync: its data is still in the page cache when it exits).

| client | median MB/s | rounds (MB/s) |
|---|---|---|
| curl -o | {curl_rate:.0f} | {curl_rounds} |
| pendra install download | {pendra_rate:.0f} | {pendra_rounds} |

**Ratio pendra / curl: {ratio:.2f}×**, the median of the per-round ratios (curl and pendra back to
back); spread over the rounds: {spread(per_round)}; ratio of the medians above:
{pendra_rate / curl_rate:.2f}×. Goal ≥ {GOAL}×: {verdict} it on this run.

Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Linux {platform.release()},
Python {platform.python_version()}, aiohttp {aiohttp.__version__},
{curl_version.stdout.splitlines()[0] if curl_version.stdout else "curl"}.
Load average (1 / 5 / 15 min) {load_before} before, {load_after} after.
Measured {time.strftime("%Y-%m-%d")}. On loopback both clients are CPU-bound, so the numbers vary
with other load on the machine; over a real network link both are bound by the link.""")
    return 0


if __name__ == "__main__":
    sys.exit(main())

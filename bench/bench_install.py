"""Install throughput: the built-in download (hashing while streaming, fsync, rename) against
plain ``curl -o`` from the same loopback server, in the same run, alternating rounds.

The server runs in its own process (aiohttp ``FileResponse``, sendfile) so neither client shares
an event loop with it. Prints the Markdown section for docs/benchmarks.md on stdout (see run.py).

    .venv/bin/python bench/bench_install.py [--size-mib 512] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL = 0.95


def serve(path: str, port: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/m.gguf", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", nargs=2, metavar=("PATH", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    if not shutil.which("curl"):
        print("bench_install: curl is not installed", file=sys.stderr)
        return 2
    size = args.size_mib * (1 << 20)
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
            curl, pendra = [], []
            for index in range(args.rounds):
                curl.append(time_curl(url, work / "curl.bin"))
                pendra.append(time_pendra(url, work / "pendra.gguf", sha, size))
                print(
                    f"round {index + 1}: curl {size / curl[-1] / 1e6:.0f} MB/s, "
                    f"pendra {size / pendra[-1] / 1e6:.0f} MB/s",
                    file=sys.stderr,
                )
        finally:
            server.terminate()
            server.wait(10)
    curl_rate = size / statistics.median(curl) / 1e6
    pendra_rate = size / statistics.median(pendra) / 1e6
    ratio = pendra_rate / curl_rate
    curl_version = subprocess.run(["curl", "--version"], capture_output=True, text=True)
    import aiohttp

    verdict = "meets" if ratio >= GOAL else "misses"
    curl_rounds = ", ".join(f"{size / t / 1e6:.0f}" for t in curl)
    pendra_rounds = ", ".join(f"{size / t / 1e6:.0f}" for t in pendra)
    print(f"""## Install throughput (`bench/bench_install.py`)

A {args.size_mib} MiB file from a loopback aiohttp server (separate process, sendfile), median of
{args.rounds} alternating rounds. `pendra` is `worker.installs.download.download_verified`: stream,
SHA-256 while streaming, write, verify the pin, fsync, atomic rename. `curl` is `curl -sSf -o FILE`
(no hashing, no fsync).

| client | median MB/s | rounds (MB/s) |
|---|---|---|
| curl -o | {curl_rate:.0f} | {curl_rounds} |
| pendra install download | {pendra_rate:.0f} | {pendra_rounds} |

**Ratio pendra / curl: {ratio:.2f}×** (goal ≥ {GOAL}×: {verdict} it on this run).

Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Linux {platform.release()},
Python {platform.python_version()}, aiohttp {aiohttp.__version__},
{curl_version.stdout.splitlines()[0] if curl_version.stdout else "curl"}.
Measured {time.strftime("%Y-%m-%d")}. On loopback both clients are CPU-bound, so the numbers vary
with other load on the machine; over a real network link both are bound by the link.""")
    return 0


if __name__ == "__main__":
    sys.exit(main())

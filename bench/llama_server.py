"""llama.cpp's own C++ server as a baseline: the fastest peer for the same GGUF on the same box.

The benches compare the worker with ``llama-server`` when its binary is available: the path in
``PENDRA_BENCH_LLAMA_SERVER``, else ``llama-server`` on ``PATH``. Nothing downloads or builds it;
without a binary the llama-server rows are left out and the section says so. To build one from the
llama.cpp tree vendored in the llama-cpp-python sdist (about 25 minutes on 2 cores):

    pip download --no-deps --no-binary :all: llama-cpp-python==<the installed version>
    tar xzf llama_cpp_python-*.tar.gz
    cmake -S llama_cpp_python-*/vendor/llama.cpp -B build -DLLAMA_CURL=OFF \
          -DCMAKE_BUILD_TYPE=Release
    cmake --build build -j2 --target llama-server llama-bench
    export PENDRA_BENCH_LLAMA_SERVER=$PWD/build/bin/llama-server

It is started on 127.0.0.1 with the same GGUF, thread count and per-sequence context as the worker,
``-np`` slots with a unified KV cache and continuous batching (its defaults), and streamed to with
the same client through its OpenAI-compatible ``/v1/chat/completions``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.stack import free_port

ENV = "PENDRA_BENCH_LLAMA_SERVER"


def find_binary() -> Path | None:
    explicit = os.environ.get(ENV, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        return path if path.is_file() and os.access(path, os.X_OK) else None
    found = shutil.which("llama-server")
    return Path(found) if found else None


def version(binary: Path) -> str:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown version"
    lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    return next((ln for ln in lines if ln.startswith("version")), lines[-1] if lines else "?")


@dataclass
class LlamaServer:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def api(self) -> str:
        return self.url + "/v1"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.unlink(missing_ok=True)


def start(
    binary: Path, model: Path, *, threads: int, context: int, parallel: int, alias: str
) -> LlamaServer:
    """Start llama-server and wait until it answers /health."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    args = [
        str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
        "-t", str(threads), "-tb", str(threads), "-c", str(context * parallel),
        "-np", str(parallel), "--alias", alias, "--no-webui",
    ]  # fmt: skip
    process = subprocess.Popen(
        args, stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    server = LlamaServer(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace")[-3000:]
            server.close()
            raise RuntimeError(f"llama-server exited ({process.returncode}):\n{text}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.close()
    raise RuntimeError("llama-server did not become healthy in 120 s")

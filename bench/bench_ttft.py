"""Time to first token: the full Pendra path vs the built-in backend called in-process.

* full path: client → ``pendra sandbox`` ingress → WSS → ``pendra --no-ui`` → built-in backend;
  from sending the request to the first chunk with content arriving at the client.
* in-process: ``PendraBackend.chat_stream`` called in this process (same GGUF, settings and
  request; its model in a runner process, as in the worker); from the call to the first chunk
  with content.

Both models are loaded and warmed up first; requests alternate between the two; the added time is
what the ingress, the link and the worker's request handling cost on top of prefill + 1 token.

    .venv/bin/python bench/bench_ttft.py [--quick] [--requests 12]
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import cli_args  # noqa: E402
from bench.model_file import chat_model  # noqa: E402
from bench.profiling import take_profiles  # noqa: E402
from bench.report import Row, Section  # noqa: E402
from bench.sse_client import session, stream_chat  # noqa: E402
from bench.stack import Stack, start_stack  # noqa: E402
from bench.stats import median, percentile  # noqa: E402
from bench.workload import MODEL_ID, chat_body  # noqa: E402

CONTEXT = 2048


def has_content(chunk_json: str) -> bool:
    """Whether a ``chat.completion.chunk`` carries generated text (pure)."""
    for choice in json.loads(chunk_json).get("choices") or ():
        if (choice.get("delta") or {}).get("content"):
            return True
    return False


async def in_process_ttft(backend: Any, body: dict[str, Any]) -> float:
    started = time.monotonic_ns()
    stream = backend.chat_stream({**body, "stream": True})
    first: int | None = None
    try:
        async for chunk in stream:
            if first is None and has_content(chunk.json):
                first = time.monotonic_ns()
    finally:
        await stream.aclose()
    if first is None:
        raise RuntimeError("the in-process stream produced no content")
    return (first - started) / 1e6


async def full_ttft(stack: Stack, body: dict[str, Any]) -> float:
    async with session() as http:
        trace = await stream_chat(http, stack.api + "/chat/completions", body, stack.headers())
    return trace.ttft_s * 1000


async def measure(stack: Stack, model: Path, threads: int, requests: int):
    from worker.backends.pendra import PendraBackend
    from worker.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="pendra-bench-inproc-"))
    models_dir = home / "models"
    models_dir.mkdir()
    (models_dir / f"{MODEL_ID}.gguf").symlink_to(model.resolve())
    env = {
        **os.environ,
        "PENDRA_HOME": str(home),
        "PENDRA_MODELS_DIR": str(models_dir),
        "PENDRA_THREADS": str(threads),
        "PENDRA_MAX_CONTEXT": str(CONTEXT),
    }
    backend = PendraBackend(load_settings(env), watch=False)
    body = chat_body(2)
    full: list[float] = []
    local: list[float] = []
    try:
        await backend.refresh()
        await in_process_ttft(backend, body)  # load + warm up (not timed)
        await full_ttft(stack, body)
        for _ in range(requests):
            local.append(await in_process_ttft(backend, body))
            full.append(await full_ttft(stack, body))
    finally:
        await backend.close()
        shutil.rmtree(home, ignore_errors=True)
    return full, local


def main(argv: list[str] | None = None) -> int:
    p = cli_args.parser(__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=12, help="requests per side (12)")
    args = p.parse_args(argv)
    if args.quick:
        args.requests = 2
    model = chat_model(args.model)
    threads = cli_args.threads_or_default(args.threads)
    profile_dir = Path(tempfile.mkdtemp(prefix="pendra-bench-prof-")) if args.profile else None
    stack = start_stack(
        models={MODEL_ID: model},
        worker_env={"PENDRA_THREADS": str(threads), "PENDRA_MAX_CONTEXT": str(CONTEXT)},
        profile_dir=profile_dir,
    )
    try:
        stack.wait_for_models({MODEL_ID})
        full, local = asyncio.run(measure(stack, model, threads, args.requests))
    finally:
        stack.close()
    section = Section(
        title="Time to first token",
        intro=(
            f"`{model.name}`, {threads} thread(s), the benches' counting prompt, {args.requests} "
            f"alternating requests per side after warm-up. Full path: client → sandbox → WSS → "
            f"worker → built-in backend. In-process: `PendraBackend.chat_stream` called directly "
            f"(its model in a runner process on both sides)."
        ),
        columns=("full path", "in-process"),
    )
    f50, l50 = median(full), median(local)
    f90, l90 = percentile(full, 90), percentile(local, 90)
    section.rows = [
        Row("TTFT p50", f50, l50, "ms", higher_is_better=False),
        Row("TTFT p90", f90, l90, "ms", higher_is_better=False),
        Row("added p50", f50 - l50, None, "ms", higher_is_better=False),
        Row("added p90", f90 - l90, None, "ms", higher_is_better=False),
    ]
    section.profile = take_profiles(profile_dir)
    section.publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Prompt caching: the second turn of a long conversation, and requests that share nothing.

Two built-in backends in this process (each model in its own runner, as in the worker), one with
prompt caching on (the default) and one with it off (``builtin.prefix_cache = false``), same
GGUF, threads and context; requests alternate between them.

* **2nd turn**: a conversation whose first user turn is ~1,500 tokens. Turn 1 is a cold prompt;
  turn 2 re-sends turn 1, the answer and a short question. Time to first token of turn 2 with
  caching on, against turn 1's (goal ≤ 0.25×). Each round uses a new conversation (a different
  first line), so rounds never share a prefix.
* **no shared prefix**: prompts of ~500 tokens that share nothing with anything cached; prefill
  speed (prompt tokens / time to first token) with caching on against off (goal ≥ 0.98×).

    .venv/bin/python bench/bench_prefix_cache.py [--quick] [--rounds 6]
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
from bench.report import Row, Section  # noqa: E402
from bench.stats import median  # noqa: E402
from bench.workload import MODEL_ID  # noqa: E402

CONTEXT = 4096
COLOURS = ("red", "blue", "green", "amber", "violet", "grey", "white", "black")
ANIMALS = ("fox", "heron", "otter", "lynx", "badger", "owl", "hare", "seal")
PLACES = ("river", "bridge", "harbour", "forest", "tower", "meadow", "market", "quarry")


def long_text(seed: int, facts: int) -> str:
    """A deterministic text of ``facts`` short sentences (~13 tokens each) (pure)."""
    lines = [f"Notebook {seed}. Read these notes carefully."]
    for i in range(facts):
        colour = COLOURS[(i * 3 + seed) % len(COLOURS)]
        animal = ANIMALS[(i * 5 + seed) % len(ANIMALS)]
        place = PLACES[(i * 7 + seed) % len(PLACES)]
        lines.append(f"Note {i + 1}: the {colour} {animal} waits by the {place}.")
    return "\n".join(lines)


async def ttft(backend: Any, body: dict[str, Any]) -> tuple[float, str, dict[str, Any]]:
    """(ms to the first content chunk, the answer, the usage) of one streamed chat."""
    started = time.monotonic_ns()
    first: int | None = None
    parts: list[str] = []
    usage: dict[str, Any] = {}
    stream = backend.chat_stream(
        {**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    try:
        async for chunk in stream:
            data = json.loads(chunk.json)
            for choice in data.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    first = first or time.monotonic_ns()
                    parts.append(text)
            usage = data.get("usage") or usage
    finally:
        await stream.aclose()
    if first is None:
        raise RuntimeError("the stream produced no content")
    return (first - started) / 1e6, "".join(parts), usage


def backend_for(model: Path, threads: int, prefix_cache: bool) -> tuple[Any, Path]:
    from worker.backends.pendra import PendraBackend
    from worker.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="pendra-bench-prefix-"))
    models_dir = home / "models"
    models_dir.mkdir()
    (models_dir / f"{MODEL_ID}.gguf").symlink_to(model.resolve())
    env = {
        **os.environ,
        "PENDRA_HOME": str(home),
        "PENDRA_MODELS_DIR": str(models_dir),
        "PENDRA_THREADS": str(threads),
        "PENDRA_MAX_CONTEXT": str(CONTEXT),
        "PENDRA_PREFIX_CACHE": "1" if prefix_cache else "0",
    }
    return PendraBackend(load_settings(env), watch=False), home


async def measure(model: Path, threads: int, rounds: int, facts: int, fresh_facts: int) -> dict:
    on, on_home = backend_for(model, threads, True)
    off, off_home = backend_for(model, threads, False)
    results: dict[str, list[float]] = {
        "turn1": [],
        "turn2": [],
        "turn2_off": [],
        "cached": [],
        "prompt1": [],
        "turn1_total": [],
        "fresh_on": [],
        "fresh_off": [],
    }
    try:
        await on.refresh()
        await off.refresh()
        warm = {
            "model": MODEL_ID,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
            "temperature": 0,
        }
        for backend in (on, off):
            await ttft(backend, warm)  # load the model (not timed)
        for round_ in range(rounds):
            # -- a two-turn conversation, on each backend ----------------------------------------
            for backend, label in ((on, "on"), (off, "off")):
                turn1 = [
                    {"role": "user", "content": long_text(round_ * 2 + (label == "off"), facts)}
                ]
                body = {"model": MODEL_ID, "messages": turn1, "max_tokens": 24, "temperature": 0}
                first_ms, answer, usage1 = await ttft(backend, body)
                turn2 = [
                    *turn1,
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": "Which animal waits by the tower?"},
                ]
                second_ms, _, usage2 = await ttft(backend, {**body, "messages": turn2})
                if label == "on":
                    results["turn1"].append(first_ms)
                    results["turn2"].append(second_ms)
                    results["prompt1"].append(usage1["prompt_tokens"])
                    results["turn1_total"].append(usage1["total_tokens"])
                    details = usage2.get("prompt_tokens_details") or {}
                    results["cached"].append(details.get("cached_tokens") or 0)
                else:
                    results["turn2_off"].append(second_ms)
            # -- prompts that share nothing, alternating ---------------------------------------
            for i in range(2):
                for backend, key in ((on, "fresh_on"), (off, "fresh_off")):
                    text = long_text(1000 + round_ * 4 + i * 2 + (key == "fresh_off"), fresh_facts)
                    body = {
                        "model": MODEL_ID,
                        "messages": [{"role": "user", "content": text}],
                        "max_tokens": 1,
                        "temperature": 0,
                    }
                    ms, _, usage = await ttft(backend, body)
                    results[key].append(usage["prompt_tokens"] / (ms / 1000))
    finally:
        await on.close()
        await off.close()
        shutil.rmtree(on_home, ignore_errors=True)
        shutil.rmtree(off_home, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = cli_args.parser(__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6, help="conversations per side (6)")
    args = p.parse_args(argv)
    facts, fresh = (115, 38) if not args.quick else (12, 6)
    if args.quick:
        args.rounds = 1
    model = chat_model(args.model)
    threads = cli_args.threads_or_default(args.threads)
    r = asyncio.run(measure(model, threads, args.rounds, facts, fresh))
    section = Section(
        title="Prompt caching",
        intro=(
            f"`{model.name}`, {threads} thread(s), {args.rounds} rounds; two built-in backends in "
            f"one process (runner processes), prompt caching on and off, requests alternating. "
            f"2nd turn: a conversation whose first turn is {median(r['prompt1']):.0f} prompt "
            f"tokens; TTFT of turn 2 (turn 1 + answer + a question) against turn 1's, caching "
            f"on. No shared prefix: prefill speed of prompts sharing nothing with the cache."
        ),
        columns=("measured", "baseline"),
    )
    section.rows = [
        Row(
            "2nd turn TTFT vs 1st turn",
            median(r["turn2"]),
            median(r["turn1"]),
            "ms",
            goal=0.25,
            higher_is_better=False,
        ),
        Row(
            "2nd turn TTFT, caching on vs off",
            median(r["turn2"]),
            median(r["turn2_off"]),
            "ms",
            higher_is_better=False,
        ),
        Row(
            "no shared prefix: prefill, on vs off",
            median(r["fresh_on"]),
            median(r["fresh_off"]),
            "tok/s",
            goal=0.98,
        ),
    ]
    section.notes = [
        f"prompt tokens served from the cache on turn 2 "
        f"(`usage.prompt_tokens_details.cached_tokens`): median {median(r['cached']):.0f}, of "
        f"turn 1's {median(r['turn1_total']):.0f} (prompt + answer)."
    ]
    section.publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

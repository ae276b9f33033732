"""The arguments every speed bench takes, so ``bench/run.py --quick`` reaches them all."""

from __future__ import annotations

import argparse
from pathlib import Path


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick",
        action="store_true",
        help="a tiny configuration that only proves the bench runs (used by the smoke test)",
    )
    p.add_argument(
        "--model",
        type=Path,
        metavar="GGUF",
        help="chat GGUF to decode with (default: the real Gemma 3 270M, assembled on first use)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="llama.cpp decode threads for both the worker and the raw baseline "
        "(default: the worker's own default, physical cores)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="run the worker under cProfile and add the top functions to the section",
    )
    return p


def threads_or_default(threads: int | None) -> int:
    """The thread count the worker would choose by itself (so both sides use the same)."""
    if threads is not None:
        if threads < 1:
            raise SystemExit(f"--threads must be at least 1, got {threads}")
        return threads
    from worker.backends.pendra.runtime import default_threads

    return default_threads()

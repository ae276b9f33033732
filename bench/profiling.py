"""Summaries of the worker's cProfile output for the bench sections."""

from __future__ import annotations

import io
import pstats
import shutil
from pathlib import Path


def summarise_dir(directory: Path, top: int = 12) -> str | None:
    """Summaries of every ``*.prof`` in ``directory`` (one per process), or None if none."""
    parts = [f"[{path.stem}] " + summarise(path, top) for path in sorted(directory.glob("*.prof"))]
    return "\n\n".join(parts) or None


def take_profiles(directory: Path | None) -> str | None:
    """The summaries of a bench's ``--profile`` directory, which is then removed (None
    without one)."""
    if directory is None:
        return None
    summary = summarise_dir(directory)
    shutil.rmtree(directory, ignore_errors=True)
    return summary


def summarise(path: Path, top: int = 12) -> str:
    """The ``top`` functions by own time (tottime), then by cumulative time, as text."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.strip_dirs()
    total = stats.total_tt  # type: ignore[attr-defined]
    out.write(f"main thread, {total:.2f} s profiled (cProfile; other threads not shown)\n")
    out.write("-- by own time --\n")
    stats.sort_stats("tottime").print_stats(top)
    out.write("-- by cumulative time --\n")
    stats.sort_stats("cumulative").print_stats(top)
    return _trim(out.getvalue())


def _trim(text: str) -> str:
    """pstats prints headers and blank lines that only take room in a doc."""
    keep = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("Ordered by", "List reduced")) or ".prof" in line:
            continue
        if "function calls" in stripped and "primitive" in stripped:
            continue
        keep.append(line.rstrip())
    return "\n".join(keep)


def engine_step_cost(directory: Path) -> str | None:
    """The runner engine thread's CPU per decode step outside llama.cpp: from the ``runner-*.prof``
    files a runner writes with ``PENDRA_RUNNER_PROFILE`` (profiled with the thread's CPU clock)."""
    lines = []
    for path in sorted(directory.glob("runner-*.prof")):
        stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
        own = {func[2]: (calls, tottime) for func, (_cc, calls, tottime, _ct, _callers)
               in stats.items()}  # fmt: skip
        steps = own.get("_step", (0, 0.0))[0] or own.get("_generate", (0, 0.0))[0]
        if not steps:
            continue
        total = sum(tottime for _calls, tottime in own.values())
        native = own.get("decode", (0, 0.0))[1] + own.get("sample", (0, 0.0))[1]
        python = total - native
        lines.append(
            f"{path.stem}: {steps} steps, {1e6 * python / steps:.0f} µs of Python per step "
            f"({100 * python / total:.1f} % of the engine thread's CPU; llama_decode + sampling "
            f"{1e3 * native / steps:.2f} ms per step)"
        )
    return "\n".join(lines) or None

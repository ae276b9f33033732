"""Install progress as one line of text for a terminal (pure; the CLI redraws it in place)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.units import format_bytes, format_duration
from worker.units import format_rate as _format_rate


def progress_line(event: Mapping[str, Any], width: int = 80) -> str:
    """``ref → backend  phase  [#####-----]  45%  1.2 GB / 2.7 GB  85.0 MB/s  ETA 17s``"""
    done = int(event.get("bytes_done") or 0)
    total = event.get("bytes_total")
    phase = str(event.get("phase") or "")
    head = f"{event.get('ref')} → {event.get('backend')}  {phase:<11}"
    parts: list[str] = []
    if isinstance(total, int) and total > 0:
        fraction = max(0.0, min(1.0, done / total))
        bar_width = max(10, min(30, width - len(head) - 50))
        filled = int(fraction * bar_width)
        parts.append(f"[{'#' * filled}{'-' * (bar_width - filled)}] {fraction * 100:5.1f}%")
        parts.append(f"{format_bytes(done)} / {format_bytes(total)}")
    elif done:
        parts.append(format_bytes(done))
    if phase == "downloading":
        rate = _format_rate(event.get("rate_bps"), unknown="")
        if rate:
            parts.append(rate)
            parts.append(f"ETA {format_duration(event.get('eta_s'), unknown='--')}")
    elif event.get("detail") and phase not in {"done", "failed", "cancelled"}:
        parts.append(str(event["detail"]))
    line = "  ".join([head, *parts])
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"

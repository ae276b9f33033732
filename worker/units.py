"""Human-readable sizes, rates and durations, one style across the CLI and the app.

Sizes of files and downloads are in powers of 1000 (``253 MB``, as disks and links are sold);
GPU and system memory in powers of 1024 (``79.6 GiB``, as nvidia-smi shows it). Anything that is
not a number (missing, null, a bool from a confused producer, negative) renders as ``unknown``.
"""

from __future__ import annotations

import math
from typing import Any

UNKNOWN = "—"
_SI_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if math.isnan(value) or value < 0:
        return None
    return float(value)


def format_bytes(value: Any, *, binary: bool = False, unknown: str = UNKNOWN) -> str:
    """``1.5 GB`` (or ``1.5 GiB`` with ``binary``); three significant digits at most."""
    size = _number(value)
    if size is None:
        return unknown
    step, units = (1024.0, _BINARY_UNITS) if binary else (1000.0, _SI_UNITS)
    for unit in units:
        if size < step or unit == units[-1]:
            if unit == "B":
                return f"{int(size)} B"
            return f"{size:.1f} {unit}" if size < 100 else f"{size:.0f} {unit}"
        size /= step
    return unknown  # pragma: no cover - the loop always returns


def format_rate(bytes_per_s: Any, *, unknown: str = UNKNOWN) -> str:
    """``12.3 MB/s``; nothing known, or zero, is ``unknown``."""
    rate = _number(bytes_per_s)
    if not rate:
        return unknown
    return f"{format_bytes(rate)}/s"


def format_duration(seconds: Any, *, unknown: str = UNKNOWN) -> str:
    """Compact duration for ETAs and uptimes: ``45s``, ``3m 05s``, ``2h 14m``, ``3d 4h``."""
    value = _number(seconds)
    if value is None:
        return unknown
    total = int(value)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"

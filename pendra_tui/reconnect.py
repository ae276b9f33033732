"""Backoff between attempts to reach the worker's admin API (pure)."""

from __future__ import annotations

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0


def backoff_delay(
    attempt: int, start: float = BACKOFF_START_S, cap: float = BACKOFF_MAX_S
) -> float:
    """Delay before try number ``attempt`` (0-based): 0.5, 1, 2, 4, 8, 10, 10 … seconds.

    Capped low because the user is watching: a worker that comes back shows up within 10 s.
    """
    if attempt <= 0:
        return start
    return min(cap, start * (2 ** min(attempt, 16)))

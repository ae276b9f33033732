"""Worker log lines for the log pane: their level, and which ones a filter lets through (pure).

Lines arrive formatted by the worker (``2025-01-02 03:04:05 WARNING pendra.link: …``, or without
the date in older tails); the level is the first level word among the first few fields.
"""

from __future__ import annotations

from collections.abc import Sequence

LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
"""Levels in order; ``critical`` counts as ``error``."""

_ALIASES = {"warn": "warning", "critical": "error", "fatal": "error"}


def line_level(line: str) -> str:
    """The level of a formatted log line; ``info`` when it names none."""
    for word in line.split(maxsplit=4)[:4]:
        name = word.rstrip(":").lower()
        name = _ALIASES.get(name, name)
        if name in LEVELS:
            return name
    return "info"


def next_level(current: str) -> str:
    """The level filter cycles debug → info → warning → error → debug."""
    index = LEVELS.index(current) if current in LEVELS else 0
    return LEVELS[(index + 1) % len(LEVELS)]


def passes(line: str, min_level: str, query: str) -> bool:
    """Whether ``line`` is at least ``min_level`` and contains every word of ``query``."""
    if LEVELS.index(line_level(line)) < LEVELS.index(min_level):
        return False
    lowered = line.lower()
    return all(word in lowered for word in query.lower().split())


def visible(lines: Sequence[str], min_level: str, query: str) -> list[int]:
    """Indices of the lines the filter lets through, in order."""
    return [i for i, line in enumerate(lines) if passes(line, min_level, query)]

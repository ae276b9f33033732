"""Braille area plots (btop/nvitop style), the pure half: 2×4 dots per character cell.

:func:`bucket_series` turns timestamped samples into one value per dot column over a fixed time
window (the newest sample at the right edge, so the x axis is time, not sample count), and
:func:`braille_area` draws values as rows of braille characters. ``pendra_tui.widgets.plot``
sizes and colours them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BRAILLE_BASE = 0x2800
LEFT_DOTS = (0x01, 0x02, 0x04, 0x40)
"""Dot bits of a cell's left column, top to bottom."""
RIGHT_DOTS = (0x08, 0x10, 0x20, 0x80)

Point = tuple[float, float | None]
"""``(unix time, value)``; ``None`` where the worker could not read the value."""


def bucket_series(
    points: Sequence[Point], end_ts: float, window_s: float, columns: int
) -> list[float | None]:
    """One value per column for the ``window_s`` seconds up to ``end_ts`` (pure).

    A column holds the mean of the samples that fall in its slice of time. Columns before the
    first sample stay ``None`` (no data: drawn blank); a column inside the data that no sample
    fell in (columns narrower than the sampling interval) repeats the column before it.
    """
    if columns <= 0 or window_s <= 0:
        return []
    start = end_ts - window_s
    width = window_s / columns
    sums = [0.0] * columns
    counts = [0] * columns
    seen = [False] * columns
    for ts, value in points:
        if ts < start or ts > end_ts:
            continue
        index = min(columns - 1, int((ts - start) / width))
        seen[index] = True
        if value is not None:
            sums[index] += value
            counts[index] += 1
    values: list[float | None] = [
        sums[i] / counts[i] if counts[i] else None for i in range(columns)
    ]
    started = False
    for i in range(columns):
        if seen[i] or values[i] is not None:
            started = True
        elif started and i > 0:
            values[i] = values[i - 1]
    return values


def nice_ceiling(value: float) -> float:
    """The next "round" number at or above ``value``: 1, 2, 5, 10, 20, 50 … (pure)."""
    if value <= 0 or math.isnan(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        candidate = step * 10.0**exponent
        if candidate >= value * (1 - 1e-9):
            return candidate
    return 10.0 ** (exponent + 1)


def braille_area(values: Sequence[float | None], height: int, maximum: float) -> list[str]:
    """Rows (top first) of an area plot: two values per character, four dot rows per line.

    A value above zero shows at least one dot, so a trickle is distinguishable from idle; zero
    and ``None`` are blank (pure).
    """
    if height <= 0:
        return []
    dots_high = height * 4
    levels: list[int] = []
    for value in values:
        if value is None or value <= 0 or maximum <= 0:
            levels.append(0)
        else:
            levels.append(max(1, min(dots_high, round(value / maximum * dots_high))))
    if len(levels) % 2:
        levels.append(0)
    rows: list[str] = []
    for row in range(height):
        floor = (height - 1 - row) * 4
        chars = []
        for left, right in zip(levels[0::2], levels[1::2], strict=True):
            bits = 0
            for k in range(max(0, min(4, left - floor))):
                bits |= LEFT_DOTS[3 - k]
            for k in range(max(0, min(4, right - floor))):
                bits |= RIGHT_DOTS[3 - k]
            chars.append(chr(BRAILLE_BASE + bits))
        rows.append("".join(chars))
    return rows

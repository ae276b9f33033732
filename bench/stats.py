"""Pure arithmetic of the benchmarks: percentiles, rates and ratios (unit-tested, no I/O)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks.

    Raises ``ValueError`` on an empty sample: a missing measurement must not read as zero.
    """
    if not values:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0-100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return float(ordered[low])
    weight = position - low
    return float(ordered[low] * (1.0 - weight) + ordered[high] * weight)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def rate(count: float, seconds: float) -> float:
    """Events per second; a non-positive interval is a measurement error, not infinity."""
    if seconds <= 0.0:
        raise ValueError(f"cannot compute a rate over {seconds} s")
    return count / seconds


def ratio(ours: float, baseline: float) -> float:
    """``ours / baseline``; a zero baseline means the baseline measurement failed."""
    if baseline <= 0.0:
        raise ValueError(f"baseline {baseline} is not positive")
    return ours / baseline


def intervals(times: Sequence[float]) -> list[float]:
    """Gaps between consecutive timestamps."""
    return [b - a for a, b in itertools.pairwise(times)]


def decode_rate(first_token_s: float, last_token_s: float, tokens: int) -> float:
    """Tokens per second of the decode phase: the tokens after the first over the time from the
    first token to the last (the first token's time is prefill, measured by TTFT instead)."""
    if tokens < 2:
        raise ValueError(f"need at least 2 tokens to time decoding, got {tokens}")
    return rate(tokens - 1, last_token_s - first_token_s)

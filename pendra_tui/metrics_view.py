"""The worker's metrics history as the dashboard holds it: samples in, plot series out (pure).

The worker keeps the history (``GET /v1/history``) and publishes each new sample as a
``metrics`` event; the dashboard loads the first and appends the others, so its plots show the
minutes before it attached. Series are ``(ts, value)`` tuples for :mod:`pendra_tui.widgets.plot`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pendra_tui.plotting import Point

MAX_SAMPLES = 600
"""More than the worker's 15 minutes at 2 s, so nothing it sends is dropped here."""

WINDOWS_S: tuple[float, ...] = (300.0, 900.0)
"""The plot windows ``z`` switches between: the last 5 and the last 15 minutes."""


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def percent(used: Any, total: Any) -> float | None:
    """``used`` as a percentage of ``total``; ``None`` when either is unknown."""
    used_n, total_n = _number(used), _number(total)
    if used_n is None or not total_n:
        return None
    return 100.0 * used_n / total_n


@dataclass
class MetricsView:
    """The samples, oldest first; ``interval_s`` as the worker reported it."""

    interval_s: float = 2.0
    samples: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))

    def load(self, doc: Mapping[str, Any]) -> None:
        """Replace everything with a ``GET /v1/history`` answer."""
        interval = _number(doc.get("interval_s"))
        if interval:
            self.interval_s = interval
        self.samples.clear()
        for sample in doc.get("samples") or []:
            self.add(sample)

    def add(self, sample: Any) -> bool:
        """Append one sample; an old or repeated one (the event raced the history) is ignored."""
        if not isinstance(sample, Mapping) or _number(sample.get("ts")) is None:
            return False
        ts = float(sample["ts"])
        if self.samples and ts <= float(self.samples[-1]["ts"]):
            return False
        self.samples.append(dict(sample))
        return True

    @property
    def latest(self) -> dict[str, Any] | None:
        return self.samples[-1] if self.samples else None

    @property
    def end_ts(self) -> float | None:
        """The newest sample's time: the right edge of every plot."""
        return float(self.samples[-1]["ts"]) if self.samples else None

    def _series(self, read: Callable[[Mapping[str, Any]], float | None]) -> tuple[Point, ...]:
        return tuple((float(s["ts"]), read(s)) for s in self.samples)

    def series(self, key: str) -> tuple[Point, ...]:
        """A top-level counter: ``tokens_per_s``, ``in_flight`` …"""
        return self._series(lambda s: _number(s.get(key)))

    def gpu_series(self, index: int, key: str) -> tuple[Point, ...]:
        """``utilization`` or ``memory`` (percent of the GPU's memory) of GPU ``index``."""

        def read(sample: Mapping[str, Any]) -> float | None:
            for gpu in sample.get("gpus") or []:
                if isinstance(gpu, Mapping) and gpu.get("index") == index:
                    if key == "memory":
                        return percent(gpu.get("memory_used"), gpu.get("memory_total"))
                    return _number(gpu.get(key))
            return None

        return self._series(read)

    def host_series(self, key: str) -> tuple[Point, ...]:
        """``cpu_percent``, ``process_cpu_percent`` or ``memory`` (percent of RAM in use)."""

        def read(sample: Mapping[str, Any]) -> float | None:
            host = sample.get("host")
            if not isinstance(host, Mapping):
                return None
            if key == "memory":
                return percent(host.get("memory_used"), host.get("memory_total"))
            return _number(host.get(key))

        return self._series(read)

    def peak(self, key: str, window_s: float) -> float | None:
        """The highest ``key`` in the last ``window_s`` seconds (``None`` without data)."""
        end = self.end_ts
        if end is None:
            return None
        values = [v for ts, v in self.series(key) if v is not None and ts >= end - window_s]
        return max(values) if values else None

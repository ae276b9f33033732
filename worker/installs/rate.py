"""Download rate and ETA from progress samples (pure).

The rate is an exponentially weighted average over time, so a single slow or bursty chunk does not
swing the ETA, yet a real change in link speed shows within a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RateMeter:
    """Feed ``(t, bytes_done)`` samples; read ``rate_bps`` and ``eta_s(total)``."""

    half_life_s: float = 2.0
    min_interval_s: float = 0.2
    rate_bps: float | None = None
    _t: float | None = None
    _done: int = 0

    def reset(self, t: float, done: int) -> None:
        """Start over from ``done`` bytes (a resume or a restart is not download speed)."""
        self._t, self._done, self.rate_bps = t, done, None

    def update(self, t: float, done: int) -> float | None:
        if self._t is None or done < self._done:
            self.reset(t, done)
            return self.rate_bps
        elapsed = t - self._t
        if elapsed < self.min_interval_s:
            return self.rate_bps
        instant = (done - self._done) / elapsed
        if self.rate_bps is None:
            self.rate_bps = instant
        else:
            weight = 1.0 - 0.5 ** (elapsed / self.half_life_s)
            self.rate_bps += weight * (instant - self.rate_bps)
        self._t, self._done = t, done
        return self.rate_bps

    def eta_s(self, done: int, total: int | None) -> float | None:
        if total is None or not self.rate_bps or self.rate_bps <= 0:
            return None
        return max(0.0, (total - done) / self.rate_bps)

"""Reconnect delays: exponential with full jitter, reset after a stable connection.

Full jitter (a uniform draw in ``[0, min(cap, base·2^n)]``) spreads a fleet of workers that lost the
control plane at the same moment, so they do not come back as a thundering herd; resetting after a
connection stayed up for ``stable_s`` keeps one old outage from making later reconnects slow
(cloudflared's BackoffHandler grace period).
"""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_ceiling(attempt: int, base_s: float, cap_s: float) -> float:
    """The upper bound of the delay before reconnect attempt ``attempt`` (0-based)."""
    return min(cap_s, base_s * (2 ** min(attempt, 32)))


class Backoff:
    def __init__(
        self,
        base_s: float = 1.0,
        cap_s: float = 60.0,
        stable_s: float = 60.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.stable_s = stable_s
        self.attempt = 0
        self._rand = rand

    def next_delay(self) -> float:
        """The delay before the next attempt; at least a tenth of ``base_s`` so it never spins."""
        ceiling = backoff_ceiling(self.attempt, self.base_s, self.cap_s)
        self.attempt += 1
        return max(self.base_s / 10, ceiling * self._rand())

    def connection_ended(self, connected_for_s: float | None) -> None:
        """Reset the attempt counter when the connection that just ended had been stable."""
        if connected_for_s is not None and connected_for_s >= self.stable_s:
            self.attempt = 0

"""Reconnect backoff: exponential, full jitter, capped, reset after a stable connection."""

from __future__ import annotations

from worker.link.backoff import Backoff, backoff_ceiling


def test_ceiling_doubles_up_to_the_cap() -> None:
    assert [backoff_ceiling(n, 1.0, 60.0) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_ceiling(10_000, 1.0, 60.0) == 60.0


def test_full_jitter_stays_within_bounds_and_never_zero() -> None:
    low = Backoff(rand=lambda: 0.0)
    assert low.next_delay() == 0.1
    high = Backoff(rand=lambda: 1.0)
    assert [high.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_reset_only_after_a_stable_connection() -> None:
    b = Backoff(rand=lambda: 1.0, stable_s=60)
    for _ in range(5):
        b.next_delay()
    b.connection_ended(5.0)
    assert b.next_delay() == 32
    b.connection_ended(61.0)
    assert b.next_delay() == 1
    b.connection_ended(None)
    assert b.next_delay() == 2

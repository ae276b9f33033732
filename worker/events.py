"""An in-process publish/subscribe bus for worker events.

Components publish small dict events (state changes, install progress, GPU samples, request
counters, log lines); the admin API streams them to the TUI and the CLI, and the link turns some of
them into status pushes. Publishing never blocks: each subscriber has a bounded queue and a slow one
loses its oldest events (and is told how many) instead of making the worker buffer without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

Event = dict[str, Any]


class Subscription:
    """One subscriber's bounded queue; iterate it with ``async for``."""

    def __init__(self, bus: EventBus, maxsize: int, kinds: frozenset[str] | None) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._kinds = kinds
        self.dropped = 0

    def offer(self, event: Event) -> None:
        if self._kinds is not None and event["kind"] not in self._kinds:
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> Event:
        event = await self._queue.get()
        if self.dropped:
            event = {**event, "dropped_before": self.dropped}
            self.dropped = 0
        return event

    def close(self) -> None:
        self._bus._subscribers.discard(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        try:
            while True:
                yield await self.get()
        finally:
            self.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of events to any number of bounded subscriptions."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    def publish(self, kind: str, **data: Any) -> None:
        event: Event = {"kind": kind, "ts": time.time(), **data}
        for subscription in tuple(self._subscribers):
            subscription.offer(event)

    def subscribe(self, *, maxsize: int = 1000, kinds: set[str] | None = None) -> Subscription:
        subscription = Subscription(self, maxsize, frozenset(kinds) if kinds else None)
        self._subscribers.add(subscription)
        return subscription

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

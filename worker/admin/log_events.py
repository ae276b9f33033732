"""Log lines as ``"log"`` events on the EventBus, plus the in-memory tail behind ``pendra logs``.

Attach one :class:`EventLogHandler` to the root logger. It must never slow or break the code that
logs: records are formatted, kept in a bounded tail and offered to the bus without waiting; records
from other threads are handed to the event loop with ``call_soon_threadsafe`` (the bus is not
thread-safe); a record logged while publishing another is dropped rather than recursing. The
process-wide redaction filter runs first, so a secret never reaches the tail or a subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque

from worker.events import EventBus
from worker.logs import LOG_FORMAT, redaction_filter

DEFAULT_TAIL = 2000


class EventLogHandler(logging.Handler):
    def __init__(
        self,
        events: EventBus | None = None,
        *,
        tail_lines: int = DEFAULT_TAIL,
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        self.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        self.addFilter(redaction_filter())
        self._tail: deque[str] = deque(maxlen=max(1, tail_lines))
        self._events = events
        self._loop: asyncio.AbstractEventLoop | None = None
        self._local = threading.local()
        if events is not None:
            self._capture_loop()

    def attach(self, events: EventBus, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Publish to ``events`` from now on; call it on the loop that owns the bus."""
        self._events = events
        self._loop = loop
        if loop is None:
            self._capture_loop()

    def detach(self) -> None:
        self._events = None
        self._loop = None

    def tail(self, n: int) -> list[str]:
        if n <= 0:
            return []
        lines = list(self._tail)
        return lines[-n:]

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._local, "busy", False):
            return  # logging from inside our own publish: drop it instead of recursing
        self._local.busy = True
        try:
            line = self.format(record)
            self._tail.append(line)
            events = self._events
            if events is not None:
                self._deliver(
                    events,
                    {
                        "level": record.levelname.lower(),
                        "logger": record.name,
                        "message": record.getMessage(),
                        "line": line,
                    },
                )
        except Exception:
            pass  # a log line that cannot be shown must not become an error in the caller
        finally:
            self._local.busy = False

    def _deliver(self, events: EventBus, data: dict[str, str]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self._loop
        if loop is None or running is loop:
            events.publish("log", **data)
        elif not loop.is_closed():
            # RuntimeError: the loop closed between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: events.publish("log", **data))

    def _capture_loop(self) -> None:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None


def install_log_handler(
    events: EventBus | None = None, *, tail_lines: int = DEFAULT_TAIL
) -> EventLogHandler:
    """Add an :class:`EventLogHandler` to the root logger (replacing one added before)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, EventLogHandler):
            root.removeHandler(handler)
    handler = EventLogHandler(events, tail_lines=tail_lines)
    root.addHandler(handler)
    return handler

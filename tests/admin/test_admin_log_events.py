"""EventLogHandler: log records become "log" events and a bounded, redacted tail."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import pytest

from worker.admin.log_events import EventLogHandler, install_log_handler
from worker.events import EventBus
from worker.logs import RedactingFilter


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("pendra.test.logevents")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    logger.handlers.clear()
    logger.propagate = True


async def test_records_are_published_with_level_logger_message_and_line(
    logger: logging.Logger,
) -> None:
    bus = EventBus()
    events = bus.subscribe(kinds={"log"})
    logger.addHandler(EventLogHandler(bus))
    logger.warning("disk %s is %d%% full", "/models", 93)
    event = await asyncio.wait_for(events.get(), 1)
    assert event["kind"] == "log"
    assert event["level"] == "warning"
    assert event["logger"] == "pendra.test.logevents"
    assert event["message"] == "disk /models is 93% full"
    assert event["line"].endswith("WARNING pendra.test.logevents: disk /models is 93% full")


def test_tail_is_bounded_and_returns_the_newest(logger: logging.Logger) -> None:
    handler = EventLogHandler(tail_lines=3)
    logger.addHandler(handler)
    for i in range(10):
        logger.info("n=%d", i)
    assert [line.rsplit("=", 1)[1] for line in handler.tail(100)] == ["7", "8", "9"]
    assert len(handler.tail(2)) == 2
    assert handler.tail(0) == []


async def test_secrets_are_redacted_in_tail_and_events(logger: logging.Logger) -> None:
    bus = EventBus()
    events = bus.subscribe(kinds={"log"})
    handler = EventLogHandler(bus)
    logger.addHandler(handler)
    key = "pdk_live_0123456789abcdefghijklmnop"
    logger.info("loaded key %s with Authorization: Bearer sk-abcdef123456", key)
    event = await asyncio.wait_for(events.get(), 1)
    for text in (event["message"], event["line"], handler.tail(1)[0]):
        assert key not in text and "sk-abcdef123456" not in text
        assert "[REDACTED]" in text


async def test_records_from_other_threads_reach_the_loop_safely(logger: logging.Logger) -> None:
    bus = EventBus()
    events = bus.subscribe(kinds={"log"})
    logger.addHandler(EventLogHandler(bus))
    threads = [
        threading.Thread(target=lambda i=i: logger.info("from thread %d", i)) for i in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    received = [await asyncio.wait_for(events.get(), 1) for _ in range(5)]
    assert sorted(e["message"] for e in received) == [f"from thread {i}" for i in range(5)]


async def test_a_slow_subscriber_never_blocks_logging(logger: logging.Logger) -> None:
    bus = EventBus()
    slow = bus.subscribe(kinds={"log"}, maxsize=5)
    logger.addHandler(EventLogHandler(bus))
    for i in range(1000):
        logger.info("burst %d", i)
    first = await slow.get()
    assert first["dropped_before"] == 995
    assert first["message"] == "burst 995"


async def test_logging_while_publishing_does_not_recurse(logger: logging.Logger) -> None:
    class LoggingBus(EventBus):
        def publish(self, kind: str, **data: object) -> None:
            logger.error("publishing %s", kind)  # would recurse without the guard
            super().publish(kind, **data)

    bus = LoggingBus()
    events = bus.subscribe(kinds={"log"})
    handler = EventLogHandler(bus)
    logger.addHandler(handler)
    logger.info("once")
    event = await asyncio.wait_for(events.get(), 1)
    assert event["message"] == "once"
    assert [line.rsplit(": ", 1)[1] for line in handler.tail(10)] == ["once"]


def test_install_log_handler_replaces_a_previous_one() -> None:
    root = logging.getLogger()
    first = install_log_handler(tail_lines=10)
    second = install_log_handler(tail_lines=10)
    try:
        assert first not in root.handlers and second in root.handlers
    finally:
        root.removeHandler(second)


def test_model_token_lines_are_not_mistaken_for_credentials() -> None:
    redact = RedactingFilter().redact
    line = "load: control-looking token: 1 '</s>' was not control-type; this is probably a bug"
    assert redact(line) == line
    assert redact("token id: 262144") == "token id: 262144"
    for secret_line in (
        "token=ghp_0123456789abcdefABCDEF",
        'api_key: "short1"',
        "password=hunter2",
        "secret: s3",
    ):
        assert "[REDACTED]" in redact(secret_line), secret_line

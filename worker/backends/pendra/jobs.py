"""Requests handed from the event loop to an engine thread, and their results coming back.

The engine thread owns the llama.cpp context; the event loop owns the client. A job carries the
prepared input one way and events the other (``loop.call_soon_threadsafe`` into an asyncio queue),
plus a cancel flag the engine checks between tokens, so a client that goes away stops its
generation within one decode step.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from worker.backends.base import Usage
from worker.backends.pendra.params import ChatParams


@dataclass(frozen=True)
class TextEvent:
    text: str


@dataclass(frozen=True)
class DoneEvent:
    finish_reason: str
    usage: Usage


@dataclass(frozen=True)
class ErrorEvent:
    error: BaseException


@dataclass(frozen=True)
class ResultEvent:
    value: Any


JobEvent = TextEvent | DoneEvent | ErrorEvent | ResultEvent


@dataclass
class Job:
    """Base: the thread-safe event channel and the cancel flag."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[JobEvent] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, event: JobEvent) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled.set()

    def fail(self, error: BaseException) -> None:
        self.emit(ErrorEvent(error))

    def cancel(self) -> None:
        self.cancelled.set()

    async def events(self) -> AsyncIterator[JobEvent]:
        while True:
            event = await self.queue.get()
            yield event
            if not isinstance(event, TextEvent):
                return


@dataclass
class ChatJob(Job):
    params: ChatParams | None = None
    prompt: list[int] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    max_new: int = 0

    def text(self, text: str) -> None:
        if text:
            self.emit(TextEvent(text))

    def done(self, finish_reason: str, completion_tokens: int) -> None:
        self.emit(DoneEvent(finish_reason, Usage(len(self.prompt), completion_tokens)))


@dataclass
class EmbedJob(Job):
    inputs: list[list[int]] = field(default_factory=list)

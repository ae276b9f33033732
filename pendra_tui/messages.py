"""App-wide messages: what background workers post to the screens that own the state.

Workers never touch widgets; they post one of these and a handler on the screen updates its
model and redraws (house style: harlequin's threading rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class StatusLoaded(Message):
    """A full status document (docs/status.md) from the admin API."""

    doc: dict[str, Any]


@dataclass
class WorkerEvent(Message):
    """One event from the admin event stream."""

    event: dict[str, Any]


@dataclass
class HistoryLoaded(Message):
    """The worker's metrics history (``GET /v1/history``)."""

    doc: dict[str, Any]


@dataclass
class RecentLoaded(Message):
    """The worker's recent request records (``GET /v1/requests``), newest first."""

    records: list[dict[str, Any]]


@dataclass
class LogLines(Message):
    """The log tail fetched when the dashboard (re)connects."""

    lines: list[str] = field(default_factory=list)


@dataclass
class WorkerGone(Message):
    """The admin API stopped answering (or never did); ``retry_in`` seconds until the next try."""

    reason: str
    retry_in: float

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, WorkerGone)

"""A server-sent-events decoder (the subset OpenAI-style streams use).

Per the SSE rules the OpenAI client follows: an event is one or more ``data:`` lines ended
by a blank line; lines starting with ``:`` are comments (keep-alives); an ``event:`` line names
the event, ``id:``/``retry:`` are ignored. The data text is returned exactly as received (joined
with ``\\n`` when an event has several data lines) so the relay can forward it without re-encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.backends.lines import DEFAULT_MAX_LINE, LineSplitter


@dataclass(frozen=True)
class SSEEvent:
    data: str
    event: str | None = None


class SSEDecoder:
    """Feed raw body bytes; get complete events."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._lines = LineSplitter(max_line)
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return self._consume(self._lines.feed(chunk))

    def finish(self) -> list[SSEEvent]:
        """Events still pending at end of body (a stream that ends without the blank line)."""
        events = self._consume(self._lines.finish())
        if self._data:
            events.append(SSEEvent("\n".join(self._data), self._event))
            self._data, self._event = [], None
        return events

    def _consume(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for raw in lines:
            if not raw:
                if self._data:
                    events.append(SSEEvent("\n".join(self._data), self._event))
                self._data, self._event = [], None
                continue
            if raw.startswith(b":"):
                continue
            name, _, value = raw.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                self._data.append(value.decode("utf-8", errors="replace"))
            elif name == b"event":
                self._event = value.decode("utf-8", errors="replace")
        return events

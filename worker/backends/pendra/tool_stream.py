"""Tool calls found in a streamed answer, as it streams (pure).

Text is passed on as content until a tool call could start. From the first opener on, the text
is held and parsed with the same function a whole answer is parsed with
(:func:`~worker.backends.pendra.tool_calls.parse_region`): calls that are complete mid-stream
(a closed ``<tool_call>`` block) leave at once, the rest when the answer ends. Text that only
might be the start of an opener waits, and so does leading whitespace, so what a client
reassembles from the deltas is exactly what the non-streamed answer holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.backends.pendra.tool_calls import (
    ToolCall,
    find_opener,
    openers,
    parse_region,
    start_openers,
    unfinished_call_dropped,
)


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class CallDelta:
    index: int
    call: ToolCall


Event = ContentDelta | CallDelta


class ToolCallStream:
    """Feed text deltas, get content deltas and complete tool calls back."""

    def __init__(self, fmt: str, *, parallel: bool = True) -> None:
        self.fmt = fmt
        self.parallel = parallel
        self._text = ""  # everything before the first opener, and while no opener was seen
        self._emitted = 0  # characters of _text already sent as content
        self._held: str | None = None  # from the first opener on
        self.calls: list[ToolCall] = []

    def feed(self, text: str) -> list[Event]:
        if not text:
            return []
        if self._held is not None:
            self._held += text
            calls, _ = parse_region(self.fmt, self._held, final=False)
            return self._take(calls)
        self._text += text
        start = find_opener(self.fmt, self._text)
        if start >= 0:
            events = self._content(start)
            self._held = self._text[start:]
            self._text = self._text[:start]
            calls, _ = parse_region(self.fmt, self._held, final=False)
            return events + self._take(calls)
        return self._content(len(self._text) - self._holdback())

    def finish(self, *, cut: bool = False) -> list[Event]:
        """The answer ended (``cut``: by ``max_tokens``): the remaining calls, and the text
        that was not part of one."""
        if self._held is None:
            return self._content(len(self._text), final=True)
        calls, trailing = parse_region(self.fmt, self._held, final=True)
        if not calls:  # the opener led to nothing that parses: it was text after all
            self._text += self._held
            self._held = None
            return self._content(len(self._text), final=True)
        if cut:
            trailing = unfinished_call_dropped(self.fmt, trailing)
        events: list[Event] = []
        rest = self._text[self._emitted :] + trailing
        if rest and (self._text + trailing).strip():
            events.append(ContentDelta(rest))
        return events + self._take(calls)

    # -- internals ------------------------------------------------------------------------------
    def _take(self, calls: list[ToolCall]) -> list[Event]:
        limit = len(calls) if self.parallel else min(1, len(calls))
        events: list[Event] = []
        for call in calls[len(self.calls) : limit]:
            events.append(CallDelta(len(self.calls), call))
            self.calls.append(call)
        return events

    def _content(self, upto: int, *, final: bool = False) -> list[Event]:
        """Content up to ``upto``; whitespace-only text waits (it may precede a call)."""
        if upto <= self._emitted:
            return []
        if not final and not self._text[:upto].strip():
            return []
        if final and self.calls and not self._text.strip():
            return []
        chunk = self._text[self._emitted : upto]
        self._emitted = upto
        return [ContentDelta(chunk)]

    def _holdback(self) -> int:
        """Length of the tail of the text that could be the start of an opener."""
        text = self._text
        best = 0
        for marker in openers(self.fmt):
            for k in range(min(len(marker) - 1, len(text)), 0, -1):
                if text.endswith(marker[:k]):
                    best = max(best, k)
                    break
        stripped = text.lstrip()
        for marker in start_openers(self.fmt):
            if stripped and marker.startswith(stripped):
                best = max(best, len(text))
        return best

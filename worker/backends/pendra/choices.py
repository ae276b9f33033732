"""One choice of a completion as its events arrive: text, tool calls, log probabilities (pure).

The same state serves a streamed answer (:meth:`Choice.feed`/:meth:`Choice.finish` return the
deltas to send, with the log probabilities of the tokens since the last delta) and a whole one
(:meth:`Choice.result`): both go through one tool-call parser, so they always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.backends.base import Usage
from worker.backends.pendra.responses import LogprobEntry, logprob_entry
from worker.backends.pendra.tool_calls import ToolCall, call_id, parse
from worker.backends.pendra.tool_stream import CallDelta, ContentDelta, ToolCallStream


@dataclass(frozen=True)
class TextOut:
    text: str
    logprobs: list[LogprobEntry] | None


@dataclass(frozen=True)
class CallOut:
    call_index: int
    call_id: str
    call: ToolCall
    logprobs: list[LogprobEntry] | None


Out = TextOut | CallOut


@dataclass(frozen=True)
class Result:
    content: str | None
    calls: list[ToolCall]
    call_ids: list[str]
    finish_reason: str
    logprobs: list[LogprobEntry] | None


class Choice:
    """The state of one choice (index ``index``) of a request."""

    def __init__(
        self,
        index: int,
        *,
        tool_format: str | None,
        parallel: bool,
        logprobs: bool,
        streaming: bool,
        one_forced_call: bool = False,
    ) -> None:
        self.index = index
        self.one_forced_call = one_forced_call
        """The grammar allowed one call and then only the end: a whole call is a whole answer."""
        self.streaming = streaming
        self.tool_format = tool_format
        self.parallel = parallel
        self.parts: list[str] = []
        self.entries: list[LogprobEntry] | None = [] if logprobs else None
        self._unsent = 0  # entries not yet attached to a delta
        self._tools = (
            ToolCallStream(tool_format, parallel=parallel) if tool_format and streaming else None
        )
        self.emitted_chars = 0  # text streamed so far (legacy completions' text offsets)
        self.call_ids: list[str] = []
        self.finish_reason: str | None = None
        self.cut = False
        """``max_tokens`` ended the answer: a call it cut off mid-way is dropped, not content."""
        self.usage: Usage | None = None

    # -- events ---------------------------------------------------------------------------------
    def info(self, payload: dict[str, Any]) -> None:
        if self.entries is not None:
            self.entries.append(logprob_entry(payload))

    def feed(self, text: str) -> list[Out]:
        """A text delta from the model; returns what to stream now."""
        self.parts.append(text)
        if not self.streaming:
            return []
        if self._tools is None:
            return [TextOut(text, self._take_logprobs())]
        return self._convert(self._tools.feed(text))

    def finish(self, reason: str, usage: Usage) -> list[Out]:
        """The model finished; returns what is left to stream."""
        self.cut = reason == "length"
        outs = self._convert(self._tools.finish(cut=self.cut)) if self._tools is not None else []
        if self._tools is not None:
            calls = self._tools.calls
        elif self.tool_format is not None:
            calls = self.result_calls()
        else:
            calls = []
        # max_tokens may run out on the very token that completes a forced call, before the
        # end token the grammar then requires: the answer is whole all the same.
        whole = reason == "stop" or (reason == "length" and self.one_forced_call)
        self.finish_reason = "tool_calls" if calls and whole else reason
        self.usage = usage
        return outs

    def pending_logprobs(self) -> list[LogprobEntry] | None:
        """Log probabilities no delta carried yet (for the finish chunk)."""
        return self._take_logprobs()

    # -- whole answer ---------------------------------------------------------------------------
    def result_calls(self) -> list[ToolCall]:
        assert self.tool_format is not None
        calls = parse(self.tool_format, "".join(self.parts)).calls
        return calls if self.parallel else calls[:1]

    def result(self) -> Result:
        assert self.finish_reason is not None
        text = "".join(self.parts)
        if self.tool_format is None:
            return Result(text, [], [], self.finish_reason, self.entries)
        parsed = parse(self.tool_format, text, cut=self.cut)
        calls = parsed.calls if self.parallel else parsed.calls[:1]
        while len(self.call_ids) < len(calls):
            self.call_ids.append(call_id())
        content: str | None = parsed.content if calls else text
        if calls and not content:
            content = None
        return Result(content, calls, self.call_ids[: len(calls)], self.finish_reason, self.entries)

    # -- internals ------------------------------------------------------------------------------
    def _take_logprobs(self) -> list[LogprobEntry] | None:
        if self.entries is None:
            return None
        fresh = self.entries[self._unsent :]
        self._unsent = len(self.entries)
        return fresh

    def _convert(self, events: list[ContentDelta | CallDelta]) -> list[Out]:
        outs: list[Out] = []
        for event in events:
            if isinstance(event, ContentDelta):
                outs.append(TextOut(event.text, self._take_logprobs()))
            else:
                self.call_ids.append(call_id())
                outs.append(
                    CallOut(event.index, self.call_ids[-1], event.call, self._take_logprobs())
                )
        return outs

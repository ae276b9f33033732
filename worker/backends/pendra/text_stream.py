"""Incremental detokenisation and stop strings, one token at a time (pure).

Why: the high-level llama-cpp-python stream re-detokenises the whole completion per token, which is
quadratic in the answer length (runtime.md §7). Here each token's bytes are decoded once; only an
incomplete UTF-8 sequence at the end is held back. Stop strings are matched in a window of the
held-back tail plus the new text, never by rescanning everything generated so far.
"""

from __future__ import annotations

import codecs


class Utf8Decoder:
    """Bytes in, complete characters out; an incomplete multi-byte sequence waits for the next."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data, final=False)

    def finish(self) -> str:
        """Whatever is left at the end: an unfinished sequence becomes U+FFFD."""
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Holds back text that could be the start of a stop string; reports the first stop hit.

    ``feed`` returns ``(text safe to emit, stopped)``. After a stop, the text before the stop
    string has been emitted and nothing after it ever is. The held-back tail is never longer than
    the longest stop string minus one, so each call costs O(len(new text) + longest stop).
    """

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._longest = max((len(s) for s in self._stops), default=0)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        if not self._stops:
            return text, False
        window = self._held + text
        first = -1
        for stop in self._stops:
            at = window.find(stop)
            if at != -1 and (first == -1 or at < first):
                first = at
        if first != -1:
            self.stopped = True
            self._held = ""
            return window[:first], True
        keep = self._partial_suffix(window)
        self._held = window[len(window) - keep :] if keep else ""
        return window[: len(window) - keep], False

    def flush(self) -> str:
        """At the end of generation the held-back text was not a stop after all: release it."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _partial_suffix(self, window: str) -> int:
        """Length of the longest suffix of ``window`` that is a proper prefix of a stop string."""
        best = 0
        start = max(0, len(window) - self._longest + 1)
        for i in range(start, len(window)):
            tail = window[i:]
            if any(stop.startswith(tail) for stop in self._stops):
                best = len(window) - i
                break
        return best

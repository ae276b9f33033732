"""Incremental line splitting for streamed HTTP bodies (SSE and NDJSON).

Backends stream newline-delimited text in arbitrary network chunks; a line can straddle chunks and
a multi-byte UTF-8 character can straddle a chunk boundary. This splitter works on bytes and only
decodes complete lines, so neither case corrupts text. A line longer than ``max_line`` bytes is a
broken or hostile backend: it raises instead of buffering without bound.
"""

from __future__ import annotations

DEFAULT_MAX_LINE = 32 * 1024 * 1024


class LineTooLong(ValueError):
    """A streamed line exceeded the configured limit."""


class LineSplitter:
    """Feed bytes, get back complete lines (without ``\\n`` / ``\\r\\n``)."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._buffer = bytearray()
        self._max_line = max_line

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        if b"\n" not in data:
            self._check_length()
            return []
        parts = self._buffer.split(b"\n")
        self._buffer = bytearray(parts.pop())
        self._check_length()
        return [bytes(p[:-1]) if p.endswith(b"\r") else bytes(p) for p in parts]

    def finish(self) -> list[bytes]:
        """The trailing line when the body did not end with a newline."""
        rest = bytes(self._buffer).removesuffix(b"\r")
        self._buffer.clear()
        return [rest] if rest else []

    def _check_length(self) -> None:
        if len(self._buffer) > self._max_line:
            size = len(self._buffer)
            self._buffer.clear()
            raise LineTooLong(f"a streamed line exceeded {self._max_line} bytes ({size} so far)")

"""A lean streaming chat client that timestamps every SSE event as it arrives.

aiohttp, one connection per stream, ``time.monotonic_ns()`` per event (CLOCK_MONOTONIC is the
same clock in every process of the machine, so an emulator can stamp a chunk and the client can
subtract). Only what the benches need is parsed: content, finish and usage.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class StreamTrace:
    """What one streamed completion looked like at the client."""

    sent_ns: int
    content_ns: list[int] = field(default_factory=list)  # arrival of each chunk with content
    contents: list[str] = field(default_factory=list)
    completion_tokens: int | None = None
    finish_reason: str | None = None
    done_ns: int | None = None
    events: int = 0

    @property
    def ttft_s(self) -> float:
        if not self.content_ns:
            raise ValueError("the stream produced no content")
        return (self.content_ns[0] - self.sent_ns) / 1e9

    @property
    def text(self) -> str:
        return "".join(self.contents)


class StreamError(RuntimeError):
    pass


async def stream_chat(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> StreamTrace:
    """POST a ``stream: true`` chat to ``url`` and record every event's arrival."""
    payload = {**body, "stream": True}
    trace = StreamTrace(sent_ns=time.monotonic_ns())
    async with session.post(url, json=payload, headers=headers) as response:
        if response.status != 200:
            raise StreamError(f"HTTP {response.status}: {(await response.text())[:500]}")
        async for raw in response.content:
            now = time.monotonic_ns()
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                trace.done_ns = now
                break
            trace.events += 1
            chunk = json.loads(data)
            if "error" in chunk:
                raise StreamError(f"stream error: {chunk['error']}")
            usage = chunk.get("usage")
            if usage:
                trace.completion_tokens = usage.get("completion_tokens")
            for choice in chunk.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    trace.content_ns.append(now)
                    trace.contents.append(content)
                if choice.get("finish_reason"):
                    trace.finish_reason = choice["finish_reason"]
    if trace.done_ns is None:
        trace.done_ns = time.monotonic_ns()
    return trace


def session(max_connections: int = 64) -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    return aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=max_connections)
    )

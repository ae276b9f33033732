"""Relaying one streamed completion over the link: bounded, coalescing, never re-encoding.

A producer pulls chunks from the router into a small bounded queue; the consumer sends whatever has
queued up as one ``chunk`` frame. While the link keeps up, that is one chunk per frame (lowest
latency); when the link is slower than the model, chunks pile up and leave together (coalescing);
when the queue is full, the producer waits, which pauses generation instead of buffering without
limit (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from worker.backends.base import StreamChunk, Usage
from worker.protocol import MAX_CHUNK_FRAME_BYTES, chunk_frame

DEFAULT_QUEUE_CHUNKS = 64
_END = object()


@dataclass
class StreamSummary:
    chunks: int = 0
    frames: int = 0
    usage: Usage | None = None
    finish_reason: str | None = None


async def pump_stream(
    request_id: str,
    chunks: AsyncIterator[StreamChunk],
    send: Callable[[str], Awaitable[None]],
    *,
    first: StreamChunk | None = None,
    queue_chunks: int = DEFAULT_QUEUE_CHUNKS,
    max_frame_chars: int = MAX_CHUNK_FRAME_BYTES,
    lead: str | None = None,
    send_together: Callable[[list[str]], Awaitable[None]] | None = None,
) -> StreamSummary:
    """Send ``first`` and then every chunk of ``chunks`` as ``chunk`` frames; re-raise its error.

    ``lead`` (the stream's ``start`` frame) goes out just before the first chunk frame, in the
    same write when ``send_together`` is given. Cancelling the caller cancels the producer and
    closes ``chunks`` (which stops the backend).
    """
    queue: asyncio.Queue[object] = asyncio.Queue(queue_chunks)
    failure: list[BaseException] = []
    if first is not None:
        queue.put_nowait(first)

    async def produce() -> None:
        try:
            async for chunk in chunks:
                await queue.put(chunk)
        except Exception as exc:  # handed to the consumer, which re-raises it in the request task
            failure.append(exc)
        finally:
            if hasattr(chunks, "aclose"):
                with contextlib.suppress(Exception):
                    await chunks.aclose()
        await queue.put(_END)

    summary = StreamSummary()
    producer = asyncio.create_task(produce())
    try:
        if lead is not None:
            # One turn of the loop for the producer before the first frame: chunks the backend
            # already sent (its role chunk and first token often arrive in one read) join the
            # first frame, so the control plane wakes once for them, not once per chunk.
            await asyncio.sleep(0)
        ended = False
        while not ended:
            item = await queue.get()
            if item is _END:
                break
            batch: list[str] = []
            size = 0
            while True:
                assert isinstance(item, StreamChunk)
                batch.append(item.json)
                size += len(item.json)
                if item.usage is not None:
                    summary.usage = item.usage
                if item.finish_reason is not None:
                    summary.finish_reason = item.finish_reason
                if size >= max_frame_chars or queue.empty():
                    break
                item = queue.get_nowait()
                if item is _END:
                    ended = True
                    break
            summary.chunks += len(batch)
            summary.frames += 1
            frame = chunk_frame(request_id, batch)
            if lead is None:
                await send(frame)
            elif send_together is not None:
                await send_together([lead, frame])
            else:
                await send(lead)
                await send(frame)
            lead = None
        if lead is not None:  # a stream that ended before its first chunk
            await send(lead)
        if failure:
            raise failure[0]
        return summary
    finally:
        if not producer.done():
            producer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await producer
        # A producer cancelled before it ever ran never reached its own ``finally``: close the
        # stream here too (closing twice is harmless) so the backend slot is released at once.
        if hasattr(chunks, "aclose"):
            with contextlib.suppress(Exception):
                await chunks.aclose()

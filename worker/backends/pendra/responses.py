"""OpenAI response shapes for chat completions and embeddings (pure).

Stream chunks are built as JSON text from a per-request prefix, so a content delta costs one
``json.dumps`` of the delta string instead of encoding a whole dict per token.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from collections.abc import Sequence
from typing import Any

from worker.backends.base import StreamChunk, Usage


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage_dict(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def chat_completion(
    cid: str, model: str, created: int, text: str, finish_reason: str, usage: Usage
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_dict(usage),
    }


class ChunkWriter:
    """Serialises the chunks of one streamed completion."""

    def __init__(self, model: str, cid: str | None = None, created: int | None = None) -> None:
        self.cid = cid or completion_id()
        self.created = created or int(time.time())
        head = json.dumps(
            {"id": self.cid, "object": "chat.completion.chunk", "created": self.created,
             "model": model}
        )[:-1]  # fmt: skip
        self._prefix = head + ', "choices": [{"index": 0, "delta": '
        self._head = head

    def role(self) -> StreamChunk:
        return StreamChunk(
            self._prefix + '{"role": "assistant", "content": ""}, "logprobs": null, '
            '"finish_reason": null}]}'
        )

    def content(self, text: str) -> StreamChunk:
        return StreamChunk(
            self._prefix + '{"content": ' + json.dumps(text) + '}, "logprobs": null, '
            '"finish_reason": null}]}'
        )

    def finish(self, reason: str, usage: Usage | None) -> StreamChunk:
        text = self._prefix + '{}, "logprobs": null, "finish_reason": ' + json.dumps(reason) + "}]}"
        return StreamChunk(text, usage=usage, finish_reason=reason)

    def usage(self, usage: Usage) -> StreamChunk:
        text = self._head + ', "choices": [], "usage": ' + json.dumps(usage_dict(usage)) + "}"
        return StreamChunk(text, usage=usage)


def embedding_response(
    model: str, vectors: Sequence[Sequence[float]], prompt_tokens: int, encoding_format: str
) -> dict[str, Any]:
    data = []
    for i, vector in enumerate(vectors):
        value: Any
        if encoding_format == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        else:
            value = list(vector)
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }

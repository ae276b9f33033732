"""OpenAI response shapes: chat completions, text completions, embeddings (pure).

Stream chunks are built as JSON text from a per-request, per-choice prefix, so a content delta
costs one ``json.dumps`` of the delta string instead of encoding a whole dict per token.
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
from worker.backends.pendra.tool_calls import ToolCall

LogprobEntry = dict[str, Any]
"""One token of a chat ``logprobs.content`` list: ``{token, logprob, bytes, top_logprobs}``."""


def completion_id(prefix: str = "chatcmpl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage_dict(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return out


def total_usage(usages: Sequence[Usage], prompts: int = 1) -> Usage:
    """Usage of a request with several choices: each prompt counted once, every answer."""
    per_prompt = max(1, len(usages) // max(1, prompts))
    firsts = usages[::per_prompt]
    cached = [u.cached_tokens for u in firsts if u.cached_tokens is not None]
    return Usage(
        sum(u.prompt_tokens for u in firsts),
        sum(u.completion_tokens for u in usages),
        sum(cached) if cached else None,
    )


# -- log probabilities ----------------------------------------------------------------------------
def _token(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def logprob_entry(info: dict[str, Any]) -> LogprobEntry:
    """A runner's per-token info (``{"b": hex, "l": logprob, "top": [[hex, logprob]…]}``) as an
    OpenAI chat logprobs entry."""
    raw = bytes.fromhex(info["b"])
    top = []
    for hexed, value in info.get("top") or []:
        alt = bytes.fromhex(hexed)
        top.append({"token": _token(alt), "logprob": value, "bytes": list(alt)})
    return {"token": _token(raw), "logprob": info["l"], "bytes": list(raw), "top_logprobs": top}


def chat_logprobs(entries: list[LogprobEntry] | None) -> dict[str, Any] | None:
    return None if entries is None else {"content": entries, "refusal": None}


def text_logprobs(entries: list[LogprobEntry] | None, offset: int = 0) -> dict[str, Any] | None:
    """The legacy completions shape: parallel lists, text offsets from ``offset``."""
    if entries is None:
        return None
    tokens, values, tops, offsets = [], [], [], []
    at = offset
    for entry in entries:
        tokens.append(entry["token"])
        values.append(entry["logprob"])
        tops.append({alt["token"]: alt["logprob"] for alt in entry["top_logprobs"]})
        offsets.append(at)
        at += len(bytes(entry["bytes"]).decode("utf-8", errors="ignore"))
    return {
        "tokens": tokens,
        "token_logprobs": values,
        "top_logprobs": tops,
        "text_offset": offsets,
    }


def tool_call_dicts(calls: list[ToolCall], ids: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "id": call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call, call_id in zip(calls, ids, strict=True)
    ]


# -- whole responses ------------------------------------------------------------------------------
def chat_choice(
    index: int,
    content: str | None,
    finish_reason: str,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    logprobs: list[LogprobEntry] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "index": index,
        "message": message,
        "logprobs": chat_logprobs(logprobs),
        "finish_reason": finish_reason,
    }


def chat_completion(
    cid: str, model: str, created: int, choices: list[dict[str, Any]], usage: Usage
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage_dict(usage),
    }


def text_choice(
    index: int, text: str, finish_reason: str, logprobs: dict[str, Any] | None
) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}


def text_completion(
    cid: str, model: str, created: int, choices: list[dict[str, Any]], usage: Usage
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage_dict(usage),
    }


# -- streams --------------------------------------------------------------------------------------
class ChunkWriter:
    """Serialises the chunks of one streamed chat completion (any number of choices)."""

    def __init__(self, model: str, cid: str | None = None, created: int | None = None) -> None:
        self.cid = cid or completion_id()
        self.created = created or int(time.time())
        head = json.dumps(
            {
                "id": self.cid,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": model,
            }
        )[:-1]
        self._head = head
        self._prefixes: dict[int, str] = {}

    def _prefix(self, index: int) -> str:
        prefix = self._prefixes.get(index)
        if prefix is None:
            prefix = self._prefixes[index] = (
                self._head + ', "choices": [{"index": ' + str(index) + ', "delta": '
            )
        return prefix

    @staticmethod
    def _tail(logprobs: list[LogprobEntry] | None, finish: str | None = None) -> str:
        lp = "null" if logprobs is None else json.dumps(chat_logprobs(logprobs))
        reason = "null" if finish is None else json.dumps(finish)
        return ', "logprobs": ' + lp + ', "finish_reason": ' + reason + "}]}"

    def role(self, index: int = 0) -> StreamChunk:
        return StreamChunk(
            self._prefix(index) + '{"role": "assistant", "content": ""}' + self._tail(None)
        )

    def content(
        self, text: str, index: int = 0, logprobs: list[LogprobEntry] | None = None
    ) -> StreamChunk:
        return StreamChunk(
            self._prefix(index) + '{"content": ' + json.dumps(text) + "}" + self._tail(logprobs)
        )

    def tool_call(
        self,
        index: int,
        call_index: int,
        call_id: str,
        call: ToolCall,
        logprobs: list[LogprobEntry] | None = None,
    ) -> list[StreamChunk]:
        """A call as OpenAI streams one: id, type and name first, then the arguments."""
        head = {
            "index": call_index,
            "id": call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        args = {"index": call_index, "function": {"arguments": call.arguments}}
        return [
            StreamChunk(
                self._prefix(index) + json.dumps({"tool_calls": [head]}) + self._tail(logprobs)
            ),
            StreamChunk(
                self._prefix(index) + json.dumps({"tool_calls": [args]}) + self._tail(None)
            ),
        ]

    def finish(
        self,
        reason: str,
        usage: Usage | None,
        index: int = 0,
        logprobs: list[LogprobEntry] | None = None,
    ) -> StreamChunk:
        text = self._prefix(index) + "{}" + self._tail(logprobs, reason)
        return StreamChunk(text, usage=usage, finish_reason=reason)

    def usage(self, usage: Usage) -> StreamChunk:
        text = self._head + ', "choices": [], "usage": ' + json.dumps(usage_dict(usage)) + "}"
        return StreamChunk(text, usage=usage)


class TextChunkWriter:
    """Serialises the chunks of one streamed legacy text completion."""

    def __init__(self, model: str) -> None:
        self.cid = completion_id("cmpl")
        self.created = int(time.time())
        self._head = json.dumps(
            {"id": self.cid, "object": "text_completion", "created": self.created, "model": model}
        )[:-1]

    def text(
        self,
        index: int,
        text: str,
        logprobs: dict[str, Any] | None = None,
        finish: str | None = None,
        usage: Usage | None = None,
    ) -> StreamChunk:
        choice = {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}
        body = self._head + ', "choices": [' + json.dumps(choice) + "]}"
        return StreamChunk(body, usage=usage, finish_reason=finish)

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

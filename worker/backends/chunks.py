"""Cheap inspection of a relayed ``chat.completion.chunk``.

The relay forwards each chunk's JSON text untouched. It only needs three facts from it: the usage
(for token accounting), the finish reason, and whether the chunk is an in-stream error frame. Most
chunks carry none of them, so a regular-expression pre-check decides whether the text is worth
parsing at all. Inside JSON strings quotes are escaped (``\\"``), so generated text that happens to
contain ``"usage":{`` cannot trigger the patterns; a false positive only costs one ``json.loads``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from worker.backends.base import Usage
from worker.backends.upstream_errors import message_from_body

_INTERESTING = re.compile(r'"(?:usage"\s*:\s*\{|finish_reason"\s*:\s*"|error")')


@dataclass(frozen=True)
class ChunkInfo:
    usage: Usage | None = None
    finish_reason: str | None = None
    error: str | None = None


EMPTY = ChunkInfo()


def usage_from(raw: object) -> Usage | None:
    """A Usage from an OpenAI ``usage`` object, None when absent or malformed."""
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens")
    completion = raw.get("completion_tokens")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    return Usage(
        prompt_tokens=prompt if isinstance(prompt, int) else 0,
        completion_tokens=completion if isinstance(completion, int) else 0,
    )


def inspect_chunk(text: str) -> ChunkInfo:
    """Usage, finish reason and error of one chunk's JSON text, parsing only when needed."""
    if not _INTERESTING.search(text):
        return EMPTY
    try:
        body = json.loads(text)
    except ValueError:
        return EMPTY
    if not isinstance(body, dict):
        return EMPTY
    if body.get("error"):
        return ChunkInfo(error=message_from_body(body) or "unknown error")
    finish = None
    choices = body.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                finish = choice["finish_reason"]
    return ChunkInfo(usage=usage_from(body.get("usage")), finish_reason=finish)

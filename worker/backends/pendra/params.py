"""Validation of OpenAI request bodies for the built-in backend (pure functions).

Every rejection is a :class:`~worker.errors.BadRequest` that names the field and says what a valid
value looks like, the way OpenAI's own 400s do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from worker.errors import BadRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MAX_STOPS = 4
MAX_EMBED_INPUTS = 2048


@dataclass(frozen=True)
class ChatParams:
    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repeat_penalty: float = 1.0
    stream: bool = False
    include_usage: bool = False


@dataclass(frozen=True)
class EmbedParams:
    model: str
    inputs: list[str | list[int]]
    encoding_format: str = "float"
    dimensions: int | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"'{key}' must be a number between {low} and {high}, got {value!r}")
    if not low <= value <= high:
        raise BadRequest(f"'{key}' must be between {low} and {high}, got {value}")
    return float(value)


def require_model(body: Any) -> str:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required: the id of a model this worker serves")
    return model


def _message_text(index: int, content: Any, role: str) -> str:
    if content is None:
        if role in {"assistant", "tool"}:
            return ""
        raise BadRequest(f"'messages[{index}].content' is required for role {role!r}")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise BadRequest(
                    f"'messages[{index}].content[{j}]' is of type {kind!r}; the built-in backend "
                    "takes text parts only"
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise BadRequest(f"'messages[{index}].content[{j}].text' must be a string")
            parts.append(text)
        return "".join(parts)
    raise BadRequest(f"'messages[{index}].content' must be a string or a list of text parts")


def parse_messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise BadRequest("'messages' is required: a list of {role, content} objects")
    if not raw:
        raise BadRequest("'messages' must not be empty: send at least one message")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise BadRequest(f"'messages[{i}]' must be an object with 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise BadRequest(
                f"'messages[{i}].role' must be one of {', '.join(sorted(ROLES))}, got {role!r}"
            )
        text = _message_text(i, message.get("content"), role)
        out.append({"role": "system" if role == "developer" else role, "content": text})
    return out


def parse_chat(body: Any) -> ChatParams:
    model = require_model(body)
    messages = parse_messages(body.get("messages"))
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens <= 0):
        raise BadRequest(f"'max_tokens' must be a positive integer, got {max_tokens!r}")
    n = body.get("n")
    if n is not None and n != 1:
        raise BadRequest(f"'n' must be 1 on this worker, got {n!r}")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise BadRequest(f"'seed' must be an integer, got {seed!r}")
    stop_raw = body.get("stop")
    if stop_raw is None:
        stop: list[str] = []
    elif isinstance(stop_raw, str):
        stop = [stop_raw]
    elif isinstance(stop_raw, list) and all(isinstance(s, str) for s in stop_raw):
        stop = list(stop_raw)
    else:
        raise BadRequest("'stop' must be a string or a list of up to 4 strings")
    if len(stop) > MAX_STOPS:
        raise BadRequest(f"'stop' takes at most {MAX_STOPS} strings, got {len(stop)}")
    top_k = body.get("top_k", 0)
    if top_k is None:
        top_k = 0
    if not _is_int(top_k) or top_k < 0:
        raise BadRequest(f"'top_k' must be a non-negative integer, got {top_k!r}")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"'stream' must be true or false, got {stream!r}")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object like {\"include_usage\": true}")
    include_usage = options.get("include_usage", False)
    if include_usage is not None and not isinstance(include_usage, bool):
        raise BadRequest(
            f"'stream_options.include_usage' must be true or false, got {include_usage!r}"
        )
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    return ChatParams(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=top_p if top_p > 0 else 1e-6,
        top_k=top_k,
        min_p=_number(body, "min_p", 0.0, 0.0, 1.0),
        seed=seed,
        stop=stop,
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        repeat_penalty=_number(body, "repeat_penalty", 1.0, 0.0, 10.0),
        stream=stream,
        include_usage=bool(include_usage),
    )


def parse_embeddings(body: Any) -> EmbedParams:
    model = require_model(body)
    raw = body.get("input")
    inputs: list[str | list[int]]
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(_is_int(t) for t in raw):
        inputs = [list(raw)]  # one input given as token ids
    elif isinstance(raw, list):
        inputs = raw
    else:
        raise BadRequest("'input' is required: a string or a list of strings")
    if not inputs:
        raise BadRequest("'input' must not be empty")
    if len(inputs) > MAX_EMBED_INPUTS:
        raise BadRequest(f"'input' takes at most {MAX_EMBED_INPUTS} items, got {len(inputs)}")
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            if not item:
                raise BadRequest(f"'input[{i}]' is an empty string; send some text")
        elif isinstance(item, list) and item and all(_is_int(t) and t >= 0 for t in item):
            continue
        else:
            raise BadRequest(f"'input[{i}]' must be a non-empty string (or a list of token ids)")
    fmt = body.get("encoding_format") or "float"
    if fmt not in {"float", "base64"}:
        raise BadRequest(f"'encoding_format' must be 'float' or 'base64', got {fmt!r}")
    dims = body.get("dimensions")
    if dims is not None and (not _is_int(dims) or dims <= 0):
        raise BadRequest(f"'dimensions' must be a positive integer, got {dims!r}")
    return EmbedParams(model=model, inputs=inputs, encoding_format=fmt, dimensions=dims)

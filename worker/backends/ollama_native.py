"""Translation between OpenAI chat completions and Ollama's native ``/api/chat``.

Why native: Ollama's OpenAI-compatible endpoints have no way to pass ``num_ctx`` (reference/
backends.md §1.7), so without it every request runs at Ollama's default context and long
conversations are silently truncated. ``/api/chat`` honours ``options.num_ctx``; the worker sends
chat there and translates both ways, streaming included. All functions here are pure.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from worker.errors import BadRequest

# OpenAI request fields → Ollama options.
_OPTION_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "max_tokens": "num_predict",
    "max_completion_tokens": "num_predict",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
}
# reasoning_effort → Ollama's ``think`` (a level for models that take one, off for "none").
_THINK = {"none": False, "minimal": False, "low": "low", "medium": "medium", "high": "high"}


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _message_to_native(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict) or "role" not in message:
        raise BadRequest("each message needs a role and content")
    out: dict[str, Any] = {"role": message["role"]}
    content = message.get("content")
    if isinstance(content, list):
        texts: list[str] = []
        images: list[str] = []
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif part.get("type") == "image_url":
                url = part.get("image_url", {})
                url = url.get("url") if isinstance(url, dict) else url
                if not isinstance(url, str) or not url.startswith("data:") or "," not in url:
                    raise BadRequest(
                        "Ollama takes images inline only",
                        hint="send image_url as a data: URL (data:image/png;base64,...)",
                    )
                images.append(url.split(",", 1)[1])
        out["content"] = "\n".join(texts)
        if images:
            out["images"] = images
    else:
        out["content"] = "" if content is None else str(content)
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        native_calls = []
        for call in calls:
            function = call.get("function", {}) if isinstance(call, dict) else {}
            arguments = function.get("arguments", {})
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments) if arguments.strip() else {}
                except ValueError:
                    raise BadRequest("tool call arguments must be a JSON object") from None
            native_calls.append(
                {"function": {"name": function.get("name"), "arguments": arguments}}
            )
        out["tool_calls"] = native_calls
    if message.get("role") == "tool" and message.get("name"):
        out["tool_name"] = message["name"]
    return out


def to_native_request(
    body: dict[str, Any], model_context: int | None, stream: bool
) -> dict[str, Any]:
    """The ``/api/chat`` body for an OpenAI chat body.

    ``options.num_ctx`` is the model's context length unless the client sent its own (in the
    non-standard ``options`` object Ollama users know) — the client always wins.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    native: dict[str, Any] = {
        "model": body.get("model"),
        "messages": [_message_to_native(m) for m in messages],
        "stream": stream,
    }
    options: dict[str, Any] = {}
    for field, option in _OPTION_FIELDS.items():
        if body.get(field) is not None:
            options[option] = body[field]
    stop = body.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    client_options = body.get("options")
    if isinstance(client_options, dict):
        options.update(client_options)
    if "num_ctx" not in options and model_context:
        options["num_ctx"] = model_context
    if options:
        native["options"] = options
    if body.get("tools") and body.get("tool_choice") != "none":
        native["tools"] = body["tools"]
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in _THINK:
            raise BadRequest(
                f"'reasoning_effort' must be one of {', '.join(_THINK)}, got {effort!r}",
                param="reasoning_effort",
            )
        native["think"] = _THINK[effort]
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_object":
            native["format"] = "json"
        elif fmt.get("type") == "json_schema":
            schema = fmt.get("json_schema", {})
            native["format"] = schema.get("schema", schema) if isinstance(schema, dict) else "json"
    for passthrough in ("keep_alive", "think"):
        if passthrough in body:
            native[passthrough] = body[passthrough]
    return native


def _tool_calls_to_openai(calls: Any) -> list[dict[str, Any]]:
    out = []
    for index, call in enumerate(calls if isinstance(calls, list) else []):
        function = call.get("function", {}) if isinstance(call, dict) else {}
        arguments = function.get("arguments", {})
        out.append(
            {
                "index": index,
                "id": call.get("id") or f"call_{secrets.token_hex(6)}",
                "type": "function",
                "function": {
                    "name": function.get("name"),
                    "arguments": arguments if isinstance(arguments, str) else dumps(arguments),
                },
            }
        )
    return out


def _finish_reason(native: dict[str, Any], had_tool_calls: bool) -> str:
    if had_tool_calls:
        return "tool_calls"
    return "length" if native.get("done_reason") == "length" else "stop"


def usage_of(native: dict[str, Any]) -> dict[str, int]:
    prompt = native.get("prompt_eval_count") or 0
    completion = native.get("eval_count") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def new_completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


def from_native_response(native: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` for a non-streamed ``/api/chat`` answer."""
    message = native.get("message") if isinstance(native.get("message"), dict) else {}
    out_message: dict[str, Any] = {"role": "assistant", "content": message.get("content", "")}
    if message.get("thinking"):
        out_message["reasoning"] = message["thinking"]
    calls = _tool_calls_to_openai(message.get("tool_calls"))
    if calls:
        out_message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
    return {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_ollama",
        "choices": [
            {
                "index": 0,
                "message": out_message,
                "finish_reason": _finish_reason(native, bool(calls)),
            }
        ],
        "usage": usage_of(native),
    }


class StreamTranslator:
    """Turns ``/api/chat`` NDJSON objects into OpenAI chunk JSON texts, one call per line."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = new_completion_id()
        self.created = int(time.time())
        self._sent_role = False
        self._tool_calls = False
        self.usage: dict[str, int] | None = None
        self.finish_reason: str | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None) -> str:
        return dumps(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": "fp_ollama",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    def feed(self, native: dict[str, Any]) -> list[str]:
        """The chunks for one native line (none, one, or the closing ones)."""
        message = native.get("message") if isinstance(native.get("message"), dict) else {}
        delta: dict[str, Any] = {}
        if not self._sent_role:
            delta["role"] = "assistant"
        if message.get("content"):
            delta["content"] = message["content"]
        elif not self._sent_role:
            delta["content"] = ""
        if message.get("thinking"):
            delta["reasoning"] = message["thinking"]
        calls = _tool_calls_to_openai(message.get("tool_calls"))
        if calls:
            delta["tool_calls"] = calls
            self._tool_calls = True
        out: list[str] = []
        if delta:
            out.append(self._chunk(delta, None))
            self._sent_role = True
        if native.get("done"):
            self.finish_reason = _finish_reason(native, self._tool_calls)
            self.usage = usage_of(native)
            out.append(self._chunk({}, self.finish_reason))
            if self.include_usage:
                out.append(
                    dumps(
                        {
                            "id": self.id,
                            "object": "chat.completion.chunk",
                            "created": self.created,
                            "model": self.model,
                            "system_fingerprint": "fp_ollama",
                            "choices": [],
                            "usage": self.usage,
                        }
                    )
                )
        return out

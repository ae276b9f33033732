"""Validation of OpenAI request bodies for the built-in backend (pure functions).

Every field of the request is either honoured or refused: a field this backend cannot serve, or
one that is not an OpenAI field at all, is a :class:`~worker.errors.BadRequest` that names it, the
way OpenAI's own 400s do. Fields that by their definition do not change the answer (``user``,
``metadata``, ``prompt_cache_key`` …) are accepted and checked for shape.

The result is a :class:`ChatParams`: plain data (JSON-able, it travels to the model's runner) that
both chat completions and legacy completions are reduced to.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from worker.backends.openai_fields import (
    CHAT_FIELDS,
    COMPLETION_FIELDS,
    EMBEDDING_FIELDS,
    SAMPLING_EXTENSIONS,
    Endpoint,
    unknown_field,
)
from worker.errors import BadRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MAX_STOPS = 4
MAX_EMBED_INPUTS = 2048
MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5
MAX_N = 128
MAX_TOOLS = 128
MAX_LOGIT_BIAS = 1024
MAX_PROMPTS = 128
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_INT64 = (-(2**63), 2**63 - 1)

TOOL_CHOICES = ("none", "auto", "required", "function")

# Fields that by their definition never change an answer: accepted (their shape is checked).
_INERT = frozenset({"user", "safety_identifier", "metadata", "prompt_cache_key"})
# Fields this backend cannot serve, and what to do instead.
_REFUSED = {
    "audio": "audio output is not served by the built-in backend; it answers in text",
    "functions": "the deprecated 'functions' field is not served; send 'tools' instead",
    "function_call": "the deprecated 'function_call' field is not served; send 'tool_choice'",
    "prediction": "predicted outputs are not served by the built-in backend",
    "reasoning_effort": "the built-in backend has no reasoning-effort control",
    "verbosity": "the built-in backend has no verbosity control",
    "web_search_options": "the built-in backend has no web search",
}


@dataclass(frozen=True)
class ChatParams:
    """One generation request: a chat conversation (``messages``) or a raw ``prompt``."""

    model: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt: str | list[int] | None = None  # legacy completions: the prompt, without a template
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
    logit_bias: list[list[float]] = field(default_factory=list)  # [[token id, bias], …]
    logprobs: bool = False
    top_logprobs: int = 0
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    response_format: dict[str, Any] | None = None  # {"type": "json_object" | "json_schema", …}
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str = "none"  # one of TOOL_CHOICES
    tool_name: str | None = None  # the function a "function" tool_choice names
    parallel_tool_calls: bool = True
    echo: bool = False

    @property
    def calls_tools(self) -> bool:
        """Whether tool calls are looked for in the answer."""
        return bool(self.tools) and self.tool_choice != "none"


@dataclass(frozen=True)
class CompletionRequest:
    """A legacy completions request: shared parameters and the prompts to complete."""

    params: ChatParams
    prompts: list[str | list[int]]


@dataclass(frozen=True)
class EmbedParams:
    model: str
    inputs: list[str | list[int]]
    encoding_format: str = "float"
    dimensions: int | None = None


# -- small checks ------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(
            f"'{key}' must be a number between {low} and {high}, got {value!r}", param=key
        )
    if not low <= value <= high:
        raise BadRequest(f"'{key}' must be between {low} and {high}, got {value}", param=key)
    return float(value)


def _bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"'{key}' must be true or false, got {value!r}", param=key)
    return value


def _int(body: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_int(value) or not low <= value <= high:
        raise BadRequest(
            f"'{key}' must be an integer from {low} to {high}, got {value!r}", param=key
        )
    return int(value)


def require_model(body: Any) -> str:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required: the id of a model this worker serves", param="model")
    return model


def check_fields(
    body: dict[str, Any], endpoint: Endpoint, extra: frozenset[str] = frozenset()
) -> None:
    """Refuse any field that is not the endpoint's (nor an extension this backend serves)."""
    known = {"chat": CHAT_FIELDS, "completions": COMPLETION_FIELDS, "embeddings": EMBEDDING_FIELDS}[
        endpoint
    ] | extra
    for name in body:
        if name not in known:
            raise unknown_field(name, endpoint, "the built-in backend")
        reason = _REFUSED.get(name)
        if reason is not None and body[name] is not None:
            raise BadRequest(f"'{name}': {reason}", param=name)


def _check_inert(body: dict[str, Any]) -> None:
    for key in ("user", "safety_identifier", "prompt_cache_key"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"'{key}' must be a string, got {value!r}", param=key)
    metadata = body.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict)
        or len(metadata) > 16
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise BadRequest("'metadata' must be an object of up to 16 string values", param="metadata")
    if body.get("store") not in (None, False):
        raise BadRequest(
            "'store': the built-in backend never stores completions; send "
            "store=false or leave it out",
            param="store",
        )
    if body.get("service_tier") not in (None, "auto", "default"):
        raise BadRequest(
            f"'service_tier' {body['service_tier']!r} is not served here; use 'auto' or 'default'",
            param="service_tier",
        )
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise BadRequest(
            "'modalities' must be [\"text\"]: the built-in backend answers in text",
            param="modalities",
        )
    if body.get("prompt_cache_retention") not in (None, "in_memory"):
        raise BadRequest(
            "'prompt_cache_retention' must be 'in_memory': prompts are cached in "
            "memory only, while the model is loaded",
            param="prompt_cache_retention",
        )


# -- messages ------------------------------------------------------------------------------------
_MESSAGE_KEYS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "refusal", "audio", "function_call"},
    "tool": {"role", "content", "tool_call_id", "name"},
}


def _message_text(index: int, content: Any, role: str) -> str:
    if content is None:
        if role in {"assistant", "tool"}:
            return ""
        raise BadRequest(
            f"'messages[{index}].content' is required for role {role!r}",
            param=f"messages[{index}].content",
        )
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise BadRequest(
                    f"'messages[{index}].content[{j}]' is of type {kind!r}; the built-in backend "
                    "takes text parts only",
                    param=f"messages[{index}].content[{j}]",
                )
            text = part.get(part["type"])
            if not isinstance(text, str):
                raise BadRequest(
                    f"'messages[{index}].content[{j}].{part['type']}' must be a string",
                    param=f"messages[{index}].content",
                )
            parts.append(text)
        return "".join(parts)
    raise BadRequest(
        f"'messages[{index}].content' must be a string or a list of text parts",
        param=f"messages[{index}].content",
    )


def _tool_calls(index: int, raw: Any) -> list[dict[str, Any]]:
    where = f"messages[{index}].tool_calls"
    if not isinstance(raw, list):
        raise BadRequest(f"'{where}' must be a list of tool calls", param=where)
    calls = []
    for j, call in enumerate(raw):
        if not isinstance(call, dict) or call.get("type", "function") != "function":
            raise BadRequest(
                f"'{where}[{j}]' must be a function tool call "
                '({"id", "type": "function", "function": {"name", "arguments"}})',
                param=where,
            )
        function = call.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise BadRequest(f"'{where}[{j}].function.name' is required", param=where)
        arguments = function.get("arguments", "{}")
        if isinstance(arguments, dict):  # Ollama-style clients send an object
            arguments = json.dumps(arguments, ensure_ascii=False)
        if not isinstance(arguments, str):
            raise BadRequest(
                f"'{where}[{j}].function.arguments' must be a JSON string", param=where
            )
        call_id = call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise BadRequest(f"'{where}[{j}].id' must be a string", param=where)
        calls.append(
            {
                "id": call_id or f"call_{index}_{j}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        )
    return calls


def parse_messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise BadRequest(
            "'messages' is required: a list of {role, content} objects", param="messages"
        )
    if not raw:
        raise BadRequest(
            "'messages' must not be empty: send at least one message", param="messages"
        )
    out: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise BadRequest(
                f"'messages[{i}]' must be an object with 'role' and 'content'",
                param=f"messages[{i}]",
            )
        role = message.get("role")
        if role not in ROLES:
            raise BadRequest(
                f"'messages[{i}].role' must be one of {', '.join(sorted(ROLES))}, got {role!r}",
                param=f"messages[{i}].role",
            )
        for key, value in message.items():
            if key not in _MESSAGE_KEYS[role]:
                raise BadRequest(
                    f"'messages[{i}].{key}' is not a field of a {role} message",
                    param=f"messages[{i}].{key}",
                )
            if key in ("audio", "function_call") and value is not None:
                raise BadRequest(
                    f"'messages[{i}].{key}' is not served by the built-in backend"
                    + ("; send 'tool_calls'" if key == "function_call" else ""),
                    param=f"messages[{i}].{key}",
                )
        text = _message_text(i, message.get("content"), role)
        refusal = message.get("refusal")
        if refusal is not None:
            if not isinstance(refusal, str):
                raise BadRequest(
                    f"'messages[{i}].refusal' must be a string", param=f"messages[{i}].refusal"
                )
            text = text or refusal  # what the assistant said, as far as the model is concerned
        entry: dict[str, Any] = {"role": "system" if role == "developer" else role, "content": text}
        name = message.get("name")
        if name is not None:
            if not isinstance(name, str):
                raise BadRequest(
                    f"'messages[{i}].name' must be a string", param=f"messages[{i}].name"
                )
            entry["name"] = name
        if role == "assistant" and message.get("tool_calls") is not None:
            entry["tool_calls"] = _tool_calls(i, message["tool_calls"])
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise BadRequest(
                    f"'messages[{i}].tool_call_id' is required: the id of the assistant's tool "
                    "call this result answers",
                    param=f"messages[{i}].tool_call_id",
                )
            entry["tool_call_id"] = call_id
        out.append(entry)
    return out


# -- tools ---------------------------------------------------------------------------------------
def _parse_tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest("'tools' must be a list of function tools", param="tools")
    if len(raw) > MAX_TOOLS:
        raise BadRequest(f"'tools' takes at most {MAX_TOOLS} tools, got {len(raw)}", param="tools")
    tools = []
    seen: set[str] = set()
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
            raise BadRequest(
                f"'tools[{i}]' is of type {kind!r}; the built-in backend serves "
                'function tools ({"type": "function", "function": {…}})',
                param=f"tools[{i}]",
            )
        function = tool.get("function")
        if not isinstance(function, dict):
            raise BadRequest(f"'tools[{i}].function' is required", param=f"tools[{i}].function")
        unknown = set(function) - {"name", "description", "parameters", "strict"}
        if unknown:
            key = sorted(unknown)[0]
            raise BadRequest(
                f"'tools[{i}].function.{key}' is not a field of a function tool",
                param=f"tools[{i}].function.{key}",
            )
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise BadRequest(
                f"'tools[{i}].function.name' must be 1-64 letters, digits, '_', "
                f"'-', '.' or ':', got {name!r}",
                param=f"tools[{i}].function.name",
            )
        if name in seen:
            raise BadRequest(
                f"'tools[{i}].function.name' {name!r} is given twice",
                param=f"tools[{i}].function.name",
            )
        seen.add(name)
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise BadRequest(
                f"'tools[{i}].function.description' must be a string",
                param=f"tools[{i}].function.description",
            )
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise BadRequest(
                f"'tools[{i}].function.parameters' must be a JSON schema object",
                param=f"tools[{i}].function.parameters",
            )
        strict = function.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise BadRequest(
                f"'tools[{i}].function.strict' must be true or false",
                param=f"tools[{i}].function.strict",
            )
        entry: dict[str, Any] = {"name": name, "parameters": parameters}
        if description:
            entry["description"] = description
        tools.append({"type": "function", "function": entry})
    return tools


def _parse_tool_choice(raw: Any, tools: list[dict[str, Any]]) -> tuple[str, str | None, list]:
    """(choice, named function, the tools it leaves) for ``tool_choice``."""
    names = [t["function"]["name"] for t in tools]
    if raw is None:
        return ("auto" if tools else "none"), None, tools
    if raw in ("none", "auto", "required"):
        if raw == "required" and not tools:
            raise BadRequest(
                "'tool_choice' is 'required' but the request has no 'tools'", param="tool_choice"
            )
        return raw, None, tools
    if isinstance(raw, dict) and raw.get("type") == "function":
        function = raw.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if name not in names:
            raise BadRequest(
                f"'tool_choice' names the function {name!r}, which is not in "
                f"'tools' ({', '.join(names) or 'none given'})",
                param="tool_choice",
            )
        return "function", name, tools
    if isinstance(raw, dict) and raw.get("type") == "allowed_tools":
        allowed = raw.get("allowed_tools")
        mode = allowed.get("mode") if isinstance(allowed, dict) else None
        listed = allowed.get("tools") if isinstance(allowed, dict) else None
        if mode not in ("auto", "required") or not isinstance(listed, list):
            raise BadRequest(
                "'tool_choice.allowed_tools' must have a mode ('auto' or "
                "'required') and a list of tools",
                param="tool_choice",
            )
        wanted = []
        for entry in listed:
            function = entry.get("function") if isinstance(entry, dict) else None
            name = function.get("name") if isinstance(function, dict) else None
            if name not in names:
                raise BadRequest(
                    f"'tool_choice.allowed_tools' names {name!r}, which is not in 'tools'",
                    param="tool_choice",
                )
            wanted.append(name)
        kept = [t for t in tools if t["function"]["name"] in wanted]
        if not kept:
            raise BadRequest("'tool_choice.allowed_tools' allows no tool", param="tool_choice")
        return mode, None, kept
    raise BadRequest(
        "'tool_choice' must be 'none', 'auto', 'required' or "
        '{"type": "function", "function": {"name": …}}, got ' + repr(raw)[:60],
        param="tool_choice",
    )


def _parse_response_format(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadRequest(
            '\'response_format\' must be an object like {"type": "json_object"}',
            param="response_format",
        )
    kind = raw.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = raw.get("json_schema")
        if not isinstance(spec, dict):
            raise BadRequest(
                '\'response_format.json_schema\' is required: {"name", "schema", "strict"}',
                param="response_format.json_schema",
            )
        name = spec.get("name")
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_-]{1,64}$", name):
            raise BadRequest(
                "'response_format.json_schema.name' must be 1-64 letters, digits, "
                f"'_' or '-', got {name!r}",
                param="response_format.json_schema.name",
            )
        schema = spec.get("schema")
        if schema is None:
            return {"type": "json_object"}
        if not isinstance(schema, (dict, bool)):
            raise BadRequest(
                "'response_format.json_schema.schema' must be a JSON schema object",
                param="response_format.json_schema.schema",
            )
        strict = spec.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise BadRequest(
                "'response_format.json_schema.strict' must be true or false",
                param="response_format.json_schema.strict",
            )
        return {"type": "json_schema", "name": name, "schema": schema, "strict": bool(strict)}
    raise BadRequest(
        f"'response_format.type' must be 'text', 'json_object' or 'json_schema', got {kind!r}",
        param="response_format.type",
    )


def _parse_logit_bias(raw: Any) -> list[list[float]]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise BadRequest(
            "'logit_bias' must be an object of token id → bias (-100 to 100)", param="logit_bias"
        )
    if len(raw) > MAX_LOGIT_BIAS:
        raise BadRequest(f"'logit_bias' takes at most {MAX_LOGIT_BIAS} tokens", param="logit_bias")
    out = []
    for key, bias in raw.items():
        if not (isinstance(key, str) and key.isdigit() and len(key) < 10):
            raise BadRequest(
                f"'logit_bias' keys must be token ids (\"1234\"), got {key!r}", param="logit_bias"
            )
        if (
            isinstance(bias, bool)
            or not isinstance(bias, (int, float))
            or not math.isfinite(bias)
            or not -100 <= bias <= 100
        ):
            raise BadRequest(
                f"'logit_bias[{key}]' must be a number from -100 to 100, got {bias!r}",
                param="logit_bias",
            )
        out.append([int(key), float(bias)])
    return out


def _parse_stop(body: dict[str, Any]) -> list[str]:
    raw = body.get("stop")
    if raw is None:
        return []
    if isinstance(raw, str):
        stops = [raw]
    elif isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        stops = list(raw)
    else:
        raise BadRequest("'stop' must be a string or a list of up to 4 strings", param="stop")
    if len(stops) > MAX_STOPS:
        raise BadRequest(
            f"'stop' takes at most {MAX_STOPS} strings, got {len(stops)}", param="stop"
        )
    return stops


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    """The sampling fields both endpoints share."""
    seed = body.get("seed")
    if seed is not None and (not _is_int(seed) or not _INT64[0] <= seed <= _INT64[1]):
        raise BadRequest(f"'seed' must be a 64-bit integer, got {seed!r}", param="seed")
    top_k = _int(body, "top_k", 0, 1 << 30) or 0
    repeat = body.get("repeat_penalty")
    alias = body.get("repetition_penalty")
    if repeat is not None and alias is not None and repeat != alias:
        raise BadRequest(
            "'repeat_penalty' and 'repetition_penalty' are the same setting; send one of them",
            param="repetition_penalty",
        )
    key = "repeat_penalty" if repeat is not None else "repetition_penalty"
    repeat_penalty = _number(body, key, 1.0, 0.0, 10.0)
    if repeat_penalty <= 0:
        raise BadRequest(f"'{key}' must be above 0 (1 = no penalty)", param=key)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest(f"'stream' must be true or false, got {stream!r}", param="stream")
    options = body.get("stream_options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise BadRequest(
            "'stream_options' must be an object like {\"include_usage\": true}",
            param="stream_options",
        )
    for name in options:
        if name not in ("include_usage", "include_obfuscation"):
            raise BadRequest(
                f"'stream_options.{name}' is not a stream option", param=f"stream_options.{name}"
            )
    include_usage = options.get("include_usage", False)
    if include_usage is not None and not isinstance(include_usage, bool):
        raise BadRequest(
            f"'stream_options.include_usage' must be true or false, got {include_usage!r}",
            param="stream_options.include_usage",
        )
    if options.get("include_obfuscation") is True:
        raise BadRequest(
            "'stream_options.include_obfuscation' is not served: chunks are sent without padding",
            param="stream_options.include_obfuscation",
        )
    if options and not stream:
        raise BadRequest(
            "'stream_options' is only allowed when 'stream' is true", param="stream_options"
        )
    n = _int(body, "n", 1, MAX_N) or 1
    return {
        "temperature": _number(body, "temperature", 1.0, 0.0, 2.0),
        "top_p": top_p if top_p > 0 else 1e-6,
        "top_k": top_k,
        "min_p": _number(body, "min_p", 0.0, 0.0, 1.0),
        "seed": seed,
        "stop": _parse_stop(body),
        "frequency_penalty": _number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        "presence_penalty": _number(body, "presence_penalty", 0.0, -2.0, 2.0),
        "repeat_penalty": repeat_penalty,
        "logit_bias": _parse_logit_bias(body.get("logit_bias")),
        "n": n,
        "stream": stream,
        "include_usage": bool(include_usage),
    }


# -- endpoints -----------------------------------------------------------------------------------
def _chat_max_tokens(body: dict[str, Any]) -> int | None:
    """The answer's token limit: ``max_completion_tokens``, or the older ``max_tokens`` that
    means the same. Both given with different values is a 400, not one silently winning."""
    given = {
        key: body[key]
        for key in ("max_completion_tokens", "max_tokens")
        if body.get(key) is not None
    }
    for key, value in given.items():
        if not _is_int(value) or value <= 0:
            raise BadRequest(f"'{key}' must be a positive integer, got {value!r}", param=key)
    if len(set(given.values())) > 1:
        raise BadRequest(
            f"'max_tokens' ({given['max_tokens']}) and 'max_completion_tokens' "
            f"({given['max_completion_tokens']}) disagree",
            hint="send one of them ('max_tokens' is the older name of the same limit)",
            param="max_tokens",
        )
    return next(iter(given.values()), None)


def parse_chat(body: Any) -> ChatParams:
    model = require_model(body)
    check_fields(body, "chat", SAMPLING_EXTENSIONS)
    _check_inert(body)
    messages = parse_messages(body.get("messages"))
    max_tokens = _chat_max_tokens(body)
    logprobs = _bool(body, "logprobs", False)
    top_logprobs = _int(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    if top_logprobs is not None and not logprobs:
        raise BadRequest("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    tools = _parse_tools(body.get("tools"))
    choice, name, tools = _parse_tool_choice(body.get("tool_choice"), tools)
    return ChatParams(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        logprobs=logprobs,
        top_logprobs=top_logprobs or 0,
        response_format=_parse_response_format(body.get("response_format")),
        tools=tools,
        tool_choice=choice,
        tool_name=name,
        parallel_tool_calls=_bool(body, "parallel_tool_calls", True),
        **_sampling(body),
    )


def _parse_prompts(raw: Any) -> list[str | list[int]]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(_is_int(t) for t in raw):
        return [list(raw)]
    if isinstance(raw, list) and raw:
        prompts: list[str | list[int]] = []
        for i, item in enumerate(raw):
            if isinstance(item, str):
                prompts.append(item)
            elif isinstance(item, list) and item and all(_is_int(t) and t >= 0 for t in item):
                prompts.append(list(item))
            else:
                raise BadRequest(
                    f"'prompt[{i}]' must be a string or a list of token ids", param="prompt"
                )
        if len(prompts) > MAX_PROMPTS:
            raise BadRequest(f"'prompt' takes at most {MAX_PROMPTS} prompts", param="prompt")
        return prompts
    raise BadRequest(
        "'prompt' is required: a string, a list of strings, or token ids", param="prompt"
    )


def parse_completion(body: Any) -> CompletionRequest:
    """A legacy ``/v1/completions`` request (plus the sampling extensions and
    ``response_format``, which the built-in backend honours here too)."""
    model = require_model(body)
    check_fields(body, "completions", SAMPLING_EXTENSIONS | {"response_format"})
    _check_inert(body)
    prompts = _parse_prompts(body.get("prompt"))
    max_tokens = body.get("max_tokens", COMPLETIONS_DEFAULT_MAX_TOKENS)
    if max_tokens is None:
        max_tokens = COMPLETIONS_DEFAULT_MAX_TOKENS
    if not _is_int(max_tokens) or max_tokens <= 0:
        raise BadRequest(
            f"'max_tokens' must be a positive integer, got {max_tokens!r}", param="max_tokens"
        )
    suffix = body.get("suffix")
    if suffix not in (None, ""):
        raise BadRequest(
            "'suffix' (fill in the middle) is not served by the built-in backend", param="suffix"
        )
    logprobs = _int(body, "logprobs", 0, MAX_COMPLETION_LOGPROBS)
    echo = _bool(body, "echo", False)
    if echo and logprobs is not None:
        raise BadRequest(
            "'echo' with 'logprobs' needs the prompt's log probabilities, which "
            "the built-in backend does not compute",
            param="echo",
        )
    if echo and any(not isinstance(p, str) for p in prompts):
        raise BadRequest("'echo' needs the prompt as text, not token ids", param="echo")
    sampling = _sampling(body)
    best_of = _int(body, "best_of", 1, MAX_N)
    if best_of is not None and best_of != sampling["n"]:
        raise BadRequest(
            "'best_of' other than 'n' is not served: the built-in backend does not rank candidates",
            param="best_of",
        )
    params = ChatParams(
        model=model,
        max_tokens=max_tokens,
        logprobs=logprobs is not None,
        top_logprobs=logprobs or 0,
        response_format=_parse_response_format(body.get("response_format")),
        echo=echo,
        **sampling,
    )
    return CompletionRequest(params, prompts)


def parse_embeddings(body: Any) -> EmbedParams:
    model = require_model(body)
    check_fields(body, "embeddings")
    _check_inert(body)
    raw = body.get("input")
    inputs: list[str | list[int]]
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(_is_int(t) for t in raw):
        inputs = [list(raw)]  # one input given as token ids
    elif isinstance(raw, list):
        inputs = raw
    else:
        raise BadRequest("'input' is required: a string or a list of strings", param="input")
    if not inputs:
        raise BadRequest("'input' must not be empty", param="input")
    if len(inputs) > MAX_EMBED_INPUTS:
        raise BadRequest(
            f"'input' takes at most {MAX_EMBED_INPUTS} items, got {len(inputs)}", param="input"
        )
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            if not item:
                raise BadRequest(f"'input[{i}]' is an empty string; send some text", param="input")
        elif isinstance(item, list) and item:
            for j, token in enumerate(item):
                if not _is_int(token) or token < 0:
                    raise BadRequest(
                        f"'input[{i}][{j}]' is {token!r}, not a token id (a whole number from 0)",
                        param="input",
                    )
        else:
            raise BadRequest(
                f"'input[{i}]' must be a non-empty string (or a list of token ids)", param="input"
            )
    fmt = body.get("encoding_format") or "float"
    if fmt not in {"float", "base64"}:
        raise BadRequest(
            f"'encoding_format' must be 'float' or 'base64', got {fmt!r}", param="encoding_format"
        )
    dims = body.get("dimensions")
    if dims is not None and (not _is_int(dims) or dims <= 0):
        raise BadRequest(
            f"'dimensions' must be a positive integer, got {dims!r}", param="dimensions"
        )
    return EmbedParams(model=model, inputs=inputs, encoding_format=fmt, dimensions=dims)

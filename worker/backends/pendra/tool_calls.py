"""Tool calls in a model's own syntax: which syntax a chat template speaks, and parsing it (pure).

Models are trained to write tool calls in one of a few syntaxes; the chat template shows which.

* ``hermes`` (Hermes, Qwen 2.5/3, and what the worker teaches models whose template has no tool
  support): ``<tool_call>{"name": …, "arguments": {…}}</tool_call>``, one block per call.
* ``llama3`` (Llama 3.1/3.3 JSON tool calling): the whole answer is
  ``{"name": …, "parameters": {…}}``, optionally after ``<|python_tag|>``, several joined by ``;``.
* ``mistral``: ``[TOOL_CALLS][{"name": …, "arguments": {…}}, …]`` (v3 tokenizers) or
  ``[TOOL_CALLS]name[ARGS]{…}`` per call (v11+).
* ``functiongemma`` (FunctionGemma): ``<start_function_call>call:name{key:<escape>text<escape>,
  n:5}<end_function_call>``.
* ``pythonic`` (Llama 3.2/4, Gemma's ``tool_code`` convention): ``[name(a=1, b="x"), other()]``,
  optionally in a ``` ```tool_code``` fence or between ``<|python_start|>`` and ``<|python_end|>``.

:func:`parse` splits a whole answer into text and calls. Where a call starts is decided the same
way for a whole answer and for a stream (:mod:`~worker.backends.pendra.tool_stream`), so streamed
deltas always reassemble to the non-streamed result. A block that does not parse stays text.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FORMATS = ("hermes", "llama3", "mistral", "mistral_args", "functiongemma", "pythonic")


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # a JSON object, compact


@dataclass(frozen=True)
class Parsed:
    content: str
    calls: list[ToolCall]


def call_id() -> str:
    alphabet = string.ascii_letters + string.digits
    return "call_" + "".join(secrets.choice(alphabet) for _ in range(24))


def detect_format(template: str | None, native_tools: bool, architecture: str | None = None) -> str:
    """The tool-call syntax of a model, from its chat template (pure).

    A template without tool support gets the Hermes syntax: the worker then describes the tools
    in a system message itself (:mod:`~worker.backends.pendra.tool_prompt`).
    """
    source = template or ""
    if not native_tools:
        return "hermes"
    if "<tool_call>" in source:
        return "hermes"
    if "[TOOL_CALLS]" in source:
        return "mistral_args" if "[ARGS]" in source else "mistral"
    if "<start_function_call>" in source:
        return "functiongemma"
    if "<|python_start|>" in source or re.search(r"\[func_name1\(", source):
        return "pythonic"
    if "<|python_tag|>" in source or "<|start_header_id|>" in source:
        return "llama3"
    return "hermes"


# Markers a format's calls start with. ``start_only`` ones count only at the start of an answer.
_OPENERS: dict[str, tuple[str, ...]] = {
    "hermes": ("<tool_call>",),
    "llama3": ("<|python_tag|>",),
    "mistral": ("[TOOL_CALLS]",),
    "mistral_args": ("[TOOL_CALLS]",),
    "functiongemma": ("<start_function_call>",),
    "pythonic": ("```tool_code", "<|python_start|>"),
}
_START_ONLY: dict[str, tuple[str, ...]] = {
    "llama3": ("{",),
    "pythonic": ("[",),
}
MARKER_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<|python_tag|>",
    "[TOOL_CALLS]",
    "[ARGS]",
    "[CALL_ID]",
    "<start_function_call>",
    "<end_function_call>",
    "<escape>",
    "<|python_start|>",
    "<|python_end|>",
)
"""Special tokens that belong to tool-call syntax: a runner renders them as text (they are
control tokens in some vocabularies, which generation otherwise leaves out of the text)."""


def openers(fmt: str) -> tuple[str, ...]:
    return _OPENERS.get(fmt, ())


def start_openers(fmt: str) -> tuple[str, ...]:
    return _START_ONLY.get(fmt, ())


def find_opener(fmt: str, text: str) -> int:
    """Where the first tool call starts in ``text``, or -1 (pure; shared with the stream)."""
    stripped = len(text) - len(text.lstrip())
    for marker in start_openers(fmt):
        if text.startswith(marker, stripped):
            return stripped
    found = [i for i in (text.find(m) for m in openers(fmt)) if i >= 0]
    return min(found) if found else -1


def parse(fmt: str, text: str, *, cut: bool = False) -> Parsed:
    """Text and tool calls of a whole answer; ``cut`` when ``max_tokens`` ended it."""
    start = find_opener(fmt, text)
    if start < 0:
        return Parsed(text, [])
    calls, trailing = parse_region(fmt, text[start:], final=True)
    if not calls:
        return Parsed(text, [])
    content = text[:start] + (unfinished_call_dropped(fmt, trailing) if cut else trailing)
    return Parsed(content if content.strip() else "", calls)


def unfinished_call_dropped(fmt: str, trailing: str) -> str:
    """The text after an answer's complete calls, without the call ``max_tokens`` cut off
    mid-way: that is the start of a call, not something the model said (pure)."""
    start = find_opener(fmt, trailing)
    return trailing if start < 0 else trailing[:start]


def parse_region(fmt: str, region: str, *, final: bool) -> tuple[list[ToolCall], str]:
    """Calls in ``region`` (which starts at an opener) and the text that is not part of one.

    With ``final`` false (mid-stream), only calls that are certainly complete are returned, and
    the calls returned are always the first ones the final parse returns.
    """
    parser = _PARSERS[fmt]
    return parser(region, final)


# -- JSON helpers -----------------------------------------------------------------------------
def _canonical(arguments: Any) -> str | None:
    """Arguments as compact JSON, or None when they are not a JSON object."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))


def _call_from(obj: Any, *arg_keys: str) -> ToolCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    for key in arg_keys:
        if key in obj:
            arguments = _canonical(obj[key])
            return ToolCall(obj["name"], arguments) if arguments is not None else None
    return ToolCall(obj["name"], "{}")


_DECODER = json.JSONDecoder()


def _json_at(text: str, pos: int) -> tuple[Any, int] | None:
    try:
        return _DECODER.raw_decode(text, pos)
    except ValueError:
        return None


# -- hermes ---------------------------------------------------------------------------------------
_HERMES_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def _parse_hermes(region: str, final: bool) -> tuple[list[ToolCall], str]:
    return _parse_blocks(region, final, _HERMES_BLOCK, "<tool_call>", _hermes_call)


def _parse_blocks(
    region: str,
    final: bool,
    block: re.Pattern[str],
    opener: str,
    parse_call: Callable[[str], ToolCall | None],
) -> tuple[list[ToolCall], str]:
    """Calls written as ``opener … closer`` blocks; a block that does not parse stays text. At
    the end of the answer (end of turn, max_tokens) a last block that never closed still counts."""
    calls: list[ToolCall] = []
    text: list[str] = []
    pos = 0
    for match in block.finditer(region):
        text.append(region[pos : match.start()])
        call = parse_call(match.group(1))
        if call is None:
            text.append(match.group(0))
        else:
            calls.append(call)
        pos = match.end()
    rest = region[pos:]
    if final and rest.lstrip().startswith(opener):
        at = rest.index(opener)
        call = parse_call(rest[at + len(opener) :])
        if call is not None:
            text.append(rest[:at])
            calls.append(call)
            rest = ""
    text.append(rest)
    return calls, "".join(text)


def _hermes_call(body: str) -> ToolCall | None:
    body = body.strip()
    decoded = _json_at(body, 0)
    if decoded is None or body[decoded[1] :].strip():
        return None
    return _call_from(decoded[0], "arguments", "parameters")


# -- llama3 ---------------------------------------------------------------------------------------
def _parse_llama3(region: str, final: bool) -> tuple[list[ToolCall], str]:
    if not final:
        return [], region
    body = region.strip()
    if body.startswith("<|python_tag|>"):
        body = body[len("<|python_tag|>") :].lstrip()
    calls: list[ToolCall] = []
    pos = 0
    while pos < len(body):
        decoded = _json_at(body, pos)
        if decoded is None:
            return [], region
        call = _call_from(decoded[0], "parameters", "arguments")
        if call is None:
            return [], region
        calls.append(call)
        pos = decoded[1]
        while pos < len(body) and (body[pos].isspace() or body[pos] == ";"):
            pos += 1
    return calls, ""


# -- mistral --------------------------------------------------------------------------------------
def _parse_mistral(region: str, final: bool) -> tuple[list[ToolCall], str]:
    if not final:
        return [], region
    calls: list[ToolCall] = []
    text: list[str] = []
    pos = 0
    while True:
        at = region.find("[TOOL_CALLS]", pos)
        if at < 0:
            break
        text.append(region[pos:at])
        start = at + len("[TOOL_CALLS]")
        while start < len(region) and region[start].isspace():
            start += 1
        decoded = _json_at(region, start)
        found: list[ToolCall] = []
        if decoded is not None:
            items = decoded[0] if isinstance(decoded[0], list) else [decoded[0]]
            found = [c for c in (_call_from(i, "arguments", "parameters") for i in items) if c]
            if len(found) != len(items):
                found = []
        if not found:
            text.append(region[at:start])
            pos = start
            continue
        calls.extend(found)
        pos = decoded[1] if decoded is not None else start
    text.append(region[pos:])
    return calls, "".join(text)


_ARGS_CALL = re.compile(
    r"\[TOOL_CALLS\]\s*([A-Za-z0-9_.:-]+)\s*(?:\[CALL_ID\][A-Za-z0-9]*)?\[ARGS\]"
)


def _parse_mistral_args(region: str, final: bool) -> tuple[list[ToolCall], str]:
    if not final:
        return [], region
    calls: list[ToolCall] = []
    text: list[str] = []
    pos = 0
    for match in _ARGS_CALL.finditer(region):
        if match.start() < pos:
            continue
        text.append(region[pos : match.start()])
        decoded = _json_at(region, match.end())
        arguments = _canonical(decoded[0]) if decoded is not None else None
        if decoded is None or arguments is None:
            text.append(match.group(0))
            pos = match.end()
            continue
        calls.append(ToolCall(match.group(1), arguments))
        pos = decoded[1]
    text.append(region[pos:])
    if not calls:  # maybe the array form after all
        return _parse_mistral(region, final)
    return calls, "".join(text)


# -- functiongemma --------------------------------------------------------------------------------
_FG_BLOCK = re.compile(r"<start_function_call>(.*?)<end_function_call>", re.DOTALL)


def _parse_functiongemma(region: str, final: bool) -> tuple[list[ToolCall], str]:
    return _parse_blocks(region, final, _FG_BLOCK, "<start_function_call>", _functiongemma_call)


def _functiongemma_call(body: str) -> ToolCall | None:
    body = body.strip()
    match = re.match(r"call:([A-Za-z0-9_.:-]+)\s*", body)
    if match is None:
        return None
    try:
        value, end = _FgReader(body, match.end()).value()
    except ValueError:
        return None
    if body[end:].strip() or not isinstance(value, dict):
        return None
    return ToolCall(match.group(1), json.dumps(value, ensure_ascii=False, separators=(",", ":")))


class _FgReader:
    """FunctionGemma's argument syntax: ``{k:v,…}``, ``[v,…]``, ``<escape>text<escape>``,
    numbers, ``true``/``false``/``null``; keys are bare."""

    def __init__(self, text: str, pos: int) -> None:
        self.text = text
        self.pos = pos

    def value(self) -> tuple[Any, int]:
        return self._value(), self.pos

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _value(self) -> Any:
        self._skip()
        text, pos = self.text, self.pos
        if text.startswith("<escape>", pos):
            end = text.find("<escape>", pos + 8)
            if end < 0:
                raise ValueError("unclosed <escape>")
            self.pos = end + 8
            return text[pos + 8 : end]
        if text.startswith("{", pos):
            return self._object()
        if text.startswith("[", pos):
            return self._array()
        match = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null").match(text, pos)
        if match is None:
            raise ValueError(f"no value at {pos}")
        self.pos = match.end()
        return json.loads(match.group(0))

    def _object(self) -> dict[str, Any]:
        self.pos += 1
        out: dict[str, Any] = {}
        self._skip()
        if self.text.startswith("}", self.pos):
            self.pos += 1
            return out
        while True:
            self._skip()
            match = re.compile(r"[A-Za-z0-9_.-]+|<escape>").match(self.text, self.pos)
            if match is None:
                raise ValueError("no key")
            if match.group(0) == "<escape>":
                key = self._value()
            else:
                key = match.group(0)
                self.pos = match.end()
            self._skip()
            if not self.text.startswith(":", self.pos):
                raise ValueError("no ':'")
            self.pos += 1
            out[str(key)] = self._value()
            self._skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("}", self.pos):
                self.pos += 1
                return out
            raise ValueError("no ',' or '}'")

    def _array(self) -> list[Any]:
        self.pos += 1
        out: list[Any] = []
        self._skip()
        if self.text.startswith("]", self.pos):
            self.pos += 1
            return out
        while True:
            out.append(self._value())
            self._skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("]", self.pos):
                self.pos += 1
                return out
            raise ValueError("no ',' or ']'")


# -- pythonic -------------------------------------------------------------------------------------
def _parse_pythonic(region: str, final: bool) -> tuple[list[ToolCall], str]:
    if not final:
        return [], region
    body = region.strip()
    tail = ""
    for opening, closing in (("```tool_code", "```"), ("<|python_start|>", "<|python_end|>")):
        if body.startswith(opening):
            end = body.find(closing, len(opening))
            if end >= 0:
                tail = body[end + len(closing) :]
                body = body[len(opening) : end]
            else:
                body = body[len(opening) :]
            break
    calls = _python_calls(body.strip())
    if calls is None:
        return [], region
    return calls, tail


def _python_calls(source: str) -> list[ToolCall] | None:
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    node = tree.body
    items = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    calls = []
    for item in items:
        if not isinstance(item, ast.Call) or item.args:
            return None
        name = _dotted(item.func)
        if name is None:
            return None
        arguments: dict[str, Any] = {}
        for keyword in item.keywords:
            if keyword.arg is None:
                return None
            try:
                arguments[keyword.arg] = ast.literal_eval(keyword.value)
            except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
                return None
        try:
            text = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError):  # sets, bytes, complex numbers: not JSON
            return None
        calls.append(ToolCall(name, text))
    return calls or None


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


_PARSERS = {
    "hermes": _parse_hermes,
    "llama3": _parse_llama3,
    "mistral": _parse_mistral,
    "mistral_args": _parse_mistral_args,
    "functiongemma": _parse_functiongemma,
    "pythonic": _parse_pythonic,
}

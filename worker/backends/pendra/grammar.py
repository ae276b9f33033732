"""Grammars (GBNF) that constrain generation: JSON schemas and tool calls (pure).

llama.cpp's grammar sampler masks, at every step, the tokens that would break a GBNF grammar, so
a model — even a random one — can only write text the grammar accepts. This module writes those
grammars in the worker process, before a request reaches the model's runner, so a schema the
backend cannot enforce is a 400 that names it:

* ``response_format`` ``json_object`` → any JSON object; ``json_schema`` → the schema, converted
  with llama-cpp-python's JSON-schema converter (``llama_cpp/llama_grammar.py``, loaded by path:
  it is pure Python, and importing the ``llama_cpp`` package would load llama.cpp itself into the
  worker). Integer ``minimum``/``maximum`` are added here. Keywords a grammar cannot enforce
  (``multipleOf``, ``uniqueItems``, ``not`` …) are refused rather than ignored: an answer that
  says it follows a schema must follow it.
* ``tool_choice`` ``required`` or a named function → the model's own tool-call syntax
  (:mod:`~worker.backends.pendra.tool_calls`) with each function's ``parameters`` as the schema
  of its arguments. With ``tool_choice: auto`` and a ``response_format``, the answer is either
  JSON of the format or tool calls.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import math
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from worker.backends.pendra.params import ChatParams
from worker.backends.pendra.schema_pattern import PatternError, anchored, grammar_ready
from worker.errors import BadRequest

MAX_REPEAT = 1000
"""Largest minLength/maxLength/minItems/maxItems: llama.cpp expands a repetition into one rule
per item, so larger bounds cost memory and time per token for nothing a client needs."""
MAX_GRAMMAR_CHARS = 512 * 1024
MAX_DEPTH = 64
INT_DIGITS = 16  # the converter's own bound on integer digits

_UNENFORCEABLE = {
    "multipleOf": "a multiple of a number",
    "uniqueItems": "unique array items",
    "not": "'not'",
    "if": "'if'/'then'/'else'",
    "then": "'if'/'then'/'else'",
    "else": "'if'/'then'/'else'",
    "patternProperties": "pattern properties",
    "propertyNames": "property-name rules",
    "minProperties": "a minimum number of properties",
    "maxProperties": "a maximum number of properties",
    "contains": "'contains'",
    "minContains": "'contains'",
    "maxContains": "'contains'",
    "dependentRequired": "dependent properties",
    "dependentSchemas": "dependent schemas",
    "dependencies": "dependent properties",
    "unevaluatedProperties": "'unevaluatedProperties'",
    "unevaluatedItems": "'unevaluatedItems'",
}
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


@functools.cache
def _converter_module() -> ModuleType:
    spec = importlib.util.find_spec("llama_cpp")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llama-cpp-python is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "llama_grammar.py"
    loader_spec = importlib.util.spec_from_file_location("pendra_llama_grammar", path)
    if loader_spec is None or loader_spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(module)
    # JSON strings may not hold raw control characters, nor a bare quote or backslash: the
    # converter's own character rules allow them, which makes answers that json.loads refuses.
    string_char = r'[^"\\\x7F\x00-\x1F]'
    module.PRIMITIVE_RULES["char"] = module.BuiltinRule(
        string_char
        + r' | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])',
        [],
    )
    module.DOT = string_char
    module.DOTALL = string_char
    return module


def literal(text: str) -> str:
    """A GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("\r", "\\r").replace("\t", "\\t") + '"'


# -- schema checks --------------------------------------------------------------------------------
def check_schema(schema: Any, where: str) -> Any:
    """A copy of ``schema`` the converter can enforce exactly, or a BadRequest naming the part."""
    if schema is True or schema == {}:
        return {}
    if not isinstance(schema, dict):
        raise BadRequest(f"'{where}' must be a JSON schema object", param=where)
    out = copy.deepcopy(schema)
    _check(out, where, 0)
    return out


def _check(node: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BadRequest(f"'{where}' nests deeper than {MAX_DEPTH} levels", param=where)
    if isinstance(node, bool):
        if node is False:
            raise BadRequest(f"'{where}' is false: no value can match it", param=where)
        return
    if not isinstance(node, dict):
        raise BadRequest(f"'{where}' must be a JSON schema object", param=where)
    for key in node:
        if key in _UNENFORCEABLE:
            raise BadRequest(
                f"'{where}.{key}': the built-in backend cannot enforce {_UNENFORCEABLE[key]} "
                "while generating",
                hint="drop the keyword and check the value in your code",
                param=f"{where}.{key}",
            )
    ref = node.get("$ref")
    if ref is not None and not (isinstance(ref, str) and ref.startswith("#/")):
        raise BadRequest(
            f"'{where}.$ref' must point inside the schema ('#/$defs/…'); remote "
            "schemas are never fetched",
            param=f"{where}.$ref",
        )
    for key in ("minLength", "maxLength", "minItems", "maxItems"):
        value = node.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPEAT:
            raise BadRequest(
                f"'{where}.{key}' must be an integer from 0 to {MAX_REPEAT}", param=f"{where}.{key}"
            )
    types = node.get("type")
    kinds = types if isinstance(types, list) else [types]
    bounded = [
        k for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in node
    ]
    if bounded and "integer" not in kinds:
        if kinds == ["number"] and bounded == ["minimum"] and node["minimum"] == 0:
            pass  # non-negative numbers: enforced (no sign)
        else:
            raise BadRequest(
                f"'{where}.{bounded[0]}': bounds are enforced on integers only "
                "(and 'minimum': 0 on numbers)",
                param=f"{where}.{bounded[0]}",
            )
    for key in bounded:
        value = node[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise BadRequest(f"'{where}.{key}' must be a number", param=f"{where}.{key}")
    pattern = node.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise BadRequest(f"'{where}.pattern' must be a string", param=f"{where}.pattern")
        try:
            ready = grammar_ready(pattern)
        except PatternError as exc:
            raise BadRequest(f"'{where}.pattern' {exc}", param=f"{where}.pattern") from None
        node["pattern"] = anchored(ready)
    for key in _SUBSCHEMA_MAPS:
        children = node.get(key)
        if children is not None:
            if not isinstance(children, dict):
                raise BadRequest(f"'{where}.{key}' must be an object", param=f"{where}.{key}")
            for name, child in children.items():
                if child is True:
                    children[name] = {}
                    continue
                _check(child, f"{where}.{key}.{name}", depth + 1)
    for key in _SUBSCHEMA_LISTS:
        children = node.get(key)
        if children is not None:
            if not isinstance(children, list) or not children:
                raise BadRequest(
                    f"'{where}.{key}' must be a non-empty list of schemas", param=f"{where}.{key}"
                )
            for i, child in enumerate(children):
                if child is True:
                    children[i] = {}
                    continue
                _check(child, f"{where}.{key}[{i}]", depth + 1)
    items = node.get("items")
    if isinstance(items, list):
        for i, child in enumerate(items):
            _check(child, f"{where}.items[{i}]", depth + 1)
    elif items is True:
        node["items"] = {}
    elif items is not None:
        _check(items, f"{where}.items", depth + 1)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        _check(extra, f"{where}.additionalProperties", depth + 1)


# -- integer ranges -------------------------------------------------------------------------------
def int_range(low: int | None, high: int | None) -> str:
    """A GBNF expression for the integers in [low, high] (None: unbounded, up to 16 digits)."""
    limit = 10**INT_DIGITS - 1
    low = -limit if low is None else max(low, -limit)
    high = limit if high is None else min(high, limit)
    if low > high:
        raise ValueError("empty range")
    parts = []
    if low < 0:
        negative = _non_negative(max(1, -min(high, -1)), -low)
        parts.append('"-" (' + negative + ")")
    if high >= 0:
        parts.append(_non_negative(max(low, 0), high))
    return "(" + " | ".join(parts) + ")"


def _non_negative(low: int, high: int) -> str:
    alternatives = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        start = max(low, 10 ** (digits - 1) if digits > 1 else 0)
        end = min(high, 10**digits - 1)
        if start <= end:
            alternatives += _same_length(str(start), str(end))
    return " | ".join(alternatives)


def _same_length(a: str, b: str) -> list[str]:
    if a == b:
        return [f'"{a}"']
    if len(a) == 1:
        return [f"[{a}-{b}]"]
    if a[0] == b[0]:
        return [f'"{a[0]}" (' + " | ".join(_same_length(a[1:], b[1:])) + ")"]
    rest = len(a) - 1
    out = []
    first, last = int(a[0]), int(b[0])
    if a[1:] != "0" * rest:
        out.append(f'"{a[0]}" (' + " | ".join(_same_length(a[1:], "9" * rest)) + ")")
        first += 1
    tail = None
    if b[1:] != "9" * rest:
        tail = f'"{b[0]}" (' + " | ".join(_same_length("0" * rest, b[1:])) + ")"
        last -= 1
    if first <= last:
        out.append(f"[{first}-{last}]" + " [0-9]" * rest)
    if tail:
        out.append(tail)
    return out


def _bounds(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    low = high = None
    if "minimum" in schema:
        low = math.ceil(schema["minimum"])
    if "exclusiveMinimum" in schema:
        value = schema["exclusiveMinimum"]
        bound = math.floor(value) + 1
        low = bound if low is None else max(low, bound)
    if "maximum" in schema:
        high = math.floor(schema["maximum"])
    if "exclusiveMaximum" in schema:
        value = schema["exclusiveMaximum"]
        bound = math.ceil(value) - 1
        high = bound if high is None else min(high, bound)
    return low, high


# -- the converter --------------------------------------------------------------------------------
def _new_converter() -> Any:
    module = _converter_module()

    class Converter(module.SchemaConverter):  # type: ignore[name-defined,misc]
        def visit(self, schema: Any, name: str) -> str:
            if schema is True:
                schema = {}
            rule_name = name or "root"
            kind = schema.get("type") if isinstance(schema, dict) else None
            if kind == "integer" and any(
                k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
            ):
                low, high = _bounds(schema)
                return self._add_rule(rule_name, int_range(low, high) + " space")
            if kind == "number" and schema.get("minimum") == 0:
                self._add_primitive("number", module.PRIMITIVE_RULES["number"])
                rule = '("0" | [1-9] [0-9]{0,15}) ("." [0-9]+)? ([eE] [-+]? [0-9]+)? space'
                return self._add_rule(f"{rule_name}-nonneg", rule)
            return super().visit(schema, name)

    return Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


class GrammarBuilder:
    """One grammar: schema rules from the converter plus rules of our own."""

    def __init__(self) -> None:
        self.converter = _new_converter()

    def schema_rule(self, schema: Any, name: str, where: str) -> str:
        return self.visit(self.resolve(schema, name, where), name, where)

    def resolve(self, schema: Any, name: str, where: str) -> Any:
        """A checked copy of ``schema`` whose ``$ref``s the converter can follow."""
        checked = check_schema(schema, where)
        try:
            return self.converter.resolve_refs(checked, f"pendra:{name}")
        except (AssertionError, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
            raise BadRequest(
                f"'{where}' cannot be turned into a grammar: {exc}", param=where
            ) from None

    def visit(self, schema: Any, name: str, where: str) -> str:
        """The rule for (a part of) a schema :meth:`resolve` returned."""
        try:
            return str(self.converter.visit(schema, name))
        except (AssertionError, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
            raise BadRequest(
                f"'{where}' cannot be turned into a grammar: {exc}", param=where
            ) from None

    def add(self, name: str, rule: str) -> str:
        return str(self.converter._add_rule(name, rule))

    def text(self, root: str) -> str:
        self.converter._rules["root"] = root
        grammar = str(self.converter.format_grammar())
        if len(grammar) > MAX_GRAMMAR_CHARS:
            raise BadRequest(
                "the schema makes a grammar over 512 KiB; simplify it", param="response_format"
            )
        return grammar


# -- requests -------------------------------------------------------------------------------------
def json_grammar(response_format: dict[str, Any]) -> str:
    """The grammar of a ``response_format`` alone."""
    builder = GrammarBuilder()
    rule = _format_rule(builder, response_format)
    return builder.text(rule)


def _format_rule(builder: GrammarBuilder, response_format: dict[str, Any]) -> str:
    if response_format["type"] == "json_object":
        return builder.schema_rule({"type": "object"}, "json", "response_format")
    return builder.schema_rule(
        response_format["schema"], "json", "response_format.json_schema.schema"
    )


def one_forced_call(params: ChatParams) -> bool:
    """Whether the request's grammar allows exactly one tool call and nothing after it.

    A named function is called once (as OpenAI's and vLLM's named tool choice do); otherwise
    ``parallel_tool_calls`` decides whether several calls may follow each other."""
    if not (params.calls_tools and params.tool_choice in ("required", "function")):
        return False
    return params.tool_choice == "function" or not params.parallel_tool_calls


def request_grammar(params: ChatParams, tool_format: str) -> str | None:
    """The grammar a request's answer must follow, or None when it is free text."""
    constrained = params.calls_tools and params.tool_choice in ("required", "function")
    if not constrained and params.response_format is None:
        return None
    builder = GrammarBuilder()
    if constrained:
        return builder.text(_tools_rule(builder, params, tool_format))
    assert params.response_format is not None
    json_rule = _format_rule(builder, params.response_format)
    if params.calls_tools and tool_format in _JSON_SYNTAX:
        return builder.text(f"{json_rule} | {_tools_rule(builder, params, tool_format)}")
    return builder.text(json_rule)


_JSON_SYNTAX = ("hermes", "llama3", "mistral", "mistral_args")


def _tools_rule(builder: GrammarBuilder, params: ChatParams, fmt: str) -> str:
    tools = params.tools
    if params.tool_choice == "function":
        tools = [t for t in tools if t["function"]["name"] == params.tool_name]
    calls = []
    for i, tool in enumerate(tools):
        function = tool["function"]
        where = f"tools[{params.tools.index(tool)}].function.parameters"
        calls.append(_call_rule(builder, fmt, function["name"], function["parameters"], i, where))
    call = builder.add("tool-call", " | ".join(calls))
    many = not one_forced_call(params)
    if fmt == "hermes":
        block = builder.add("tool-block", f'"<tool_call>\\n" {call} "\\n</tool_call>"')
        return f'{block} ("\\n" {block})*' if many else block
    if fmt == "llama3":
        return f'{call} (";" " " {call})*' if many else call
    if fmt == "mistral":
        body = f'{call} ("," " " {call})*' if many else call
        return f'"[TOOL_CALLS][" {body} "]"'
    if fmt == "mistral_args":
        return f"{call}+" if many else call
    if fmt == "functiongemma":
        return f"{call}+" if many else call
    # pythonic
    return f'"[" {call} ("," " " {call})* "]"' if many else f'"[" {call} "]"'


def _call_rule(
    builder: GrammarBuilder, fmt: str, name: str, parameters: Any, index: int, where: str
) -> str:
    prefix = f"fn-{index}"
    if fmt in ("hermes", "mistral", "llama3"):
        args = builder.schema_rule(parameters, f"{prefix}-args", where)
        key = "parameters" if fmt == "llama3" else "arguments"
        head = literal(f'{{"name": "{name}", "{key}": ')
        return builder.add(prefix, f'{head} {args} "}}"')
    if fmt == "mistral_args":
        args = builder.schema_rule(parameters, f"{prefix}-args", where)
        return builder.add(prefix, f'"[TOOL_CALLS]" {literal(name)} "[ARGS]" {args}')
    schema = builder.resolve(parameters, prefix, where)
    if fmt == "functiongemma":
        kwargs = _kwargs(builder, schema, prefix, where, ":", _functiongemma_value)
        head = literal(f"<start_function_call>call:{name}{{")
        return builder.add(prefix, f'{head} {kwargs} "}}<end_function_call>"')
    kwargs = _kwargs(builder, schema, prefix, where, "=", _python_value)
    return builder.add(prefix, f'{literal(name + "(")} {kwargs} ")"')


def _kwargs(
    builder: GrammarBuilder,
    schema: dict[str, Any],
    prefix: str,
    where: str,
    assign: str,
    value: Any,
) -> str:
    """``key<assign>value`` pairs of an object schema's properties, ``", "``-separated: required
    ones in order, then each optional one or not."""
    properties = schema.get("properties") or {}
    required = [k for k in properties if k in set(schema.get("required") or [])]
    optional = [k for k in properties if k not in required]
    items = {}
    for key in properties:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise BadRequest(
                f"'{where}.properties.{key}': this model's tool-call syntax takes "
                "argument names made of letters, digits and '_'",
                param=where,
            )
        rule = value(builder, properties[key], f"{prefix}-{key}", f"{where}.properties.{key}")
        items[key] = builder.add(f"{prefix}-{key}-kv", f"{literal(key + assign)} {rule}")
    if required:
        body = ' ", " '.join(items[k] for k in required)
        for key in optional:
            body += f' (", " {items[key]})?'
        return f"({body})"
    if not optional:
        return '""'
    alternatives = []
    for i, key in enumerate(optional):
        rest = "".join(f' (", " {items[k]})?' for k in optional[i + 1 :])
        alternatives.append(f"{items[key]}{rest}")
    return "(" + " | ".join(alternatives) + ")?"


def _python_value(builder: GrammarBuilder, schema: Any, name: str, where: str) -> str:
    """A value in Python literal syntax: JSON's, with True/False/None."""
    rule = builder.visit(schema, name, where)
    rules = builder.converter._rules
    for key, body in list(rules.items()):
        rules[key] = (
            body.replace('"true"', '"True"')
            .replace('"false"', '"False"')
            .replace('"null"', '"None"')
        )
    return rule


def _functiongemma_value(builder: GrammarBuilder, schema: Any, name: str, where: str) -> str:
    """A value in FunctionGemma's syntax: strings between ``<escape>`` markers."""
    schema = schema if isinstance(schema, dict) else {}
    if "enum" in schema and all(isinstance(v, str) for v in schema["enum"]):
        choices = " | ".join(literal(v) for v in schema["enum"])
        return builder.add(name, f'"<escape>" ({choices}) "<escape>"')
    kind = schema.get("type")
    if kind == "string":
        return builder.add("fg-string", '"<escape>" [^<]* "<escape>"')
    if kind in ("integer", "number", "boolean"):
        return builder.visit(schema, name, where)
    builder.add("fg-string", '"<escape>" [^<]* "<escape>"')
    builder.add("fg-key", "[A-Za-z0-9_]+")
    builder.add("fg-number", '"-"? [0-9]+ ("." [0-9]+)?')
    builder.add("fg-object", '"{" (fg-key ":" fg-value ("," fg-key ":" fg-value)*)? "}"')
    builder.add("fg-array", '"[" (fg-value ("," fg-value)*)? "]"')
    return builder.add(
        "fg-value", 'fg-string | fg-number | "true" | "false" | "null" | fg-object | fg-array'
    )

"""Grammars for structured output and tool calls: what is refused, and what llama.cpp compiles."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vocab_proc import compiled

from worker.backends.pendra.grammar import (
    MAX_REPEAT,
    check_schema,
    int_range,
    json_grammar,
    request_grammar,
)
from worker.backends.pendra.params import parse_chat
from worker.errors import BadRequest


def _as_regex(expression: str) -> re.Pattern[str]:
    """The GBNF of :func:`int_range` (literals, digit classes, groups) as a Python regex."""
    pattern = re.sub(r'"([^"]*)"', lambda m: re.escape(m.group(1)), expression)
    return re.compile(pattern.replace(" ", ""))


@pytest.mark.parametrize(
    ("low", "high"),
    [(0, 0), (1, 7), (-37, 1234), (10, 99), (100, 1000), (-5, -1), (7, 7), (0, 9), (95, 1005)],
)
def test_int_range_matches_exactly_the_range(low: int, high: int) -> None:
    regex = _as_regex(int_range(low, high))
    for value in range(low - 150, high + 150):
        assert bool(regex.fullmatch(str(value))) == (low <= value <= high), value


@given(st.integers(-(10**6), 10**6), st.integers(0, 10**6), st.integers(-(10**7), 10**7))
def test_int_range_property(low: int, width: int, probe: int) -> None:
    high = low + width
    regex = _as_regex(int_range(low, high))
    assert bool(regex.fullmatch(str(probe))) == (low <= probe <= high)
    assert regex.fullmatch(str(low)) and regex.fullmatch(str(high))
    assert not regex.fullmatch("0" + str(abs(low) + 1))  # no leading zeros


def test_one_sided_ranges() -> None:
    at_least = _as_regex(int_range(5, None))
    assert at_least.fullmatch("5") and at_least.fullmatch("123456789")
    assert not at_least.fullmatch("4") and not at_least.fullmatch("-5")
    at_most = _as_regex(int_range(None, -3))
    assert at_most.fullmatch("-3") and at_most.fullmatch("-999999")
    assert not at_most.fullmatch("-2") and not at_most.fullmatch("0")


@pytest.mark.parametrize(
    ("schema", "param"),
    [
        ({"type": "integer", "multipleOf": 3}, "s.multipleOf"),
        ({"type": "array", "uniqueItems": True}, "s.uniqueItems"),
        ({"not": {"type": "string"}}, "s.not"),
        ({"properties": {"a": {"if": {}, "then": {}}}}, "s.properties.a.if"),
        ({"type": "string", "maxLength": MAX_REPEAT + 1}, "s.maxLength"),
        ({"type": "array", "minItems": -1}, "s.minItems"),
        ({"$ref": "https://example.com/schema.json"}, "s.$ref"),
        ({"type": "number", "maximum": 1.5}, "s.maximum"),
        ({"anyOf": []}, "s.anyOf"),
        (False, "s"),
    ],
)
def test_unenforceable_schemas_are_refused(schema: object, param: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_schema(schema, "s")
    assert info.value.param == param


def test_too_deep_schemas_are_refused() -> None:
    schema: dict = {"type": "string"}
    for _ in range(80):
        schema = {"type": "array", "items": schema}
    with pytest.raises(BadRequest, match="deeper"):
        json_grammar({"type": "json_schema", "schema": schema})


def test_unanchored_patterns_match_anywhere() -> None:
    checked = check_schema({"type": "string", "pattern": "ab+"}, "s")
    assert checked["pattern"] == "^.*(ab+).*$"
    # an alternation stays one alternative inside the anchors
    assert check_schema({"type": "string", "pattern": "^cat|dog$"}, "s")["pattern"] == (
        "^(cat|dog)$"
    )


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("[z-a](", "is not a valid regular expression"),
        ("\\bword\\b", "uses \\b, which a grammar cannot express"),
        ("(a)\\1", "uses \\1, which a grammar cannot express"),
        ("^[\\D]$", "uses \\D inside [...]"),
        ("^\\x4$", "is not a valid regular expression (incomplete escape"),
    ],
)
def test_patterns_a_grammar_cannot_follow_are_refused(pattern: str, why: str) -> None:
    schema = {"type": "object", "properties": {"id": {"type": "string", "pattern": pattern}}}
    with pytest.raises(BadRequest, match=re.escape(why)) as caught:
        check_schema(schema, "response_format.json_schema.schema")
    assert caught.value.param == "response_format.json_schema.schema.properties.id.pattern"


ESCAPED_PATTERNS = {
    # pattern: (strings it accepts, strings it refuses)
    "^\\d{3}-\\d{4}$": (["555-1234"], ["55-1234", "555-12a4"]),
    "^[\\w.-]+@[\\w-]+\\.[a-z]{2,}$": (["a.b-c_d@x-y.io"], ["a@b.c", "a b@x.io"]),
    "^\\D\\s\\S$": (["a b"], ["1 b", "ab", "a  "]),
    "^a\\.b\\/c\\\\d$": (["a.b/c\\d"], ["axb/c\\d"]),
    "^[\\]\\-]+\\x41\\u00e9$": (["]-]Aé"], ["]-]Ae"]),
    "^\\t\\n$": (["\t\n"], [" \n"]),
}


@pytest.mark.parametrize("pattern", list(ESCAPED_PATTERNS))
def test_escapes_become_classes_that_mean_the_same(pattern: str) -> None:
    """The rewritten pattern (what the converter turns into GBNF) accepts what the original
    accepts, checked with Python's own regex engine on both."""
    from worker.backends.pendra.schema_pattern import grammar_ready

    rewritten = re.compile(grammar_ready(pattern))
    original = re.compile(pattern)
    accepted, refused = ESCAPED_PATTERNS[pattern]
    for text in accepted:
        assert original.fullmatch(text) and rewritten.fullmatch(text), text
    for text in refused:
        assert not original.fullmatch(text) and not rewritten.fullmatch(text), text


# -- llama.cpp compiles what this module writes ----------------------------------------------------
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "units": {"enum": ["C", "F"]},
        "tags": {"type": "array", "items": {"type": "string", "format": "date"}, "maxItems": 3},
        "ratio": {"type": "number", "minimum": 0},
        "when": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/slot"}]},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
    "$defs": {"slot": {"type": "object", "properties": {"hour": {"type": "integer"}}}},
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}},
    {"type": "function", "function": {"name": "noop"}},
]


FORMATS = ["hermes", "llama3", "mistral", "mistral_args", "functiongemma", "pythonic"]
CHOICES = ["required", {"type": "function", "function": {"name": "get_weather"}}]


def _tool_grammar(fmt: str, parallel: bool, choice: object) -> str:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": TOOLS,
        "tool_choice": choice,
        "parallel_tool_calls": parallel,
    }
    grammar = request_grammar(parse_chat(body), fmt)
    assert grammar is not None
    return grammar


def test_llama_cpp_compiles_every_grammar(tiny_chat_gguf: Path) -> None:
    grammars = [
        json_grammar({"type": "json_object"}),
        json_grammar({"type": "json_schema", "schema": SCHEMA}),
        *(
            _tool_grammar(fmt, parallel, choice)
            for fmt in FORMATS
            for parallel in (True, False)
            for choice in CHOICES
        ),
        _auto_grammar(),
        *(
            json_grammar({"type": "json_schema", "schema": {"type": "string", "pattern": pattern}})
            for pattern in ESCAPED_PATTERNS
        ),
        "root ::= nothing-defined",  # the helper does tell a refusal
    ]
    assert compiled(tiny_chat_gguf, grammars) == [True] * (len(grammars) - 1) + [False]


def _auto_grammar() -> str:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": TOOLS,
        "response_format": {"type": "json_object"},
    }
    grammar = request_grammar(parse_chat(body), "hermes")
    assert grammar is not None
    return grammar


def test_hermes_calls_are_blocks() -> None:
    assert '"<tool_call>\\n"' in _tool_grammar("hermes", True, "required")


def test_auto_tools_with_a_format_allow_either() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": TOOLS,
        "response_format": {"type": "json_object"},
    }
    grammar = request_grammar(parse_chat(body), "hermes")
    assert grammar is not None
    assert "tool-block" in grammar and "json" in grammar
    assert request_grammar(parse_chat({**body, "response_format": None}), "hermes") is None


def test_the_grammar_keeps_json_strings_valid() -> None:
    grammar = json_grammar({"type": "json_object"})
    char = next(line for line in grammar.splitlines() if line.startswith("char ::="))
    assert r"\x00-\x1F" in char and '"\\\\"' in char  # no raw control characters or backslashes


def test_bad_tool_schemas_name_the_tool() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {
                    "type": "object",
                    "properties": {"n": {"type": "integer", "multipleOf": 2}},
                },
            },
        }
    ]
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": tools,
        "tool_choice": "required",
    }
    with pytest.raises(BadRequest) as info:
        request_grammar(parse_chat(body), "hermes")
    assert info.value.param == "tools[0].function.parameters.properties.n.multipleOf"


def test_sizes_stay_bounded() -> None:
    schema = {
        "type": "array",
        "items": {"type": "string", "maxLength": MAX_REPEAT},
        "maxItems": MAX_REPEAT,
    }
    grammar = json_grammar({"type": "json_schema", "schema": schema})
    assert len(grammar) < 512 * 1024

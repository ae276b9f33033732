"""Request validation: every bad input is a BadRequest naming the field."""

from __future__ import annotations

import pytest

from worker.backends.pendra.params import parse_chat, parse_embeddings
from worker.errors import BadRequest

OK = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_defaults_and_normalisation() -> None:
    params = parse_chat(
        {
            **OK,
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
            ],
            "stop": "END",
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": 7,
        }
    )
    assert params.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "ab"},
    ]
    assert (params.stop, params.stream, params.include_usage, params.max_tokens) == (
        ["END"],
        True,
        True,
        7,
    )
    assert params.temperature == 1.0 and params.top_p == 1.0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": None}, "'model'"),
        ({"messages": []}, "'messages' must not be empty"),
        ({"messages": "hi"}, "'messages'"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "'messages[0].role'"),
        ({"messages": [{"role": "user"}]}, "'messages[0].content'"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "content[0]"),
        ({"max_tokens": 0}, "'max_tokens'"),
        ({"max_tokens": -5}, "'max_tokens'"),
        ({"max_tokens": 1.5}, "'max_tokens'"),
        ({"max_tokens": True}, "'max_tokens'"),
        ({"temperature": 2.5}, "'temperature'"),
        ({"temperature": -0.1}, "'temperature'"),
        ({"temperature": "hot"}, "'temperature'"),
        ({"temperature": float("nan")}, "'temperature'"),
        ({"top_p": 1.5}, "'top_p'"),
        ({"seed": "x"}, "'seed'"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "'stop'"),
        ({"stop": 5}, "'stop'"),
        ({"n": 0}, "'n'"),
        ({"n": 129}, "'n'"),
        ({"stream": "yes"}, "'stream'"),
    ],
)
def test_bad_chat_fields(change: dict, field: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_chat({**OK, **change})
    assert field in str(info.value)
    assert info.value.http_status == 400


def test_body_must_be_object() -> None:
    with pytest.raises(BadRequest, match="JSON object"):
        parse_chat(["not", "a", "dict"])


def test_embedding_inputs() -> None:
    assert parse_embeddings({"model": "e", "input": "x"}).inputs == ["x"]
    assert parse_embeddings({"model": "e", "input": [1, 2, 3]}).inputs == [[1, 2, 3]]
    assert parse_embeddings({"model": "e", "input": ["a", [4, 5]]}).inputs == ["a", [4, 5]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "e"}, "'input'"),
        ({"model": "e", "input": []}, "'input' must not be empty"),
        ({"model": "e", "input": [""]}, "'input[0]'"),
        ({"model": "e", "input": ["ok", 3.5]}, "'input[1]'"),
        ({"model": "e", "input": "x", "encoding_format": "hex"}, "'encoding_format'"),
        ({"model": "e", "input": "x", "dimensions": 0}, "'dimensions'"),
        ({"model": "e", "input": ["x"] * 3000}, "at most"),
    ],
)
def test_bad_embedding_fields(body: dict, field: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_embeddings(body)
    assert field in str(info.value)

"""Request validation: every bad input is a BadRequest naming the field."""

from __future__ import annotations

import pytest

from worker.backends.pendra.params import parse_chat, parse_completion, parse_embeddings
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
        ({"max_tokens": 3, "max_completion_tokens": 2**63}, "disagree"),
        ({"max_completion_tokens": -1, "max_tokens": 3}, "'max_completion_tokens'"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "'messages[0].tool_call_id'"),
        ({"messages": [{"role": "tool", "content": "42", "tool_call_id": 7}]}, "tool_call_id"),
    ],
)
def test_bad_chat_fields(change: dict, field: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_chat({**OK, **change})
    assert field in str(info.value)
    assert info.value.http_status == 400


def test_either_name_of_the_token_limit_works() -> None:
    assert parse_chat({**OK, "max_tokens": 5}).max_tokens == 5
    assert parse_chat({**OK, "max_completion_tokens": 5}).max_tokens == 5
    assert parse_chat({**OK, "max_tokens": 5, "max_completion_tokens": 5}).max_tokens == 5
    # a null one is absent: the other still counts
    assert parse_chat({**OK, "max_completion_tokens": None, "max_tokens": 5}).max_tokens == 5
    assert parse_chat({**OK, "max_tokens": None}).max_tokens is None


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
        ({"model": "e", "input": [[1, 2, -1]]}, "'input[0][2]' is -1, not a token id"),
        ({"model": "e", "input": [["a"]]}, "'input[0][0]' is 'a'"),
        ({"model": "e", "input": "x", "encoding_format": "hex"}, "'encoding_format'"),
        ({"model": "e", "input": "x", "dimensions": 0}, "'dimensions'"),
        ({"model": "e", "input": ["x"] * 3000}, "at most"),
    ],
)
def test_bad_embedding_fields(body: dict, field: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_embeddings(body)
    assert field in str(info.value)


# -- every field honoured or refused ---------------------------------------------------------------
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_sampling_fields_are_parsed() -> None:
    params = parse_chat(
        {
            **OK,
            "top_k": 40,
            "min_p": 0.05,
            "repetition_penalty": 1.1,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "logit_bias": {"17": -100, "3": 2.5},
            "seed": -(2**63),
            "n": 3,
            "logprobs": True,
            "top_logprobs": 20,
            "user": "u-1",
            "metadata": {"team": "a"},
            "store": False,
            "service_tier": "auto",
            "modalities": ["text"],
            "prompt_cache_key": "conversation-7",
        }
    )
    assert (params.top_k, params.min_p, params.repeat_penalty) == (40, 0.05, 1.1)
    assert (params.presence_penalty, params.frequency_penalty) == (0.5, -0.5)
    assert params.logit_bias == [[17, -100.0], [3, 2.5]]
    assert (params.seed, params.n, params.logprobs, params.top_logprobs) == (-(2**63), 3, True, 20)


def test_tools_and_tool_choice_are_normalised() -> None:
    params = parse_chat({**OK, "tools": [WEATHER]})
    assert params.tool_choice == "auto" and params.calls_tools
    assert params.tools[0]["function"]["name"] == "get_weather"
    named = parse_chat(
        {
            **OK,
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        }
    )
    assert (named.tool_choice, named.tool_name) == ("function", "get_weather")
    allowed = parse_chat(
        {
            **OK,
            "tools": [WEATHER, {"type": "function", "function": {"name": "other"}}],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "other"}}],
                },
            },
        }
    )
    assert allowed.tool_choice == "required"
    assert [t["function"]["name"] for t in allowed.tools] == ["other"]
    assert parse_chat(OK).tool_choice == "none" and not parse_chat(OK).calls_tools
    assert not parse_chat({**OK, "tools": [WEATHER], "tool_choice": "none"}).calls_tools


def test_tool_messages_are_kept_for_the_template() -> None:
    params = parse_chat(
        {
            **OK,
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
        }
    )
    assistant, tool = params.messages[1], params.messages[2]
    assert assistant["content"] == ""
    assert assistant["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Oslo"}',
    }
    assert tool == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}


def test_response_formats() -> None:
    assert parse_chat({**OK, "response_format": {"type": "text"}}).response_format is None
    assert parse_chat({**OK, "response_format": {"type": "json_object"}}).response_format == {
        "type": "json_object"
    }
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = parse_chat(
        {
            **OK,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "A", "schema": schema, "strict": True},
            },
        }
    ).response_format
    assert fmt == {"type": "json_schema", "name": "A", "schema": schema, "strict": True}


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"temperaturee": 1}, "temperaturee"),
        ({"mirostat": 2}, "mirostat"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"verbosity": "low"}, "verbosity"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"store": True}, "store"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"metadata": {"a": 1}}, "metadata"),
        ({"user": 5}, "user"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"a": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"logit_bias": [1, 2]}, "logit_bias"),
        ({"seed": 2**64}, "seed"),
        ({"top_k": -1}, "top_k"),
        ({"min_p": 2}, "min_p"),
        ({"repeat_penalty": 0}, "repeat_penalty"),
        ({"repeat_penalty": 1.1, "repetition_penalty": 1.2}, "repetition_penalty"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream": True, "stream_options": {"chunk_size": 3}}, "stream_options.chunk_size"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            "tools[0].function.name",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]},
            "tools[0].function.parameters",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a b"}}},
            "response_format.json_schema.name",
        ),
        ({"messages": [{"role": "user", "content": "x", "mood": "happy"}]}, "messages[0].mood"),
        (
            {"messages": [{"role": "assistant", "content": "x", "function_call": {"name": "f"}}]},
            "messages[0].function_call",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"type": "function"}]}]},
            "messages[0].tool_calls",
        ),
    ],
)
def test_each_unserved_field_is_a_400_naming_it(change: dict, param: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_chat({**OK, **change})
    assert info.value.http_status == 400
    assert info.value.param == param
    assert param.split("[")[0].split(".")[0] in info.value.message


def test_completion_requests() -> None:
    request = parse_completion({"model": "m", "prompt": ["a", "b"], "n": 2, "logprobs": 3})
    assert request.prompts == ["a", "b"]
    assert request.params.max_tokens == 16  # OpenAI's default for completions
    assert (request.params.n, request.params.logprobs, request.params.top_logprobs) == (2, True, 3)
    assert parse_completion({"model": "m", "prompt": [1, 2, 3]}).prompts == [[1, 2, 3]]
    assert parse_completion({"model": "m", "prompt": "x", "echo": True}).params.echo


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": None}, "prompt"),
        ({"prompt": [1, "a"]}, "prompt"),
        ({"prompt": "x", "suffix": "y"}, "suffix"),
        ({"prompt": "x", "logprobs": 6}, "logprobs"),
        ({"prompt": "x", "echo": True, "logprobs": 1}, "echo"),
        ({"prompt": [1, 2], "echo": True}, "echo"),
        ({"prompt": "x", "best_of": 3}, "best_of"),
        ({"prompt": "x", "messages": []}, "messages"),
        ({"prompt": "x", "tools": []}, "tools"),
    ],
)
def test_bad_completion_fields(body: dict, param: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_completion({"model": "m", **body})
    assert info.value.param == param


def test_unknown_embedding_field_is_named() -> None:
    with pytest.raises(BadRequest) as info:
        parse_embeddings({"model": "e", "input": "x", "truncate": True})
    assert info.value.param == "truncate"
    assert parse_embeddings({"model": "e", "input": "x", "user": "u"}).inputs == ["x"]

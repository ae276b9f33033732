"""The OpenAI API as clients use it: the official ``openai`` client against ``pendra sandbox``,
with a real ``pendra --no-ui`` worker serving tiny GGUFs (one with a Hermes tools template) and,
marked slow, the real Gemma 3 270M (whose template has no tools: the worker describes them).

One stack per module: starting the processes is the slow part, and every test here only sends
requests. Outputs are compared only when they were computed the same way (see ``warm`` in
conftest.py).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from runner_stack import RunnerStack, start_runner_stack

from tests.model_factory import NO_EARLY_END

pytestmark = [pytest.mark.timeout(300)]

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 10},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "units": {"enum": ["C", "F"]},
        "hourly": {"type": "boolean"},
    },
    "required": ["city", "days", "units", "hourly"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather in a city", "parameters": SCHEMA},
}


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PENDRA_") and not k.endswith("_ENDPOINT") and k != "OPENAI_API_KEY"
    }


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path, tiny_tools_gguf: Path
) -> Iterator[RunnerStack]:
    root = tmp_path_factory.mktemp("openai-client")
    env = {**_env(), "PENDRA_HOME": str(root / "home")}
    models = {"tiny": tiny_chat_gguf, "tools": tiny_tools_gguf}
    running = start_runner_stack(root, env, models, MAX_LOADED_MODELS="3")
    yield running
    running.close()


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _schema_answer(
    stack: RunnerStack, name: str, schema: dict, prompt: str, seed: int, max_tokens: int = 300
) -> Any:
    """The tiny model's answer under ``response_format`` json_schema (strict)."""
    return stack.client.chat.completions.create(
        model="tiny",
        messages=_user(prompt),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": True},
        },
        seed=seed,
        max_tokens=max_tokens,
    )


def test_json_schema_answers_validate(stack: RunnerStack) -> None:
    for seed in range(2):
        answer = _schema_answer(stack, "weather", SCHEMA, "The weather, as JSON.", seed)
        assert answer.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(answer.choices[0].message.content or ""), SCHEMA)


def test_patterns_with_regex_escapes_are_followed(stack: RunnerStack) -> None:
    schema = {
        "type": "object",
        "properties": {
            "phone": {"type": "string", "pattern": "^\\d{3}-\\d{4}$"},
            "ref": {"type": "string", "pattern": "^[A-Z]\\w{2}\\.\\d$"},
        },
        "required": ["phone", "ref"],
        "additionalProperties": False,
    }
    prompt = "A phone number and a reference, as JSON."
    answer = _schema_answer(stack, "contact", schema, prompt, seed=1, max_tokens=200)
    assert answer.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(answer.choices[0].message.content or ""), schema)


def test_tool_call_round_trip(stack: RunnerStack) -> None:
    messages: list = _user("What is the weather in Oslo?")
    first = stack.client.chat.completions.create(
        model="tools",
        messages=messages,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        seed=5,
        max_tokens=300,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), SCHEMA)
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21})},
    ]
    answer = stack.client.chat.completions.create(
        model="tools", messages=messages, tools=[WEATHER], max_tokens=6, temperature=0
    )
    assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")
    usage = answer.usage
    assert usage is not None and usage.prompt_tokens > (
        first.usage.prompt_tokens if first.usage else 0
    )
    assert usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens_details.cached_tokens or 0) > 0  # turn 1 came from the cache


def test_streamed_tool_call_deltas_reassemble(stack: RunnerStack) -> None:
    kwargs = dict(
        model="tools",
        messages=_user("Weather?"),
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        seed=11,
        temperature=0.9,
        max_tokens=300,
    )
    stack.client.chat.completions.create(**kwargs)  # warm: later runs reuse the same prefix
    whole = stack.client.chat.completions.create(**kwargs).choices[0].message
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stack.client.chat.completions.create(**kwargs, stream=True):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"name": "", "arguments": ""})
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    assert finish == "tool_calls"
    assert [calls[i] for i in sorted(calls)] == [
        {"name": c.function.name, "arguments": c.function.arguments} for c in whole.tool_calls or []
    ]


def test_logprobs_are_finite_and_sorted(stack: RunnerStack) -> None:
    answer = stack.client.chat.completions.create(
        model="tiny",
        messages=_user("hello"),
        logprobs=True,
        top_logprobs=4,
        max_tokens=5,
        seed=2,
        logit_bias=NO_EARLY_END,  # no end token: exactly max_tokens tokens
    )
    content = answer.choices[0].logprobs.content if answer.choices[0].logprobs else None
    assert content and len(content) == 5
    for token in content:
        assert math.isfinite(token.logprob) and token.logprob <= 0
        values = [alt.logprob for alt in token.top_logprobs]
        assert len(values) == 4 and values == sorted(values, reverse=True)
        assert all(math.isfinite(v) for v in values)
    chunks = list(
        stack.client.chat.completions.create(
            model="tiny",
            messages=_user("hello"),
            logprobs=True,
            top_logprobs=2,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = [
        token
        for chunk in chunks
        for choice in chunk.choices
        for token in (choice.logprobs.content or [] if choice.logprobs else [])
    ]
    usage = chunks[-1].usage
    assert usage is not None and len(streamed) == usage.completion_tokens  # one per token
    assert all(len(t.top_logprobs) == 2 for t in streamed)


def test_legacy_completions(stack: RunnerStack) -> None:
    answer = stack.client.completions.create(
        model="tiny",
        prompt="Once upon a time",
        max_tokens=4,
        logprobs=2,
        temperature=0,
        logit_bias=NO_EARLY_END,
    )
    assert answer.object == "text_completion" and answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 4
    streamed = list(
        stack.client.completions.create(
            model="tiny",
            prompt="Once upon a time",
            max_tokens=4,
            stream=True,
            temperature=0,
            logit_bias=NO_EARLY_END,
            stream_options={"include_usage": True},
        )
    )
    assert any(c.choices and c.choices[0].finish_reason == "length" for c in streamed)
    assert streamed[-1].usage is not None and streamed[-1].usage.completion_tokens == 4


def test_n_choices_and_sampling_fields(stack: RunnerStack) -> None:
    answer = stack.client.chat.completions.create(
        model="tiny",
        messages=_user("x"),
        n=2,
        max_tokens=3,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        logit_bias={"300": -100},
        stop=["zz"],
        extra_body={"top_k": 20, "min_p": 0.05, "repeat_penalty": 1.1},
    )
    assert [c.index for c in answer.choices] == [0, 1]


def test_stop_strings_and_seeds(stack: RunnerStack) -> None:
    """``stop`` ends the answer before the string; a ``seed`` gives the same sampled answer.
    Answers are compared only when computed the same way: after a warm-up request, every one
    takes its prompt from the cache (see ``warm`` in conftest.py)."""
    greedy = dict(model="tiny", messages=_user("tell me a story"), temperature=0,
                  logit_bias=NO_EARLY_END)  # fmt: skip
    stack.client.chat.completions.create(**greedy, max_tokens=1)
    full = stack.client.chat.completions.create(**greedy, max_tokens=40).choices[0].message
    text = full.content or ""
    assert len(text) > 6
    stop = text[4:6]
    cut = text[: text.find(stop)]
    ended = stack.client.chat.completions.create(**greedy, max_tokens=40, stop=[stop])
    assert ended.choices[0].message.content == cut
    assert ended.choices[0].finish_reason == "stop"
    streamed = stack.client.chat.completions.create(**greedy, max_tokens=40, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == cut

    sampled = dict(model="tiny", messages=_user("say something"), temperature=1.0, seed=1234)
    stack.client.chat.completions.create(**sampled, max_tokens=1)
    answers = {
        stack.client.chat.completions.create(**sampled, max_tokens=16).choices[0].message.content
        for _ in range(2)
    }
    assert len(answers) == 1


def test_parallel_tool_calls(stack: RunnerStack) -> None:
    """``required`` with parallel calls allowed: every call is valid for its function; with
    ``parallel_tool_calls: false`` exactly one call comes back."""
    answered = 0
    for seed in range(3):
        answer = stack.client.chat.completions.create(
            model="tools", messages=_user("Weather in Oslo and Rome?"), tools=[WEATHER],
            tool_choice="required", seed=seed, temperature=1.0, max_tokens=600,
        )  # fmt: skip
        choice = answer.choices[0]
        if choice.finish_reason == "length":
            continue  # the grammar lets a random model add calls until the budget runs out
        answered += 1
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
        ids = [call.id for call in choice.message.tool_calls]
        assert len(set(ids)) == len(ids)
        for call in choice.message.tool_calls:
            assert call.function.name == "get_weather"
            jsonschema.validate(json.loads(call.function.arguments), SCHEMA)
    assert answered, "every seed ran out of tokens"
    single = stack.client.chat.completions.create(
        model="tools", messages=_user("Weather?"), tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, seed=1, max_tokens=300,
    )  # fmt: skip
    assert single.choices[0].finish_reason == "tool_calls"
    assert len(single.choices[0].message.tool_calls or []) == 1


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"n": 99}, "n"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"999999": 5}}, "logit_bias"),
        ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
        ({"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}, "audio"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"store": True}, "store"),
        ({"extra_body": {"mirostat": 2}}, "mirostat"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "integer", "multipleOf": 3}},
                }
            },
            "response_format.json_schema.schema.multipleOf",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
    ],
)
def test_each_unsupported_field_is_a_400_naming_it(
    stack: RunnerStack, kwargs: dict, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        stack.client.chat.completions.create(
            model="tiny", messages=_user("x"), max_tokens=2, **kwargs
        )
    error = info.value
    assert error.status_code == 400
    assert error.param == param
    assert param.split(".")[0] in error.message
    stack.assert_worker_alive()


def test_unsupported_completion_field(stack: RunnerStack) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        stack.client.completions.create(model="tiny", prompt="x", suffix="y", max_tokens=2)
    assert info.value.param == "suffix"


# -- the real Gemma 3 270M: its template has no tools; the worker describes them ----------------
@pytest.fixture(scope="module")
def gemma_stack(
    tmp_path_factory: pytest.TempPathFactory, gemma_gguf: Path
) -> Iterator[RunnerStack]:
    root = tmp_path_factory.mktemp("openai-client-gemma")
    env = {**_env(), "PENDRA_HOME": str(root / "home")}
    running = start_runner_stack(root, env, {"gemma": gemma_gguf})
    yield running
    running.close()


@pytest.mark.slow
def test_gemma_structured_output_and_tools(gemma_stack: RunnerStack) -> None:
    client = gemma_stack.client
    person = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0, "maximum": 130},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    answer = client.chat.completions.create(
        model="gemma",
        messages=_user("Invent a person. Answer in JSON."),
        max_tokens=120,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": person},
        },
        temperature=0,
    )
    assert answer.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(answer.choices[0].message.content or ""), person)

    call = client.chat.completions.create(
        model="gemma",
        messages=_user("What's the weather in Paris for 3 days, in C?"),
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=200,
        temperature=0,
    )
    calls = call.choices[0].message.tool_calls or []
    assert call.choices[0].finish_reason == "tool_calls" and len(calls) >= 1
    jsonschema.validate(json.loads(calls[0].function.arguments), SCHEMA)


@pytest.mark.slow
def test_gemma_second_turn_comes_from_the_cache(gemma_stack: RunnerStack) -> None:
    client = gemma_stack.client
    turn1 = _user("List five animals that live in the sea, one per line.")
    first = client.chat.completions.create(
        model="gemma", messages=turn1, max_tokens=24, temperature=0
    )
    turn2 = [
        *turn1,
        {"role": "assistant", "content": first.choices[0].message.content or ""},
        {"role": "user", "content": "Which of them is the largest?"},
    ]
    second = client.chat.completions.create(
        model="gemma", messages=turn2, max_tokens=8, temperature=0
    )
    assert first.usage is not None and second.usage is not None
    details = second.usage.prompt_tokens_details
    assert details is not None and (details.cached_tokens or 0) >= first.usage.prompt_tokens - 1

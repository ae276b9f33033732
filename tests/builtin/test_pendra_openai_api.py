"""The OpenAI API surface of the built-in backend on real (tiny) GGUFs, both engines.

Structured output and tool calls come from a *random-weight* model, so every valid answer below is
the grammar's doing, not the model's. Outputs are compared only when they were computed the same
way (see ``warm`` in conftest.py); assertions never depend on near-ties.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import jsonschema
import pytest
from conftest import MakeBackend, loaded, user, warm
from model_factory import _vocab
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.model_factory import NO_EARLY_END
from worker.backends.pendra import PendraBackend
from worker.errors import BadRequest

ENGINES = [pytest.param(False, id="serial"), pytest.param(True, id="batched")]

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 10},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "units": {"enum": ["C", "F"]},
        "hourly": {"type": "boolean"},
        "tags": {"type": "array", "items": {"enum": ["rain", "sun"]}, "maxItems": 3},
    },
    "required": ["city", "days", "units", "hourly", "tags"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather", "parameters": SCHEMA},
}
NOOP = {"type": "function", "function": {"name": "noop"}}


@pytest.fixture(params=ENGINES)
def batched(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.fixture
async def backend(
    make_backend: MakeBackend, batched: bool, models_dir: Path, tiny_tools_gguf: Path
) -> PendraBackend:
    shutil.copy(tiny_tools_gguf, models_dir / "tools.gguf")
    return await make_backend(batched=batched)


async def _stream(backend: PendraBackend, body: dict) -> list[dict]:
    return [json.loads(c.json) async for c in backend.chat_stream({**body, "stream": True})]


# -- structured output -----------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [0.0, 1.0])
async def test_json_schema_answers_validate(backend: PendraBackend, temperature: float) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True},
    }
    for seed in range(3):
        result = await backend.chat(
            {
                "model": "tiny",
                "messages": user("weather?"),
                "response_format": fmt,
                "temperature": temperature,
                "seed": seed,
                "max_tokens": 300,
            }
        )
        choice = result["choices"][0]
        assert choice["finish_reason"] == "stop"
        jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)


async def test_json_object_answers_parse(backend: PendraBackend) -> None:
    result = await backend.chat(
        {
            "model": "tiny",
            "messages": user("json please"),
            "seed": 4,
            "max_tokens": 400,
            "temperature": 0.2,
            "response_format": {"type": "json_object"},
        }
    )
    choice = result["choices"][0]
    if choice["finish_reason"] == "stop":  # a random model may write one long key: "length"
        assert isinstance(json.loads(choice["message"]["content"]), dict)
    else:
        assert choice["message"]["content"].lstrip().startswith("{")


# -- tools -----------------------------------------------------------------------------------------
async def test_required_tool_calls_follow_the_schema(backend: PendraBackend) -> None:
    body = {
        "model": "tools",
        "messages": user("weather in Oslo?"),
        "tools": [WEATHER, NOOP],
        "tool_choice": "required",
        "seed": 3,
        "max_tokens": 400,
    }
    result = ChatCompletion.model_validate(await backend.chat(body))
    choice = result.choices[0]
    # Parallel calls are allowed: a random model may go on calling until max_tokens, but the
    # first call (bounded arguments) always completes well within it.
    assert choice.finish_reason in ("tool_calls", "length")
    assert choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.id.startswith("call_") and call.type == "function"
        arguments = json.loads(call.function.arguments)
        if call.function.name == "get_weather":
            jsonschema.validate(arguments, SCHEMA)
        else:
            assert call.function.name == "noop"


async def test_a_named_tool_is_the_one_called(backend: PendraBackend) -> None:
    body = {
        "model": "tools",
        "messages": user("hi"),
        "tools": [WEATHER, NOOP],
        "seed": 1,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "max_tokens": 300,
    }
    result = await backend.chat(body)
    calls = result["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), SCHEMA)
    assert result["choices"][0]["message"]["content"] is None
    assert result["choices"][0]["finish_reason"] == "tool_calls"


async def test_a_forced_call_that_ends_on_the_last_token_allowed_is_a_tool_call(
    backend: PendraBackend,
) -> None:
    """max_tokens may run out on the token that closes a forced call, before the end token the
    grammar then requires: the call is whole, so the finish reason is still "tool_calls"."""
    body = {
        "model": "tools",
        "messages": user("hi"),
        "tools": [WEATHER, NOOP],
        "seed": 4,
        "temperature": 0,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 300,
    }
    await warm(backend, body)  # all three answers below are then computed the same way
    free = await backend.chat(body)
    used = free["usage"]["completion_tokens"]
    exact = await backend.chat({**body, "max_tokens": used})
    assert exact["usage"]["completion_tokens"] == used
    assert exact["choices"][0]["message"]["tool_calls"] == [
        {**call, "id": exact["choices"][0]["message"]["tool_calls"][0]["id"]}
        for call in free["choices"][0]["message"]["tool_calls"]
    ]
    assert exact["choices"][0]["finish_reason"] == "tool_calls"
    # one token fewer cuts the call: that answer is "length", with no call in it
    cut = (await backend.chat({**body, "max_tokens": used - 1}))["choices"][0]
    assert cut["finish_reason"] == "length" and not cut["message"].get("tool_calls")


async def test_streamed_tool_call_deltas_reassemble_to_the_whole_answer(
    backend: PendraBackend,
) -> None:
    body = {
        "model": "tools",
        "messages": user("weather?"),
        "tools": [WEATHER, NOOP],
        "tool_choice": "required",
        "seed": 9,
        "temperature": 0.8,
        "max_tokens": 400,
    }
    await warm(backend, {**body, "max_tokens": 400})
    whole = (await backend.chat(body))["choices"][0]
    chunks = await _stream(backend, body)
    parsed = [ChatCompletionChunk.model_validate(c) for c in chunks]
    calls: dict[int, dict] = {}
    content = ""
    for chunk in parsed:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                if delta.id:
                    assert call["id"] is None  # the id comes once, first
                    call["id"] = delta.id
                call["name"] += (delta.function.name or "") if delta.function else ""
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
    expected = [
        {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for c in whole["message"]["tool_calls"]
    ]
    assert [{"name": c["name"], "arguments": c["arguments"]} for _, c in sorted(calls.items())] == (
        expected
    )
    assert all(c["id"] for c in calls.values())
    assert (content or None) == whole["message"]["content"]
    assert parsed[-1].choices[0].finish_reason == whole["finish_reason"]


async def test_tool_call_round_trip(backend: PendraBackend) -> None:
    messages = user("What is the weather in Oslo?")
    first = await backend.chat(
        {
            "model": "tools",
            "messages": messages,
            "tools": [WEATHER],
            "tool_choice": "required",
            "parallel_tool_calls": False,
            "seed": 2,
            "max_tokens": 300,
        }
    )
    message = first["choices"][0]["message"]
    call = message["tool_calls"][0]
    follow_up = [
        *messages,
        message,
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temperature": 21}'},
    ]
    answer = await backend.chat(
        {
            "model": "tools",
            "messages": follow_up,
            "tools": [WEATHER],
            "tool_choice": "none",
            "max_tokens": 8,
            "temperature": 0,
        }
    )
    choice = answer["choices"][0]
    assert choice["finish_reason"] in ("stop", "length")
    assert "tool_calls" not in choice["message"] and isinstance(choice["message"]["content"], str)
    # The conversation grew by the call and its result; the first turn came from the cache.
    assert answer["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


# -- log probabilities -----------------------------------------------------------------------------
def _check_logprobs(entries: list[dict], top: int) -> None:
    for entry in entries:
        assert math.isfinite(entry["logprob"]) and entry["logprob"] <= 0
        assert bytes(entry["bytes"]).decode("utf-8", "backslashreplace") == entry["token"]
        values = [alt["logprob"] for alt in entry["top_logprobs"]]
        assert len(values) == top
        assert all(math.isfinite(v) and v <= 0 for v in values)
        assert values == sorted(values, reverse=True)
        assert entry["logprob"] <= values[0] + 1e-6 if values else True


async def test_logprobs(backend: PendraBackend) -> None:
    body = {
        "model": "tiny",
        "messages": user("hello"),
        "logprobs": True,
        "top_logprobs": 5,
        "max_tokens": 6,
        "temperature": 0,
        "logit_bias": NO_EARLY_END,
    }
    result = await backend.chat(body)
    entries = result["choices"][0]["logprobs"]["content"]
    assert len(entries) == result["usage"]["completion_tokens"] == 6
    _check_logprobs(entries, 5)
    for entry in entries:  # greedy: the chosen token is the most likely one (never an end token)
        assert entry["logprob"] == pytest.approx(entry["top_logprobs"][0]["logprob"])
    chunks = await _stream(backend, body)
    streamed = [
        e
        for c in chunks
        for ch in c["choices"]
        for e in ((ch["logprobs"] or {}).get("content") or [])
    ]
    assert len(streamed) == 6  # (no end token can come first)
    _check_logprobs(streamed, 5)
    none = await backend.chat({**body, "logprobs": False, "top_logprobs": None})
    assert none["choices"][0]["logprobs"] is None


async def test_logprobs_without_top(backend: PendraBackend) -> None:
    result = await backend.chat(
        {"model": "tiny", "messages": user("x"), "logprobs": True, "max_tokens": 3, "seed": 1}
    )
    _check_logprobs(result["choices"][0]["logprobs"]["content"], 0)


# -- sampling fields -------------------------------------------------------------------------------
@pytest.fixture
async def iso(make_backend: MakeBackend, models_dir: Path, isolation_gguf: Path, batched: bool):
    shutil.copy(isolation_gguf, models_dir / "iso.gguf")
    return await make_backend(batched=batched)


ISO = {"model": "iso", "messages": user("c" * 40), "max_tokens": 20, "temperature": 0}


async def test_logit_bias_bans_tokens(iso: PendraBackend) -> None:
    assert (await iso.chat(ISO))["choices"][0]["message"]["content"] == "c" * 20
    tokens, _, _ = _vocab()
    ban = {str(i): -100 for i, t in enumerate(tokens) if "c" in t or t == "<0x63>"}
    text = (await iso.chat({**ISO, "logit_bias": ban}))["choices"][0]["message"]["content"]
    assert "c" not in text and len(text) > 0
    with pytest.raises(BadRequest) as info:
        await iso.chat({**ISO, "logit_bias": {str(len(tokens) + 5): 1}})
    assert info.value.param == "logit_bias"


@pytest.mark.parametrize("penalty", [{"frequency_penalty": 2.0}, {"repeat_penalty": 3.0}])
async def test_penalties_break_repetition(iso: PendraBackend, penalty: dict) -> None:
    # The isolation model answers 'c' by a wide margin (logprob ≈ 0, the next token ≈ -17):
    # each penalty erodes that margin until another token wins.
    text = (await iso.chat({**ISO, **penalty}))["choices"][0]["message"]["content"]
    assert text != "c" * 20


async def test_top_k_min_p_and_presence_are_served(iso: PendraBackend) -> None:
    body = {**ISO, "temperature": 1.0, "top_k": 1, "min_p": 0.5, "presence_penalty": 1.0}
    text = (await iso.chat(body))["choices"][0]["message"]["content"]
    assert text.startswith("c")  # top_k 1 and min_p 0.5 leave only the best token at first


async def test_a_seed_reproduces_the_answer(backend: PendraBackend) -> None:
    body = {
        "model": "tiny",
        "messages": user("tell me something"),
        "temperature": 1.0,
        "seed": 1234,
        "max_tokens": 16,
    }
    await warm(backend, body)
    first = (await backend.chat(body))["choices"][0]["message"]["content"]
    second = (await backend.chat(body))["choices"][0]["message"]["content"]
    assert first == second


async def test_n_choices(backend: PendraBackend, batched: bool) -> None:
    body = {
        "model": "tiny",
        "messages": user("x"),
        "n": 2,
        "max_tokens": 4,
        "seed": 3,
        "logit_bias": NO_EARLY_END,
    }
    if not batched:  # one sequence at a time: 'n' > 1 is refused, and says why
        with pytest.raises(BadRequest) as info:
            await backend.chat(body)
        assert info.value.param == "n"
        return
    result = ChatCompletion.model_validate(await backend.chat(body))
    assert [c.index for c in result.choices] == [0, 1]
    assert result.usage is not None and result.usage.completion_tokens == 8
    chunks = await _stream(backend, {**body, "stream_options": {"include_usage": True}})
    finished = [ch["index"] for c in chunks for ch in c["choices"] if ch["finish_reason"]]
    assert sorted(finished) == [0, 1]
    assert chunks[-1]["usage"]["completion_tokens"] == 8
    with pytest.raises(BadRequest, match="at most 4"):
        await backend.chat({**body, "n": 5})


# -- prompt caching --------------------------------------------------------------------------------
async def test_the_second_turn_reports_cached_tokens(backend: PendraBackend) -> None:
    turn1 = user("one two three four five six seven eight")
    first = await backend.chat({"model": "tiny", "messages": turn1, "max_tokens": 5})
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    answer = first["choices"][0]["message"]
    turn2 = [*turn1, answer, {"role": "user", "content": "and nine?"}]
    second = await backend.chat({"model": "tiny", "messages": turn2, "max_tokens": 5})
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= first["usage"]["prompt_tokens"] - 1
    assert cached < second["usage"]["prompt_tokens"]


async def test_prompt_caching_can_be_turned_off(make_backend: MakeBackend) -> None:
    backend = await make_backend(batched=True, PREFIX_CACHE=0)
    turn1 = user("one two three four five six seven eight")
    first = await backend.chat({"model": "tiny", "messages": turn1, "max_tokens": 5})
    turn2 = [*turn1, first["choices"][0]["message"], {"role": "user", "content": "nine?"}]
    second = await backend.chat({"model": "tiny", "messages": turn2, "max_tokens": 5})
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert loaded(backend, "tiny")["kv_tokens_cached"] == 0


async def test_warm_caches_give_way_to_new_requests(make_backend: MakeBackend) -> None:
    """A pool of two requests' worth: six different long prompts, two at a time, all served."""
    import asyncio

    backend = await make_backend(batched=True, PARALLEL=2, MAX_CONTEXT=300, MEMORY_LIMIT="2GiB")
    bodies = [
        {"model": "tiny", "messages": user(f"{i}" + " the" * 60), "max_tokens": 20}
        for i in range(6)
    ]
    for pair in (bodies[0:2], bodies[2:4], bodies[4:6]):
        results = await asyncio.gather(*(backend.chat(b) for b in pair))
        assert all(r["choices"][0]["finish_reason"] for r in results)
    entry = loaded(backend, "tiny")
    assert 0 < entry["kv_tokens_cached"] <= entry["kv_tokens"]


# -- legacy completions ----------------------------------------------------------------------------
async def test_text_completions(backend: PendraBackend, batched: bool) -> None:
    result = Completion.model_validate(
        await backend.completions(
            {
                "model": "tiny",
                "prompt": "Once upon a time",
                "max_tokens": 5,
                "temperature": 0,
                "logprobs": 2,
                "logit_bias": NO_EARLY_END,
            }
        )
    )
    assert result.object == "text_completion" and result.choices[0].finish_reason == "length"
    assert result.usage is not None and result.usage.completion_tokens == 5
    logprobs = result.choices[0].logprobs
    assert logprobs is not None and len(logprobs.tokens or []) == 5
    assert all(len(top) == 2 for top in logprobs.top_logprobs or [])
    echoed = await backend.completions(
        {"model": "tiny", "prompt": "Once", "max_tokens": 3, "echo": True}
    )
    assert echoed["choices"][0]["text"].startswith("Once")
    tokens = await backend.completions({"model": "tiny", "prompt": [1, 300, 301], "max_tokens": 2})
    assert tokens["usage"]["prompt_tokens"] == 3
    if batched:
        several = await backend.completions(
            {"model": "tiny", "prompt": ["a", "b"], "max_tokens": 2}
        )
        assert [c["index"] for c in several["choices"]] == [0, 1]


async def test_streamed_text_completions(backend: PendraBackend) -> None:
    body = {
        "model": "tiny",
        "prompt": "Once upon",
        "max_tokens": 6,
        "temperature": 0,
        "logit_bias": NO_EARLY_END,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    await backend.completions({**body, "stream": False, "stream_options": None})
    whole = await backend.completions({**body, "stream": False, "stream_options": None})
    chunks = [json.loads(c.json) async for c in backend.completions_stream(body)]
    text = "".join(ch["text"] for c in chunks for ch in c["choices"])
    assert text == whole["choices"][0]["text"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6

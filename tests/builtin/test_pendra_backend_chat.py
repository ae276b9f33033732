"""Chat completions on the built-in backend with a real (tiny, random-weight) GGUF."""

from __future__ import annotations

import json

import pytest
from conftest import MakeBackend, user, warm
from openai.types.chat import ChatCompletion, ChatCompletionChunk

ENGINES = [pytest.param(False, id="serial"), pytest.param(True, id="batched")]


@pytest.fixture(params=ENGINES)
def batched(request: pytest.FixtureRequest) -> bool:
    return request.param


async def _stream(backend, body):
    return [chunk async for chunk in backend.chat_stream({**body, "stream": True})]


async def test_listing_loads_nothing(make_backend: MakeBackend, batched: bool) -> None:
    backend = await make_backend(batched=batched)
    assert sorted(m.id for m in backend.models) == ["emb", "tiny"]
    assert backend.describe()["status"] == "ready"
    assert backend.loaded_models() == []


async def test_non_streaming(make_backend: MakeBackend, batched: bool) -> None:
    backend = await make_backend(batched=batched)
    body = {"model": "tiny", "messages": user("one two three"), "max_tokens": 12, "temperature": 0}
    await warm(backend, body)
    result = await backend.chat(body)
    parsed = ChatCompletion.model_validate(result)
    assert parsed.choices[0].finish_reason == "length"
    assert parsed.usage is not None and parsed.usage.completion_tokens == 12
    assert parsed.usage.prompt_tokens > 5
    assert parsed.choices[0].message.role == "assistant"
    assert backend.loaded_models() == ["tiny"]
    again = await backend.chat(body)
    assert again["id"] != result["id"]
    assert again["choices"] == result["choices"]


async def test_greedy_is_deterministic_and_stream_equals_non_stream(
    make_backend: MakeBackend, batched: bool
) -> None:
    backend = await make_backend(batched=batched)
    body = {
        "model": "tiny",
        "messages": user("tell me a story"),
        "max_tokens": 40,
        "temperature": 0,
    }
    await warm(backend, body)
    first = await backend.chat(body)
    second = await backend.chat(body)
    assert first["choices"][0]["message"] == second["choices"][0]["message"]
    chunks = await _stream(backend, body)
    parsed = [ChatCompletionChunk.model_validate(json.loads(c.json)) for c in chunks]
    assert parsed[0].choices[0].delta.role == "assistant"
    text = "".join(p.choices[0].delta.content or "" for p in parsed if p.choices)
    assert text == first["choices"][0]["message"]["content"]
    assert parsed[-1].choices[0].finish_reason == first["choices"][0]["finish_reason"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == first["usage"]["completion_tokens"]
    assert len({p.id for p in parsed}) == 1


async def test_stream_include_usage(make_backend: MakeBackend, batched: bool) -> None:
    backend = await make_backend(batched=batched)
    body = {
        "model": "tiny",
        "messages": user("one two three"),
        "max_tokens": 5,
        "temperature": 0,
        "stream_options": {"include_usage": True},
    }
    chunks = await _stream(backend, body)
    last = json.loads(chunks[-1].json)
    assert last["choices"] == []
    assert last["usage"] == {
        "prompt_tokens": last["usage"]["prompt_tokens"],
        "completion_tokens": 5,
        "total_tokens": last["usage"]["prompt_tokens"] + 5,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert json.loads(chunks[-2].json)["choices"][0]["finish_reason"] == "length"


async def test_stop_string(make_backend: MakeBackend, batched: bool) -> None:
    backend = await make_backend(batched=batched)
    body = {
        "model": "tiny",
        "messages": user("tell me a story"),
        "max_tokens": 40,
        "temperature": 0,
    }
    await warm(backend, body)
    full = (await backend.chat(body))["choices"][0]["message"]["content"]
    assert len(full) > 6
    stop = full[4:6]
    cut = full[: full.find(stop)]
    result = await backend.chat({**body, "stop": [stop]})
    assert result["choices"][0]["message"]["content"] == cut
    assert result["choices"][0]["finish_reason"] == "stop"
    streamed = await _stream(backend, {**body, "stop": stop})
    text = "".join(json.loads(c.json)["choices"][0]["delta"].get("content") or "" for c in streamed)
    assert text == cut


async def test_sampling_with_seed_is_reproducible(make_backend: MakeBackend, batched: bool) -> None:
    backend = await make_backend(batched=batched)
    body = {
        "model": "tiny",
        "messages": user("hello"),
        "max_tokens": 30,
        "temperature": 1.2,
        "top_p": 0.9,
        "seed": 42,
    }
    await warm(backend, body)
    a = await backend.chat(body)
    b = await backend.chat(body)
    c = await backend.chat({**body, "seed": 43})
    assert a["choices"][0]["message"] == b["choices"][0]["message"]
    greedy = await backend.chat({**body, "temperature": 0})
    assert {
        a["choices"][0]["message"]["content"],
        c["choices"][0]["message"]["content"],
        greedy["choices"][0]["message"]["content"],
    } != {a["choices"][0]["message"]["content"]}


async def test_fallback_template_model(
    make_backend: MakeBackend, batched: bool, models_dir, tiny_chat_notemplate_gguf
) -> None:
    import shutil

    shutil.copy(tiny_chat_notemplate_gguf, models_dir / "plain.gguf")
    backend = await make_backend(batched=batched)
    result = await backend.chat(
        {"model": "plain", "messages": user("hi"), "max_tokens": 4, "temperature": 0}
    )
    assert result["usage"]["prompt_tokens"] > 3
    # The tiny vocab has <|im_start|>: the ChatML fallback is chosen from the tokens.
    assert backend._pool.get("plain").info["template"] == "chatml"

"""External kinds pass on the fields their server serves and refuse the rest with a 400 naming
them, before anything is sent; legacy completions are relayed, streamed or not (emulators)."""

from __future__ import annotations

import json

import pytest

from tests.emulators import EMULATORS
from worker.backends.base import BackendStatus
from worker.backends.kinds import KINDS
from worker.backends.openai_fields import FieldPolicy, only_one_choice
from worker.errors import BadRequest

USER = [{"role": "user", "content": "hello there"}]
CHAT_KINDS = ["ollama", "lmstudio", "vllm", "llamacpp", "tgi", "sglang", "localai", "openai"]


async def started(kind: str):
    emu = EMULATORS[kind]()
    await emu.start()
    backend = KINDS[kind](emu.url)
    await backend.refresh()
    assert backend.status is BackendStatus.READY, backend.detail
    return emu, backend


def chat_path(kind: str) -> str:
    return "/api/chat" if kind == "ollama" else "/v1/chat/completions"


def test_policy_unit() -> None:
    policy = FieldPolicy(
        checks={"n": only_one_choice}, renamed={"a": "b"}, extensions=frozenset({"x", "b"})
    )
    assert policy.apply({"model": "m", "n": 1, "a": 1, "x": 2}, "chat", "k") == {
        "model": "m",
        "n": 1,
        "b": 1,
        "x": 2,
    }
    assert policy.apply({"a": 1, "b": 2}, "chat", "k") == {"b": 2}  # the server's own wins
    with pytest.raises(BadRequest) as info:
        policy.apply({"n": 2}, "chat", "k")
    assert info.value.param == "n" and "the k backend" in info.value.message
    with pytest.raises(BadRequest) as info:
        policy.apply({"y": 1}, "chat", "k")
    assert info.value.param == "y"


@pytest.mark.parametrize("kind", CHAT_KINDS)
async def test_unknown_fields_are_refused_before_sending(kind: str) -> None:
    emu, backend = await started(kind)
    try:
        model = backend.models[0].id
        body = {"model": model, "messages": USER, "definitely_not_a_field": 1}
        if kind == "openai":  # a generic OpenAI-compatible server answers for itself
            await backend.chat(body)
            assert emu.bodies(chat_path(kind))[-1]["definitely_not_a_field"] == 1
            return
        with pytest.raises(BadRequest) as info:
            await backend.chat(body)
        assert info.value.param == "definitely_not_a_field"
        with pytest.raises(BadRequest) as info:
            await backend.chat({"model": model, "messages": USER, "audio": {"voice": "x"}})
        assert info.value.param == "audio"
        assert emu.bodies(chat_path(kind)) == []  # nothing was sent
    finally:
        await backend.close()
        await emu.stop()


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("ollama", "n", 2),
        ("ollama", "logit_bias", {"5": 1}),
        ("ollama", "logprobs", True),
        ("ollama", "tool_choice", "required"),
        ("ollama", "parallel_tool_calls", False),
        ("lmstudio", "logprobs", True),
        ("lmstudio", "n", 3),
        ("llamacpp", "n", 2),
        ("tgi", "logit_bias", {"5": 1}),
        ("localai", "n", 2),
    ],
)
async def test_values_a_kind_cannot_serve_are_400s(kind: str, field: str, value: object) -> None:
    emu, backend = await started(kind)
    try:
        with pytest.raises(BadRequest) as info:
            await backend.chat({"model": backend.models[0].id, "messages": USER, field: value})
        assert info.value.param == field and kind in info.value.message
    finally:
        await backend.close()
        await emu.stop()


@pytest.mark.parametrize(
    ("kind", "sent", "received"),
    [
        (
            "vllm",
            {"repeat_penalty": 1.2, "top_k": 5, "n": 2},
            {"repetition_penalty": 1.2, "top_k": 5, "n": 2},
        ),
        (
            "sglang",
            {"repeat_penalty": 1.2, "regex": "a+"},
            {"repetition_penalty": 1.2, "regex": "a+"},
        ),
        (
            "llamacpp",
            {"repetition_penalty": 1.3, "cache_prompt": True, "logprobs": True},
            {"repeat_penalty": 1.3, "cache_prompt": True, "logprobs": True},
        ),
        ("lmstudio", {"repetition_penalty": 1.1, "ttl": 60}, {"repeat_penalty": 1.1, "ttl": 60}),
    ],
)
async def test_fields_pass_through_in_the_servers_spelling(
    kind: str, sent: dict, received: dict
) -> None:
    emu, backend = await started(kind)
    try:
        await backend.chat({"model": backend.models[0].id, "messages": USER, **sent})
        body = emu.bodies("/v1/chat/completions")[-1]
        assert {k: body.get(k) for k in received} == received
        assert not set(sent) - set(received) & set(body)  # the old spelling is not sent
    finally:
        await backend.close()
        await emu.stop()


async def test_ollama_maps_sampling_fields_into_options() -> None:
    emu, backend = await started("ollama")
    try:
        model = backend.models[0].id
        tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
        await backend.chat(
            {
                "model": model,
                "messages": USER,
                "top_k": 7,
                "min_p": 0.1,
                "repetition_penalty": 1.2,
                "reasoning_effort": "high",
                "tools": tools,
                "tool_choice": "none",
            }
        )
        native = emu.bodies("/api/chat")[-1]
        assert native["options"]["top_k"] == 7 and native["options"]["min_p"] == 0.1
        assert native["options"]["repeat_penalty"] == 1.2
        assert native["think"] == "high"
        assert "tools" not in native  # tool_choice none: the model gets no tools
    finally:
        await backend.close()
        await emu.stop()


@pytest.mark.parametrize("kind", ["vllm", "llamacpp", "lmstudio", "ollama", "openai"])
async def test_legacy_completions_relay(kind: str) -> None:
    emu, backend = await started(kind)
    try:
        model = backend.models[0].id
        answer = await backend.completions({"model": model, "prompt": "hello there"})
        assert answer["choices"][0]["text"] == "Echo: hello there"
        chunks = [
            json.loads(c.json)
            async for c in backend.completions_stream({"model": model, "prompt": "hi you"})
        ]
        assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "Echo: hi you"
        assert emu.bodies("/v1/completions")[-1]["stream"] is True
    finally:
        await backend.close()
        await emu.stop()


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("llamacpp", "echo", True),
        ("ollama", "logprobs", 2),
        ("lmstudio", "suffix", "x"),
        ("tgi", "n", 2),
    ],
)
async def test_completion_fields_a_kind_cannot_serve(kind: str, field: str, value: object) -> None:
    emu, backend = await started(kind)
    try:
        with pytest.raises(BadRequest) as info:
            await backend.completions({"model": backend.models[0].id, "prompt": "x", field: value})
        assert info.value.param == field
    finally:
        await backend.close()
        await emu.stop()

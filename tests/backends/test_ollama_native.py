"""Pure translation between OpenAI chat and Ollama's native /api/chat, and pull progress."""

from __future__ import annotations

import json

import pytest

from worker.backends.ollama import PullTracker, context_length_of, is_ollama_tags, task_of
from worker.backends.ollama_native import StreamTranslator, from_native_response, to_native_request
from worker.errors import BadRequest, InstallError

USER = [{"role": "user", "content": "hi"}]


def test_num_ctx_is_the_model_context_unless_the_client_sent_one() -> None:
    injected = to_native_request({"model": "m", "messages": USER}, 262144, stream=True)
    assert injected["options"]["num_ctx"] == 262144
    own = {"model": "m", "messages": USER, "options": {"num_ctx": 4096}}
    assert to_native_request(own, 262144, stream=True)["options"]["num_ctx"] == 4096
    unknown = to_native_request({"model": "m", "messages": USER}, None, stream=False)
    assert "options" not in unknown


def test_openai_fields_map_to_ollama_options_and_format() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"x": 1}'},
                    }
                ],
            },
            {"role": "tool", "content": "42", "name": "f"},
        ],
        "temperature": 0.2,
        "max_tokens": 7,
        "stop": "END",
        "seed": 3,
        "response_format": {"type": "json_object"},
    }
    native = to_native_request(body, 8192, stream=False)
    assert native["messages"][0] == {"role": "user", "content": "what is this", "images": ["QUJD"]}
    assert native["messages"][1]["tool_calls"] == [
        {"function": {"name": "f", "arguments": {"x": 1}}}
    ]
    assert native["messages"][2]["tool_name"] == "f"
    assert native["options"] == {
        "temperature": 0.2,
        "num_predict": 7,
        "stop": ["END"],
        "seed": 3,
        "num_ctx": 8192,
    }
    assert native["format"] == "json"


def test_remote_image_urls_are_a_clear_bad_request() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
                ],
            }
        ],
    }
    with pytest.raises(BadRequest, match="inline"):
        to_native_request(body, None, stream=False)


def test_empty_messages_are_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        to_native_request({"model": "m", "messages": []}, None, stream=False)


def test_non_stream_response_becomes_a_chat_completion() -> None:
    native = {
        "message": {"role": "assistant", "content": "Hello", "thinking": "hmm"},
        "done": True,
        "done_reason": "length",
        "prompt_eval_count": 5,
        "eval_count": 2,
    }
    out = from_native_response(native, "m")
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello",
        "reasoning": "hmm",
    }
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def test_stream_translation_is_the_canonical_openai_sequence() -> None:
    translator = StreamTranslator("m", include_usage=True)
    texts = []
    for line in (
        {"message": {"role": "assistant", "content": "The"}, "done": False},
        {"message": {"role": "assistant", "content": " end"}, "done": False},
        {
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 3,
            "eval_count": 2,
        },
    ):
        texts += translator.feed(line)
    chunks = [json.loads(t) for t in texts]
    assert [c["choices"][0]["delta"] for c in chunks[:3]] == [
        {"role": "assistant", "content": "The"},
        {"content": " end"},
        {},
    ]
    assert chunks[2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[3]["choices"] == [] and chunks[3]["usage"]["total_tokens"] == 5
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1


def test_stream_translation_tool_calls_finish_with_tool_calls() -> None:
    translator = StreamTranslator("m", include_usage=False)
    texts = translator.feed(
        {
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get", "arguments": {"city": "Oslo"}}}],
            },
            "done": False,
        }
    )
    texts += translator.feed({"message": {"content": ""}, "done": True, "done_reason": "stop"})
    first, last = json.loads(texts[0]), json.loads(texts[-1])
    call = first["choices"][0]["delta"]["tool_calls"][0]
    assert call["function"] == {"name": "get", "arguments": '{"city":"Oslo"}'}
    assert last["choices"][0]["finish_reason"] == "tool_calls"
    assert len(texts) == 2  # no usage chunk when not asked for


def test_pull_tracker_sums_layers_and_fails_on_an_error_line() -> None:
    tracker = PullTracker()
    assert tracker.feed({"status": "pulling manifest"}).phase == "starting"
    step = tracker.feed(
        {"status": "pulling aaa", "digest": "sha256:a", "total": 100, "completed": 40}
    )
    assert (step.phase, step.bytes_done, step.bytes_total) == ("downloading", 40, 100)
    step = tracker.feed(
        {"status": "pulling bbb", "digest": "sha256:b", "total": 50, "completed": 50}
    )
    assert (step.bytes_done, step.bytes_total) == (90, 150)
    assert tracker.feed({"status": "verifying sha256 digest"}).phase == "verifying"
    assert tracker.feed({"status": "success"}).phase == "done" and tracker.succeeded
    with pytest.raises(InstallError, match="file does not exist"):
        PullTracker().feed({"error": "pull model manifest: file does not exist"})


def test_ollama_tags_shape_rejects_llama_server_look_alike() -> None:
    real = {"models": [{"name": "a:latest", "size": 10, "digest": "ab" * 32}]}
    fake = {"models": [{"name": "m.gguf", "size": "", "digest": ""}], "object": "list"}
    assert is_ollama_tags(real) and is_ollama_tags({"models": []})
    assert not is_ollama_tags(fake)
    assert not is_ollama_tags({"error": "Unexpected endpoint or method. (GET /api/tags)"})


def test_context_length_and_task_from_show() -> None:
    show = {"model_info": {"general.architecture": "qwen3", "qwen3.context_length": 262144}}
    assert context_length_of(show) == 262144
    assert context_length_of({"model_info": {}}) is None
    assert task_of(["embedding"]).value == "embedding"
    assert task_of(["completion", "vision"]).value == "chat"

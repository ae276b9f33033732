"""Pure pieces of the relay: line splitting, SSE decoding, chunk inspection, error envelopes."""

from __future__ import annotations

import json

import pytest

from worker.backends.base import Usage
from worker.backends.chunks import inspect_chunk
from worker.backends.lines import LineSplitter, LineTooLong
from worker.backends.sse import SSEDecoder, SSEEvent
from worker.backends.upstream_errors import backend_failed, error_in_body, message_from_body


def test_line_splitter_joins_lines_across_chunks_and_strips_crlf() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b'{"a":') == []
    assert splitter.feed(b'1}\r\n{"b"') == [b'{"a":1}']
    assert splitter.feed(b":2}\n\n") == [b'{"b":2}', b""]
    assert splitter.feed(b"tail") == []
    assert splitter.finish() == [b"tail"]


def test_line_splitter_keeps_a_utf8_character_split_between_chunks() -> None:
    text = "héllo ✓\n".encode()
    splitter = LineSplitter()
    out = []
    for i in range(len(text)):
        out += splitter.feed(text[i : i + 1])
    assert [line.decode() for line in out] == ["héllo ✓"]


def test_line_splitter_refuses_an_unbounded_line() -> None:
    splitter = LineSplitter(max_line=10)
    with pytest.raises(LineTooLong, match="exceeded 10 bytes"):
        splitter.feed(b"x" * 11)


def test_sse_decoder_follows_the_openai_client_rules() -> None:
    decoder = SSEDecoder()
    body = (
        b": keep-alive\r\n\r\n"
        b'data: {"n":1}\r\n\r\n'
        b"event: message\ndata: first\ndata: second\n\n"
        b"data:nospace\n\n"
        b"data: [DONE]\n\n"
    )
    events = []
    for i in range(0, len(body), 7):  # arbitrary network chunking
        events += decoder.feed(body[i : i + 7])
    events += decoder.finish()
    assert events == [
        SSEEvent('{"n":1}'),
        SSEEvent("first\nsecond", "message"),
        SSEEvent("nospace"),
        SSEEvent("[DONE]"),
    ]


def test_sse_decoder_flushes_an_event_without_the_final_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"text":"hi"}') == []
    assert decoder.finish() == [SSEEvent('{"text":"hi"}')]


def test_inspect_chunk_skips_plain_content_chunks() -> None:
    text = json.dumps(
        {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
    )
    info = inspect_chunk(text)
    assert info.usage is None and info.finish_reason is None and info.error is None


def test_inspect_chunk_reads_finish_reason_usage_and_errors() -> None:
    finish = '{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}'
    assert inspect_chunk(finish).finish_reason == "length"
    usage = '{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}'
    assert inspect_chunk(usage).usage == Usage(9, 1)
    error = '{"error":{"message":"out of memory","type":"server_error"}}'
    assert inspect_chunk(error).error == "out of memory"


def test_inspect_chunk_is_not_fooled_by_generated_text() -> None:
    sneaky = json.dumps(
        {"choices": [{"delta": {"content": 'say "usage": {"error": 1}'}, "finish_reason": None}]}
    )
    info = inspect_chunk(sneaky)
    assert info.error is None and info.usage is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "bad", "type": "BadRequestError", "code": 400}}, "bad"),
        ({"object": "error", "message": "flat vllm", "type": "BadRequestError"}, "flat vllm"),
        ({"error": "model 'x' not found"}, "model 'x' not found"),
        ({"detail": "Model 'x' not found"}, "Model 'x' not found"),
        ({"detail": [{"loc": ["body", "file"], "msg": "field required"}]}, "file: field required"),
        ({"data": []}, None),
    ],
)
def test_message_from_every_error_envelope(body: dict, message: str | None) -> None:
    assert message_from_body(body) == message


def test_lm_studio_200_error_body_is_an_error() -> None:
    body = {"error": "Unexpected endpoint or method. (GET /api/version)"}
    assert error_in_body(body) == "Unexpected endpoint or method. (GET /api/version)"
    assert error_in_body({"version": "0.9.6"}) is None


def test_backend_failed_keeps_status_and_message() -> None:
    failed = backend_failed("vllm", 404, '{"error":{"message":"The model `x` does not exist."}}')
    assert failed.http_status == 404
    assert "The model `x` does not exist." in failed.message
    plain = backend_failed("ollama", 500, "boom")
    assert plain.http_status == 500 and plain.message.endswith("boom")

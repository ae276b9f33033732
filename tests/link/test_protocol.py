"""Frame models, parsing of bad frames, the hand-built chunk frame, and the auth transcript."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.protocol import (
    MAX_FRAME_BYTES,
    Challenge,
    FrameError,
    Request,
    ResponseChunk,
    audience,
    auth_transcript,
    chunk_frame,
    parse_server_frame,
    parse_worker_frame,
)

CHUNK = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {"content": 'say "hi"\n\u00e9'}, "finish_reason": None}],
}


def test_chunk_frame_embeds_the_serialised_chunks_verbatim() -> None:
    raw = [json.dumps(CHUNK), json.dumps(CHUNK, ensure_ascii=False, separators=(",", ":"))]
    frame = chunk_frame("req_1", raw)
    assert raw[0] in frame and raw[1] in frame  # not re-encoded
    parsed = parse_worker_frame(frame)
    assert isinstance(parsed, ResponseChunk)
    assert parsed.id == "req_1" and parsed.data == [CHUNK, CHUNK]
    assert json.loads(frame) == {"type": "chunk", "id": "req_1", "data": [CHUNK, CHUNK]}


@given(st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True))
def test_chunk_frame_is_valid_json_for_every_allowed_request_id(request_id: str) -> None:
    frame = chunk_frame(request_id, [json.dumps(CHUNK)])
    assert json.loads(frame)["id"] == request_id


def test_request_ids_that_would_need_escaping_are_rejected() -> None:
    with pytest.raises(FrameError):
        parse_server_frame(json.dumps({"type": "request", "id": 'a"b', "kind": "chat"}))


@pytest.mark.parametrize(
    ("text", "code", "request_id"),
    [
        ("not json", "malformed_frame", None),
        ("[]", "malformed_frame", None),
        ('{"no": "type"}', "unknown_frame", None),
        ('{"type": "warp", "id": "r1"}', "unknown_frame", "r1"),
        ('{"type": "request", "id": "r2", "kind": "video"}', "unknown_request_kind", "r2"),
        ('{"type": "request", "id": "r3", "kind": "chat", "body": 5}', "malformed_frame", "r3"),
        (
            '{"type": "challenge", "versions": [1], "nonce": "x", "server_id": "s"}',
            "malformed_frame",
            None,
        ),
    ],
)
def test_bad_frames_raise_frame_error_only(text: str, code: str, request_id: str | None) -> None:
    with pytest.raises(FrameError) as info:
        parse_server_frame(text)
    assert info.value.code == code and info.value.request_id == request_id


def test_oversized_frames_are_refused_before_parsing() -> None:
    with pytest.raises(FrameError) as info:
        parse_worker_frame(" " * (MAX_FRAME_BYTES + 1))
    assert info.value.code == "frame_too_large"


@given(st.text(max_size=300))
def test_parsing_arbitrary_text_never_raises_anything_else(text: str) -> None:
    try:
        parse_server_frame(text)
        parse_worker_frame(text)
    except FrameError:
        pass


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    frame = parse_server_frame(
        json.dumps({"type": "request", "id": "r", "kind": "chat", "body": {}, "future": 1})
    )
    assert isinstance(frame, Request) and frame.kind == "chat"
    c = Challenge(versions=[1], nonce="n" * 20, server_id="s")
    assert parse_server_frame(c.dump()) == c


def test_audience_normalises_ports_and_scheme() -> None:
    assert audience("wss://API.example.com:443/api/v1/worker/connect") == (
        "api.example.com/api/v1/worker/connect"
    )
    assert audience("ws://127.0.0.1:8787/p") == "127.0.0.1:8787/p"
    assert audience("127.0.0.1:8787/p") == "127.0.0.1:8787/p"
    assert audience("http://[::1]:8787/p") == "[::1]:8787/p"


def test_transcript_binds_every_part() -> None:
    base = dict(protocol=1, nonce="n", server_id="s", public_key="k", audience="h/p")
    reference = auth_transcript(**base)
    for field, value in [
        ("protocol", 2),
        ("nonce", "m"),
        ("server_id", "t"),
        ("public_key", "j"),
        ("audience", "evil/p"),
    ]:
        assert auth_transcript(**{**base, field: value}) != reference


# -- the chunk-frame fast path on the control-plane side ---------------------------------------


def test_split_chunk_frame_returns_each_chunk_text_unchanged() -> None:
    from worker.protocol import chunk_frame, split_chunk_frame

    chunks = ['{"a":1,"s":"x,]}y"}', '{"b":[1,2,{"c":"\\u00e9"}]}', "{}"]
    raw = split_chunk_frame(chunk_frame("r-1", chunks))
    assert raw is not None
    assert raw.id == "r-1"
    assert raw.data == chunks


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"chunk","id":"r1","data":[]}',  # empty: the full parser decides
        '{"type":"chunk","id":"r1","data":[1]}',  # not an object
        '{"type":"chunk","id":"r1","data":[{"a":1}',  # truncated
        '{"type":"chunk","id":"r1","data":[{"a":1}] }',  # trailing bytes
        '{"type":"chunk","id":"r 1","data":[{"a":1}]}',  # id outside the allowed pattern
        '{"type":"chunk","id":"r1","data":[{"a":1}],"x":2}',  # extra keys
        '{"type": "chunk", "id": "r1", "data": [{"a": 1}]}',  # another producer's spacing
        '{"type":"end","id":"r1"}',
        '{"type":"chunk","id":"r1","data":[' + "[" * 100_000 + "]",
    ],
)
def test_split_chunk_frame_leaves_everything_else_to_the_full_parser(text: str) -> None:
    from worker.protocol import split_chunk_frame

    assert split_chunk_frame(text) is None

"""The worker ↔ runner wire (pure): frames survive any split, bad frames are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.backends.pendra import wire


def test_events_round_trip() -> None:
    entries = [
        (1, wire.TEXT, "héllo "),
        (2, wire.TEXT, "🙂"),
        (1, wire.DONE, {"finish_reason": "stop", "prompt_tokens": 3, "completion_tokens": 2}),
        (7, wire.ERROR, {"code": "invalid_request_error", "message": "no", "status": 400}),
        (3, wire.TOKEN_INFO, {"logprob": -0.5}),
        (4, wire.EMBEDDINGS, wire.Embeddings([[0.5, -1.0], [0.25, 2.0]], 11)),
    ]
    frame = wire.events_frame(entries)
    ((kind, body),) = wire.FrameDecoder().feed(frame)
    assert kind == wire.EVENTS
    assert list(wire.iter_entries(body)) == entries


def test_unknown_entry_kinds_are_skipped() -> None:
    import struct

    body = struct.pack("<IBI", 5, 99, 3) + b"abc" + struct.pack("<IBI", 5, wire.TEXT, 2) + b"ok"
    assert list(wire.iter_entries(body)) == [(5, wire.TEXT, "ok")]


@given(st.lists(st.text(), min_size=1, max_size=20), st.integers(min_value=1, max_value=64))
def test_frames_survive_any_split(texts: list[str], chunk: int) -> None:
    frames = [wire.events_frame([(i, wire.TEXT, t)]) for i, t in enumerate(texts)]
    frames.append(wire.control_frame({"op": "stats", "slots_in_use": 1}))
    data = b"".join(frames)
    decoder = wire.FrameDecoder()
    got = []
    for i in range(0, len(data), chunk):
        got += decoder.feed(data[i : i + chunk])
    assert decoder.pending == 0
    assert [next(wire.iter_entries(b))[2] for k, b in got if k == wire.EVENTS] == texts
    assert wire.decode_control(got[-1][1]) == {"op": "stats", "slots_in_use": 1}


def test_bad_frames_are_refused() -> None:
    with pytest.raises(wire.WireError, match="outside the protocol's bounds"):
        wire.FrameDecoder(max_frame_bytes=100).feed(b"\xff\xff\xff\x7fC")
    with pytest.raises(wire.WireError, match="not JSON"):
        wire.decode_control(b"{nope")
    with pytest.raises(wire.WireError, match="'op'"):
        wire.decode_control(b'{"x": 1}')
    with pytest.raises(wire.WireError, match="past the end"):
        list(wire.iter_entries(b"\x01\x00\x00\x00\x01\xff\x00\x00\x00ab"))


def test_one_step_of_eight_sequences_is_one_small_frame() -> None:
    """The per-token cost on the wire: 9 bytes of header per sequence per step, one frame."""
    entries = [(i, wire.TEXT, " the") for i in range(8)]
    frame = wire.events_frame(entries)
    assert len(frame) == 5 + 8 * (9 + 4)

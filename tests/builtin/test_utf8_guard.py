"""The UTF-8 state a constrained answer's bytes are in, token by token (pure)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from worker.backends.pendra.utf8_guard import (
    CONTINUATION_STATES,
    INVALID,
    advance,
    classify,
    valid_from_boundary,
)


@given(st.text(), st.lists(st.integers(0, 64), max_size=8))
def test_any_valid_text_split_anywhere_ends_at_a_boundary(text: str, cuts: list[int]) -> None:
    data = text.encode("utf-8", "surrogatepass")
    if not valid_from_boundary(data):
        return  # (lone surrogates are not UTF-8)
    state = None
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    for start, end in itertools.pairwise(bounds):
        state = advance(state, data[start:end])
        assert state != INVALID
    assert state is None


def test_states_inside_a_character() -> None:
    assert advance(None, "é".encode()[:1]) == (1, 0x80, 0xBF)
    assert advance(None, b"\xe0") == (2, 0xA0, 0xBF)  # no overlong forms
    assert advance(None, b"\xed") == (2, 0x80, 0x9F)  # no surrogates
    assert advance(None, b"\xf4") == (3, 0x80, 0x8F)  # nothing above U+10FFFF
    assert advance((1, 0x80, 0xBF), b"\xa9") is None


def test_invalid_bytes() -> None:
    for data in (b"\x80", b"\xc0\x80", b"\xe2A", b"\xed\xa0\x80", b"\xf5", b"\xe0\x80"):
        assert advance(None, data) == INVALID, data
        assert not valid_from_boundary(data)


def test_classify_a_vocabulary() -> None:
    pieces = [b"", b"a", b"\xc3", b"\xa9", b"\xa9x", b"\xa9\xa9", b"\xe2\x82", b"\xff", b"\x82\xac"]
    banned, allowed = classify(pieces)
    assert banned == [3, 4, 5, 7, 8]  # continuation bytes first, or never valid
    assert allowed[(1, 0x80, 0xBF)] == [3, 4]  # é's second byte, then more text
    assert allowed[(2, 0x80, 0xBF)] == [3, 5, 8]  # two continuation bytes
    assert set(allowed) == set(CONTINUATION_STATES)

"""Keeping grammar-constrained output valid UTF-8, token by token (pure).

llama.cpp's grammar matches code points, but decodes a token's bytes leniently: after a lead byte
such as 0xE2 it takes *any* next bytes as the rest of the character. A model that writes text
through byte-fallback tokens (a random one does, all the time) can then put invalid UTF-8 into a
JSON string the grammar accepted: it turns into U+FFFD characters, and a ``maxLength`` no longer
holds. So for constrained requests the sampler also tracks where the byte stream is inside a
character, and only lets through tokens that continue it validly: at a character boundary it
bans the few tokens that begin with a continuation byte or are broken inside; inside a character
it samples among the few tokens that begin with the right continuation bytes.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable

State = tuple[int, int, int] | None
"""None at a character boundary, else (continuation bytes still needed, range of the next one)."""

INVALID = (-1, 0, 0)
CONTINUATION_STATES: tuple[tuple[int, int, int], ...] = (
    (1, 0x80, 0xBF),
    (2, 0x80, 0xBF),
    (2, 0xA0, 0xBF),  # after E0: no overlong forms
    (2, 0x80, 0x9F),  # after ED: no surrogates
    (3, 0x80, 0xBF),
    (3, 0x90, 0xBF),  # after F0: no overlong forms
    (3, 0x80, 0x8F),  # after F4: nothing above U+10FFFF
)


def _lead(byte: int) -> tuple[int, int, int] | None:
    """The state after a lead byte; None for ASCII; INVALID for a byte that cannot start one."""
    if byte < 0x80:
        return None
    if 0xC2 <= byte <= 0xDF:
        return (1, 0x80, 0xBF)
    if byte == 0xE0:
        return (2, 0xA0, 0xBF)
    if byte == 0xED:
        return (2, 0x80, 0x9F)
    if 0xE1 <= byte <= 0xEF:
        return (2, 0x80, 0xBF)
    if byte == 0xF0:
        return (3, 0x90, 0xBF)
    if 0xF1 <= byte <= 0xF3:
        return (3, 0x80, 0xBF)
    if byte == 0xF4:
        return (3, 0x80, 0x8F)
    return INVALID


def advance(state: State, data: bytes) -> State:
    """The state after ``data``, or INVALID when it breaks UTF-8."""
    for byte in data:
        if state is None:
            state = _lead(byte)
            if state == INVALID:
                return INVALID
            continue
        remaining, low, high = state
        if not low <= byte <= high:
            return INVALID
        state = None if remaining == 1 else (remaining - 1, 0x80, 0xBF)
    return state


def valid_from_boundary(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8 from a character boundary (it may end inside one)."""
    try:
        codecs.utf_8_decode(data, "strict", False)
    except UnicodeDecodeError:
        return False
    return True


def classify(pieces: Iterable[bytes]) -> tuple[list[int], dict[tuple[int, int, int], list[int]]]:
    """(tokens to ban at a boundary, tokens allowed in each continuation state) of a vocabulary
    given as each token's bytes (empty for control tokens)."""
    banned: list[int] = []
    allowed: dict[tuple[int, int, int], list[int]] = {s: [] for s in CONTINUATION_STATES}
    for token, data in enumerate(pieces):
        if not data:
            continue  # a control token: no bytes, the state stays
        if 0x80 <= data[0] <= 0xBF:
            banned.append(token)
            for state in CONTINUATION_STATES:
                if advance(state, data) != INVALID:
                    allowed[state].append(token)
        elif not valid_from_boundary(data):
            banned.append(token)
    return banned, allowed

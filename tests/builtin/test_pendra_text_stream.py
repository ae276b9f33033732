"""Incremental UTF-8 decoding and stop-string matching (pure)."""

from __future__ import annotations

import random

from worker.backends.pendra.text_stream import StopMatcher, Utf8Decoder


def test_utf8_holds_back_incomplete_sequences() -> None:
    data = "héllo 😀 wörld".encode()
    decoder = Utf8Decoder()
    out = "".join(decoder.feed(bytes([b])) for b in data) + decoder.finish()
    assert out == "héllo 😀 wörld"
    decoder = Utf8Decoder()
    assert decoder.feed("😀".encode()[:2]) == ""
    assert decoder.feed("😀".encode()[2:]) == "😀"


def test_utf8_invalid_bytes_become_replacement() -> None:
    decoder = Utf8Decoder()
    assert decoder.feed(b"a\x80b") == "a\ufffdb"
    assert decoder.feed(b"\xe2\x82") == ""
    assert decoder.finish() == "\ufffd"


def _run(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = []
    stopped = False
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        out.append(text)
        if stopped:
            break
    if not stopped:
        out.append(matcher.flush())
    return "".join(out), stopped


def test_stop_across_pieces() -> None:
    assert _run(["END"], ["hello E", "N", "D and more"]) == ("hello ", True)


def test_partial_stop_released_at_end() -> None:
    assert _run(["END"], ["hello E", "N"]) == ("hello EN", False)


def test_earliest_of_several_stops() -> None:
    assert _run(["bb", "a"], ["xxbba"]) == ("xx", True)


def test_no_stops_passes_through() -> None:
    assert _run([], ["a", "b"]) == ("ab", False)


def test_matches_a_whole_text_search_for_random_splits() -> None:
    rng = random.Random(3)
    for _ in range(300):
        text = "".join(rng.choice("ab\n<>") for _ in range(rng.randrange(0, 30)))
        stops = [
            "".join(rng.choice("ab\n<>") for _ in range(rng.randrange(1, 4))) for _ in range(2)
        ]
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, 4)))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        hits = [text.find(s) for s in stops if s in text]
        expected = (text[: min(hits)], True) if hits else (text, False)
        assert _run(stops, pieces) == expected, (text, stops, pieces)

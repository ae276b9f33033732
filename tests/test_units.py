"""The one style for sizes, rates and durations shared by the CLI and the app."""

from __future__ import annotations

import pytest

from worker.units import UNKNOWN, format_bytes, format_duration, format_rate


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1500, "1.5 KB"),
        (253_113_024, "253 MB"),
        (19_800_000_000, "19.8 GB"),
        (None, UNKNOWN),
        (-1, UNKNOWN),
        (True, UNKNOWN),
        ("12", UNKNOWN),
        (float("nan"), UNKNOWN),
    ],
)
def test_format_bytes_si(value: object, text: str) -> None:
    assert format_bytes(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(1023, "1023 B"), (1536, "1.5 KiB"), (81559 * 1024**2, "79.6 GiB"), (None, UNKNOWN)],
)
def test_format_bytes_binary(value: object, text: str) -> None:
    assert format_bytes(value, binary=True) == text


def test_unknown_placeholder_is_configurable() -> None:
    assert format_bytes(None, unknown="?") == "?"
    assert format_rate(0, unknown="") == ""


def test_format_rate() -> None:
    assert format_rate(48_200_000) == "48.2 MB/s"
    assert format_rate(None) == UNKNOWN


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5.9, "5s"),
        (65, "1m 05s"),
        (7380, "2h 03m"),
        (90000, "1d 1h"),
        (None, UNKNOWN),
        (-3, UNKNOWN),
    ],
)
def test_format_duration(seconds: object, text: str) -> None:
    assert format_duration(seconds) == text

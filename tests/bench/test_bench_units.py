"""The benches' pure parts: statistics, the report rows, and the relay/TTFT parsers."""

from __future__ import annotations

import json

import pytest

from bench.bench_concurrency import parse_levels
from bench.bench_relay import chat_body, stamped
from bench.bench_ttft import has_content
from bench.report import Row, Section
from bench.sse_client import StreamTrace
from bench.stamp_emulator import pace_us
from bench.stats import decode_rate, intervals, median, percentile, rate, ratio


def test_percentile_interpolates_between_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == 25.0
    assert percentile([5.0], 99) == 5.0
    assert median([3.0, 1.0, 2.0]) == 2.0


@pytest.mark.parametrize("bad", [[], None])
def test_percentile_refuses_an_empty_sample(bad: list[float] | None) -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile(bad or [], 50)


def test_percentile_refuses_out_of_range_q() -> None:
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_rates_and_ratios() -> None:
    assert rate(10, 2.0) == 5.0
    assert ratio(9.0, 10.0) == pytest.approx(0.9)
    assert intervals([1.0, 1.5, 3.0]) == [0.5, 1.5]
    with pytest.raises(ValueError):
        rate(1, 0.0)
    with pytest.raises(ValueError):
        ratio(1.0, 0.0)


def test_decode_rate_leaves_the_first_token_out() -> None:
    # 11 tokens, the first at t=1 s (prefill), the last at t=3 s: 10 decode steps in 2 s.
    assert decode_rate(1.0, 3.0, 11) == 5.0
    with pytest.raises(ValueError, match="at least 2"):
        decode_rate(1.0, 3.0, 1)


def test_row_ratio_and_goal_direction() -> None:
    fast = Row("decode", 95.0, 100.0, "tok/s", goal=0.9)
    assert fast.ratio == pytest.approx(0.95)
    assert fast.met is True
    slow = Row("decode", 80.0, 100.0, "tok/s", goal=0.9)
    assert slow.met is False
    added = Row("added p50", 2.5, None, "ms", goal=2.0, higher_is_better=False)
    assert added.ratio is None
    assert added.met is False
    assert Row("x", 1.0, None, "ms").met is None


def test_section_markdown_has_a_table_and_the_computed_ratio() -> None:
    section = Section(title="T", intro="intro", rows=[Row("decode", 45.0, 50.0, "tok/s", 0.9)])
    text = section.markdown()
    assert "| decode | 45.0 tok/s | 50.0 tok/s | 0.90× | ≥ 0.9× | yes |" in text
    assert "_Machine:" in text
    assert section.ratios_line() == "bench ratios | T | decode=0.90x"


def test_stamped_pairs_only_numeric_chunks() -> None:
    trace = StreamTrace(sent_ns=0, content_ns=[5, 9, 12], contents=["Echo:", " 3", " 7"])
    assert stamped(trace) == [(3, 9), (7, 12)]


def test_relay_body_and_pace_round_trip() -> None:
    body = chat_body(3, pace_us=1500)
    assert body["messages"][0]["content"] == "pace=1500 @@ @@ @@"
    assert pace_us(body) == 1500
    assert pace_us(chat_body(2)) == 0
    assert pace_us({"messages": "nonsense"}) == 0


def test_has_content() -> None:
    role = json.dumps({"choices": [{"delta": {"role": "assistant", "content": ""}}]})
    text = json.dumps({"choices": [{"delta": {"content": "hi"}}]})
    usage = json.dumps({"choices": [], "usage": {"completion_tokens": 1}})
    assert not has_content(role)
    assert has_content(text)
    assert not has_content(usage)


def test_parse_levels() -> None:
    assert parse_levels("1,2, 4") == [1, 2, 4]
    with pytest.raises(SystemExit, match="numbers"):
        parse_levels("1,two")
    with pytest.raises(SystemExit, match="positive"):
        parse_levels("0")

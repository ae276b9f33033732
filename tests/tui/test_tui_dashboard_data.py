"""Plain unit tests of the dashboard's pure parts: plots, the metrics history, the models and
requests rows, log filtering, table sorting, the link bar and the size check."""

from __future__ import annotations

import dataclasses

import pytest
import tui_fakes

from pendra_tui.dashboard_model import RECENT_REQUESTS_KEPT, DashboardModel, RequestsView
from pendra_tui.log_lines import line_level, next_level, passes, visible
from pendra_tui.metrics_view import MetricsView, percent
from pendra_tui.model_rows import (
    idle_slots_hint,
    model_rows,
    models_summary,
    parse_loaded,
    row_cells,
    row_detail,
    row_sort_values,
)
from pendra_tui.plotting import braille_area, bucket_series, nice_ceiling
from pendra_tui.request_rows import parse_request, requests_summary
from pendra_tui.request_rows import row_cells as request_cells
from pendra_tui.screens.too_small import is_too_small, too_small_text
from pendra_tui.widgets.gpu_panel import host_summary
from pendra_tui.widgets.host_panel import cpu_label, process_line, ram_label
from pendra_tui.widgets.link_bar import LinkInfo, link_text
from pendra_tui.widgets.sortable_table import Row, filter_rows, sort_rows
from pendra_tui.widgets.throughput_panel import counters_text, short_count

NOW = tui_fakes.WALL_NOW


# -- plotting ----------------------------------------------------------------------------------
def test_bucket_series_puts_samples_in_their_slice_of_time() -> None:
    points = [(90.0, 10.0), (95.0, 20.0), (96.0, None), (99.0, 40.0)]
    # 10 s over 5 columns, 2 s each: an empty column repeats the one before it; a column whose
    # only sample had no value stays unknown
    assert bucket_series(points, 100.0, 10.0, 5) == [10.0, 10.0, 20.0, None, 40.0]
    assert bucket_series(points[1:], 100.0, 10.0, 5) == [None, None, 20.0, None, 40.0]
    assert bucket_series(points, 100.0, 20.0, 2) == [None, 70 / 3]
    assert bucket_series([], 100.0, 10.0, 3) == [None, None, None]
    assert bucket_series(points, 100.0, 10.0, 0) == []
    # samples outside the window are left out
    assert bucket_series([(50.0, 99.0), (100.0, 1.0)], 100.0, 10.0, 2) == [None, 1.0]


def test_braille_area_fills_from_the_bottom_two_values_a_cell() -> None:
    # one row: 4 dots high; 0 → blank, 1 → bottom dot, full → all four dots of that column
    assert braille_area([0, 1, 4, 4], 1, 4) == ["⢀⣿"]
    # two rows (8 dots): a value of 6 fills the bottom row and half the top one
    assert braille_area([6, None], 2, 8) == ["⡄", "⡇"]
    # a tiny value still shows one dot; values above the top are clipped
    assert braille_area([0.01, 100], 1, 10) == ["⣸"]
    assert braille_area([1, 2, 3], 1, 3) == ["⣰⡇"]  # odd counts get a blank partner
    assert braille_area([1.0], 0, 1) == []


def test_nice_ceiling_rounds_up_to_1_2_5() -> None:
    assert [nice_ceiling(v) for v in (0, 0.7, 1, 3, 184.6, 412, 5000)] == [
        1.0,
        1.0,
        1.0,
        5.0,
        200.0,
        500.0,
        5000.0,
    ]


def test_metrics_view_loads_appends_and_reads_series() -> None:
    view = MetricsView()
    view.load(tui_fakes.history_doc(gpus=2, samples=10))
    assert len(view.samples) == 10 and view.end_ts == NOW
    assert view.add({"ts": NOW - 4, "tokens_per_s": 1}) is False  # older than the last: ignored
    assert view.add({"ts": NOW + 2, "tokens_per_s": 7.5, "gpus": [], "host": None}) is True
    assert view.series("tokens_per_s")[-1] == (NOW + 2, 7.5)
    memory = view.gpu_series(1, "memory")
    assert memory[0][1] == pytest.approx(percent((32.5 + 8 * 1.0) * 2**30, 80 * 2**30), rel=0.2)
    assert memory[-1][1] is None  # the last sample had no GPU readings
    assert view.host_series("cpu_percent")[0][1] == pytest.approx(8.0)
    assert view.peak("in_flight", 60) == max(
        s["in_flight"] for s in tui_fakes.history_doc(2, 10)["samples"]
    )
    assert MetricsView().peak("in_flight", 60) is None
    assert percent(None, 10) is None and percent(5, 0) is None


# -- the dashboard model -------------------------------------------------------------------------
def test_the_rate_shown_is_the_latest_the_worker_sent_so_it_falls_to_zero() -> None:
    """Bug: tokens/s stayed at the last busy value. Every metrics sample carries the worker's
    rate, and the model takes it as it is."""
    model = DashboardModel()
    model.apply_status(tui_fakes.running_status(), now=0.0)
    model.apply_event({"kind": "requests", "tokens_per_s": 6.5, "in_flight": 0}, 1.0)
    assert model.requests.tokens_per_s == 6.5
    sample = {"ts": NOW, "tokens_per_s": 0.0, "in_flight": 0, "served": 9, "cancelled": 4}
    changed = model.apply_event({"kind": "metrics", "sample": sample, "loaded": {}}, 2.0)
    assert {"requests", "gpus", "host"} <= changed
    assert model.requests.tokens_per_s == 0.0
    assert (model.requests.served, model.requests.cancelled) == (9, 4)


def test_metrics_events_refresh_loaded_models_and_their_countdowns() -> None:
    model = DashboardModel()
    model.apply_status(tui_fakes.running_status(), now=100.0)
    loaded = [{**tui_fakes.LOADED[1], "idle_unload_in_s": 30.0}]
    changed = model.apply_event(
        {"kind": "metrics", "sample": {"ts": NOW}, "loaded": {"pendra": loaded}}, 200.0
    )
    assert "models" in changed and model.loaded_at["pendra"] == 200.0
    rows = model_rows(model.backends, model.loaded_at, now=210.0)
    gemma = next(r for r in rows if r.key == "pendra/gemma3:270m")
    assert row_cells(gemma, 210.0)["unload"] == "20s"


def test_request_events_upsert_and_stay_bounded() -> None:
    model = DashboardModel()
    assert model.apply_recent(tui_fakes.recent_requests()) == {"recent"}
    assert list(model.recent)[-1] == "r9"  # oldest first, newest last
    running = {**tui_fakes.recent_requests()[0], "status": "ok", "tokens_out": 900}
    assert model.apply_event({"kind": "request", "request": running}, 0) == {"recent"}
    assert model.recent["r9"].status == "ok" and len(model.recent) == 9
    for n in range(RECENT_REQUESTS_KEPT + 20):
        record = {**running, "id": f"x{n}", "status": "ok"}
        model.apply_event({"kind": "request", "request": record}, 0)
    assert len(model.recent) == RECENT_REQUESTS_KEPT + 1  # the bound plus r8, still running
    assert "r8" in model.recent
    assert model.apply_event({"kind": "request", "request": {"no": "id"}}, 0) == set()


def test_state_events_carry_why_the_link_is_down_and_the_countdown() -> None:
    model = DashboardModel()
    model.apply_status(tui_fakes.running_status(), now=0.0)
    event = {
        "kind": "state",
        "state": "offline",
        "link": {"reason": "cannot reach wss://x: refused", "retry_in_s": 38.7, "attempt": 3},
    }
    assert model.apply_event(event, 10.0) == {"link"}
    assert model.link.reason == "cannot reach wss://x: refused"
    assert model.link.retry_in(20.0) == pytest.approx(28.7)
    assert model.link.retry_in(60.0) == 0.0
    model.apply_event({"kind": "state", "state": "connected", "link": {"reason": None}}, 61.0)
    assert model.link.reason is None and model.link.retry_in(61.0) is None


def test_history_fills_the_plots_and_host() -> None:
    model = DashboardModel()
    assert model.apply_history(tui_fakes.history_doc(gpus=0, samples=5)) == {
        "requests",
        "gpus",
        "host",
    }
    assert len(model.metrics.samples) == 5 and model.host and model.host.pid == 4242


# -- models panel ----------------------------------------------------------------------------------
def _model_rows(now: float = 100.0):
    model = DashboardModel()
    model.apply_status(tui_fakes.running_status(), now=100.0)
    return model_rows(model.backends, model.loaded_at, now)


def test_models_rows_list_loaded_installed_and_unusable_once_each() -> None:
    rows = _model_rows()
    assert [(r.key, r.state) for r in rows] == [
        ("pendra/qwen3:8b", "ready"),
        ("pendra/gemma3:270m", "ready"),
        ("pendra/phi4-mini:3.8b", "installed"),
        ("pendra/file:llama-2-7b.Q4_0.bin", "unusable"),
        ("ollama/llama3.2:3b", "installed"),
        ("ollama/nomic-embed-text:v1.5", "installed"),
        ("ollama/flux-schnell:12b", "installed"),
    ]
    qwen = row_cells(rows[0], 100.0)
    assert qwen == {
        "model": "qwen3:8b",
        "backend": "pendra",
        "state": "● loaded",
        "memory": "9.2 GiB",
        "kv": "f16 9k/32k",
        "slots": "2/4 +1q",
        "unload": "busy",
        "ctx": "32k",
    }
    assert row_cells(rows[1], 130.0)["unload"] == "3m 42s"
    assert row_cells(rows[2], 100.0)["memory"] == "(2.3 GiB)"
    assert row_sort_values(rows[0], 100.0)["memory"] == 5_027_783_488 + 4_831_838_208
    assert models_summary(rows) == "2 loaded · 4 on disk · 1 unusable"
    assert "cannot be served: not a GGUF file" in row_detail(rows[3], 100.0)
    detail = row_detail(rows[1], 100.0)
    assert "KV cache 96 MiB q8_0" in detail and "unloads in 4m 12s if idle" in detail


def test_a_max_concurrent_below_a_models_slots_is_pointed_out() -> None:
    rows = _model_rows()  # qwen3:8b and gemma3:270m loaded, 4 slots each
    assert idle_slots_hint(rows, 1) == (
        "max_concurrent 1 keeps 3 of qwen3:8b's 4 slots idle: pendra config set max_concurrent 4"
    )
    assert idle_slots_hint(rows, 4) is None and idle_slots_hint(rows, 8) is None
    assert idle_slots_hint(rows, None) is None  # no cap, or a worker that does not say
    # an embedding model's slots are not what max_concurrent holds back
    embedders = [dataclasses.replace(row, task="embedding") for row in rows]
    assert idle_slots_hint(embedders, 1) is None
    # the cap arrives with the request counters
    model = DashboardModel()
    model.apply_status(
        {**tui_fakes.running_status(), "requests": {"in_flight": 0, "max_concurrent": 2}}, 1.0
    )
    assert model.requests.max_concurrent == 2


def test_models_rows_accept_the_older_list_of_ids() -> None:
    assert parse_loaded("gemma3:270m") is not None
    assert parse_loaded({"no": "id"}) is None and parse_loaded(3) is None
    doc = tui_fakes.running_status()
    doc["backends"][0]["loaded"] = ["qwen3:8b"]
    model = DashboardModel()
    model.apply_status(doc, now=0.0)
    rows = model_rows(model.backends, model.loaded_at, 0.0)
    assert rows[0].state == "ready" and row_cells(rows[0], 0.0)["memory"] == "—"
    assert sum(r.model == "qwen3:8b" for r in rows) == 1


# -- recent requests -------------------------------------------------------------------------------
def test_request_rows_show_metadata_in_readable_units() -> None:
    views = [parse_request(r) for r in tui_fakes.recent_requests()]
    assert all(views)
    by_id = {v.id: v for v in views if v}
    assert request_cells(by_id["r6"], NOW) == {
        "age": "31s",
        "model": "gemma3:270m",
        "backend": "pendra",
        "kind": "chat ⇢",
        "in": "18",
        "out": "48",
        "ttft": "41 ms",
        "rate": "61.3",
        "status": "✓ ok",
        "time": "825 ms",
    }
    assert request_cells(by_id["r9"], NOW)["time"] == "3.0 s"  # running: the time so far
    assert request_cells(by_id["r3"], NOW)["status"] == "✗ failed model_not_found"
    assert request_cells(by_id["r2"], NOW)["time"] == "23.1 s"
    assert request_cells(by_id["r1"], NOW)["age"] == "4m 00s"
    assert requests_summary([v for v in views if v]) == "2 running · 9 recent · 1 failed"
    assert parse_request({"kind": "chat"}) is None


# -- log pane --------------------------------------------------------------------------------------
def test_log_levels_and_filters() -> None:
    lines = tui_fakes.LOG_LINES
    assert [line_level(line) for line in lines] == [
        "info",
        "info",
        "debug",
        "warning",
        "info",
        "error",
        "info",
    ]
    assert line_level("WARNING pendra.x: y") == "warning" and line_level("nothing") == "info"
    assert line_level("2026-01-01 00:00:00 CRITICAL a: b") == "error"
    assert visible(lines, "warning", "") == [3, 5]
    assert visible(lines, "debug", "LOADED qwen") == [4]
    assert not passes(lines[2], "info", "")
    assert [next_level(x) for x in ("debug", "info", "warning", "error")] == [
        "info",
        "warning",
        "error",
        "debug",
    ]


# -- tables ---------------------------------------------------------------------------------
def test_sorting_is_numeric_stable_and_puts_unknowns_last() -> None:
    rows = [
        Row("a", {"name": "b", "size": "2 GB"}, {"size": 2}),
        Row("b", {"name": "a", "size": "—"}, {"size": None}),
        Row("c", {"name": "C", "size": "10 GB"}, {"size": 10}),
        Row("d", {"name": "d", "size": "2 GB"}, {"size": 2}),
    ]
    assert [r.key for r in sort_rows(rows, "size", False)] == ["a", "d", "c", "b"]
    assert [r.key for r in sort_rows(rows, "size", True)] == ["c", "a", "d", "b"]
    assert [r.key for r in sort_rows(rows, "name", False)] == ["b", "a", "c", "d"]
    mixed = [Row("x", {}, {"v": 1}), Row("y", {}, {"v": "z"})]
    assert [r.key for r in sort_rows(mixed, "v", False)] == ["x", "y"]
    assert [r.key for r in filter_rows(rows, "10 c")] == ["c"]
    assert filter_rows(rows, "  ") == rows


# -- link bar, panels, size -----------------------------------------------------------------
def test_link_bar_says_why_it_is_offline_and_when_it_retries() -> None:
    info = LinkInfo(
        "offline", reason="cannot reach wss://api.pendra.ai: Connection refused", retry_in_s=38.7
    )
    assert link_text(info).plain == (
        "Pendra worker  ○ offline  ·  cannot reach wss://api.pendra.ai: Connection refused"
        "  ·  retry in 38s  r now"
    )
    narrow = link_text(info, width=72).plain
    assert (
        len(narrow) <= 72
        and narrow.endswith("retry in 38s  r now")
        and "cannot reach wss://api… · retry" in narrow
    )
    assert "cannot" not in link_text(info, width=50).plain  # no room: the keys stay
    named = dataclasses.replace(info, name="gpu-box-01")
    assert link_text(named).plain.startswith("Pendra worker gpu-box-01  ○ offline")
    tight = link_text(named, width=80).plain  # the name gives way to why the link is down
    assert "gpu-box-01" not in tight and "cannot reach wss://api.pendra" in tight
    assert link_text(dataclasses.replace(named, reason=None), width=80).plain.startswith(
        "Pendra worker gpu-box-01  ○ offline"
    )
    draining = link_text(LinkInfo("draining", in_flight=3)).plain
    assert draining.endswith("finishing 3 in flight, then it exits")
    assert "connectedup" not in link_text(LinkInfo("connected", 60.0)).plain


def test_panel_texts() -> None:
    view = RequestsView(in_flight=2, served=12873, failed=14, cancelled=3, tokens_total=2_310_400)
    assert counters_text(view, 80).plain == ("served 12,873  failed 14  cancelled 3  tokens 2.3M")
    assert counters_text(view, 40).plain == "served 12,873  failed 14  cancelled 3"
    assert counters_text(view, 30).plain == "✓12.9k  ✗14  ⊘3"
    assert [short_count(v) for v in (None, 980, 41_000, 2_000_000)] == ["—", "980", "41k", "2M"]
    model = DashboardModel()
    model.apply_status(tui_fakes.running_status(), now=0.0)
    assert host_summary(model.host) == "CPU 24% · RAM 19/64 GiB · worker 1.4 GiB"
    assert host_summary(None) == ""
    assert cpu_label(model.host).plain == "CPU   24%\n16 cores\nload 3.2"
    assert ram_label(model.host).plain == "RAM 19/64 GiB\n30% used"
    assert process_line(model.host).plain == "worker pid 4242 · 1.4 GiB · CPU 11% · 23 threads"
    assert process_line(None).plain.startswith("worker pid — · —")


def test_below_80x24_the_app_says_so() -> None:
    assert is_too_small(79, 40) and is_too_small(120, 23) and not is_too_small(80, 24)
    assert too_small_text(60, 20).startswith("terminal too small (need 80×24, have 60×20)")


async def test_the_plot_widget_draws_the_window_right_aligned_in_time() -> None:
    from textual.app import App, ComposeResult

    from pendra_tui.widgets.plot import Plot

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield Plot(maximum=4.0, id="p")

    app = One()
    async with app.run_test(size=(4, 1)) as pilot:
        plot = app.query_one(Plot)
        plot.window_s = 8.0  # 8 dot columns: one second each
        plot.points = ((100.0, 4.0), (101.0, 2.0), (107.0, 1.0))
        await pilot.pause()
        # 99-100 s: no data; then 4 dots, 2 dots carried over the gap, 1 dot at 107 s
        assert plot.rows_text() == ["⢸⣤⣤⣄"]
        plot.points = ()
        await pilot.pause()
        assert plot.rows_text() == ["⣀⣀⣀⣀"]  # nothing yet: just the baseline


def test_a_full_bar_gives_way_least_telling_first_at_80_columns() -> None:
    from pendra_tui.dashboard_model import PrivateInferenceView

    private = PrivateInferenceView(True, "3f9a1c2b" * 8, 1204, 0)
    info = LinkInfo("connected", 8040, "0.1.0", private=private)
    wide = link_text(info, 120).plain
    assert wide.endswith("up 2h 14m  ·  private 3f9a1c2b · 1,204 served  ·  v0.1.0")
    narrow = link_text(info, 78).plain
    assert len(narrow) <= 78
    assert "private 3f9a1c2b · 1,204 served" in narrow and "v0.1.0" not in narrow

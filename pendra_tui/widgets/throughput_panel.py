"""Throughput: tokens/s and requests in flight over the last minutes, and the request counters.

Every number here is the worker's own: the rate is its sliding-window rate, sampled every 2 s
into the history, so it falls to 0 when requests stop, exactly as ``pendra status`` shows it.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from pendra_tui.dashboard_model import RequestsView
from pendra_tui.formatting import NA, format_count, format_tokens_per_s
from pendra_tui.metrics_view import MetricsView
from pendra_tui.widgets.plot import Plot


def short_count(value: int | None) -> str:
    """``2.3M`` / ``41k`` / ``980`` for counters in a narrow line (pure)."""
    if value is None:
        return NA
    for size, unit in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if value >= size:
            return f"{value / size:.1f}{unit}".replace(".0" + unit, unit)
    return str(value)


def tokens_label(view: RequestsView, peak: float | None) -> Text:
    """``tok/s 184.6`` over ``peak 412`` (pure)."""
    text = Text.assemble(("tok/s ", "dim"), (format_tokens_per_s(view.tokens_per_s), "bold"))
    text.append("\npeak  ", style="dim")
    text.append(format_tokens_per_s(peak) if peak is not None else NA)
    return text


def in_flight_label(view: RequestsView, peak: float | None) -> Text:
    text = Text.assemble(("in flight ", "dim"), (str(view.in_flight), "bold"))
    text.append("\npeak      ", style="dim")
    text.append(NA if peak is None else f"{peak:.0f}")
    return text


def counters_text(view: RequestsView, width: int) -> Text:
    """Served, failed, cancelled (and the token total when there is room) in one line (pure)."""
    failed_style = "red" if view.failed else ""
    cancelled_style = "yellow" if view.cancelled else ""
    long = Text.assemble(
        ("served ", "dim"),
        format_count(view.served),
        ("  failed ", "dim"),
        (format_count(view.failed), failed_style),
        ("  cancelled ", "dim"),
        (format_count(view.cancelled), cancelled_style),
    )
    if view.tokens_total is not None:
        wider = long.copy()
        wider.append("  tokens ", style="dim")
        wider.append(short_count(view.tokens_total))
        if wider.cell_len <= width:
            return wider
    if long.cell_len <= width:
        return long
    return Text.assemble(
        ("✓", "green"),
        short_count(view.served),
        ("  ✗", "red"),
        (short_count(view.failed), failed_style),
        ("  ⊘", "yellow"),
        (short_count(view.cancelled), cancelled_style),
    )


class MetricRow(Horizontal):
    """A label and the plot it describes, side by side."""

    def __init__(self, plot: Plot, *, classes: str) -> None:
        super().__init__(classes=f"metric-row {classes}")
        self.plot = plot

    def compose(self) -> ComposeResult:
        yield Static(classes="metric-label")
        yield self.plot

    def update(self, label: Text, metrics: MetricsView, series: str, window_s: float) -> None:
        self.query_one(".metric-label", Static).update(label)
        self.plot.points = metrics.series(series)
        self.plot.end_ts = metrics.end_ts
        self.plot.window_s = window_s


class ThroughputPanel(Vertical):
    """tokens/s plot, in-flight plot, counters."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._view = RequestsView()

    def compose(self) -> ComposeResult:
        yield MetricRow(Plot(), classes="tokens")
        yield MetricRow(Plot(), classes="in-flight")
        yield Static(id="counters")

    def show(self, view: RequestsView, metrics: MetricsView, window_s: float) -> None:
        self._view = view
        self.query_one(".tokens", MetricRow).update(
            tokens_label(view, metrics.peak("tokens_per_s", window_s)),
            metrics,
            "tokens_per_s",
            window_s,
        )
        self.query_one(".in-flight", MetricRow).update(
            in_flight_label(view, metrics.peak("in_flight", window_s)),
            metrics,
            "in_flight",
            window_s,
        )
        self._show_counters()

    def on_resize(self) -> None:
        self._show_counters()

    def _show_counters(self) -> None:
        counters = self.query_one("#counters", Static)
        counters.update(counters_text(self._view, max(10, self.content_size.width)))

"""Host panel, for machines without a GPU: CPU and memory over the last minutes, and the worker
process itself (resident memory, CPU, threads)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from pendra_tui.dashboard_model import HostView
from pendra_tui.formatting import NA, format_mib, format_percent
from pendra_tui.metrics_view import MetricsView
from pendra_tui.widgets.gpu_panel import memory_text
from pendra_tui.widgets.plot import Plot


def cpu_label(host: HostView | None) -> Text:
    """``CPU  12%`` over ``16 cores`` over ``load 1.9`` (pure)."""
    host = host or HostView()
    text = Text.assemble(("CPU ", "dim"), (f"{format_percent(host.cpu_percent):>5}", "bold"))
    text.append(f"\n{host.cpu_count or NA} cores", style="dim")
    if host.load_1m is not None:
        text.append(f"\nload {host.load_1m:.1f}", style="dim")
    return text


def ram_label(host: HostView | None) -> Text:
    host = host or HostView()
    text = Text.assemble(
        ("RAM ", "dim"), (memory_text(host.memory_used, host.memory_total), "bold")
    )
    if host.memory_used is not None and host.memory_total:
        text.append(f"\n{100 * host.memory_used / host.memory_total:.0f}% used", style="dim")
    return text


def process_line(host: HostView | None) -> Text:
    """``worker pid 4242 · 1.2 GiB · CPU 6% · 23 threads`` (pure)."""
    host = host or HostView()
    text = Text("worker ", style="dim")
    text.append(f"pid {host.pid}" if host.pid is not None else "pid —")
    text.append(" · ", style="dim")
    text.append(format_mib(host.process_rss))
    text.append(" · CPU ", style="dim")
    text.append(format_percent(host.process_cpu_percent))
    if host.process_threads is not None:
        text.append(" · ", style="dim")
        text.append(f"{host.process_threads} threads")
    return text


class HostPanel(Vertical):
    def compose(self) -> ComposeResult:
        with Horizontal(classes="metric-row cpu"):
            yield Static(classes="metric-label cpu-label")
            yield Plot(maximum=100.0, gradient=True, classes="cpu-plot")
        with Horizontal(classes="metric-row ram"):
            yield Static(classes="metric-label ram-label")
            yield Plot(maximum=100.0, gradient=True, classes="ram-plot")
        yield Static(id="process-line")

    def show(self, host: HostView | None, metrics: MetricsView, window_s: float) -> None:
        self.query_one(".cpu-label", Static).update(cpu_label(host))
        self.query_one(".ram-label", Static).update(ram_label(host))
        self.query_one("#process-line", Static).update(process_line(host))
        for selector, series in ((".cpu-plot", "cpu_percent"), (".ram-plot", "memory")):
            plot = self.query_one(selector, Plot)
            plot.points = metrics.host_series(series)
            plot.end_ts = metrics.end_ts
            plot.window_s = window_s

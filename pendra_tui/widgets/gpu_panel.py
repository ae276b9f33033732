"""GPU panel: one card per GPU with utilisation and memory plots over the last minutes."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from pendra_tui.dashboard_model import GpuView, HostView
from pendra_tui.formatting import format_mib, format_percent, format_power, format_temperature
from pendra_tui.metrics_view import MetricsView
from pendra_tui.widgets.plot import Plot


def load_level(utilization: float | None) -> str:
    """``light`` < 10 % ≤ ``moderate`` < 75 % ≤ ``heavy`` (nvitop's thresholds)."""
    if utilization is None or utilization < 10:
        return "light"
    return "moderate" if utilization < 75 else "heavy"


def gpu_title(view: GpuView) -> Text:
    """``GPU 0 H100 80GB HBM3  61°C  312 W`` (pure)."""
    return Text.assemble(
        (f"GPU {view.index} ", "bold"),
        (short_gpu_name(view.name), ""),
        f"  {format_temperature(view.temperature)}  {format_power(view.power_w)}",
    )


def util_label(view: GpuView) -> str:
    """``util  42%`` — the label of the utilisation plot."""
    return f"util {format_percent(view.utilization):>5}"


def mem_label(view: GpuView) -> str:
    """``mem 40/80 GiB`` — the label of the memory plot."""
    return f"mem {memory_text(view.memory_used, view.memory_total)}"


def short_gpu_name(name: str) -> str:
    """``NVIDIA H100 80GB HBM3`` → ``H100 80GB HBM3``: the prefix costs width, says little."""
    for prefix in ("NVIDIA GeForce ", "NVIDIA "):
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix) :]
    return name


def memory_text(used: int | None, total: int | None) -> str:
    """``40/80 GiB``; ``—`` where the source could not say."""
    if used is None or not total:
        return f"{format_mib(used)}/{format_mib(total)}"
    return f"{used / 2**30:.0f}/{total / 2**30:.0f} GiB"


def host_summary(host: HostView | None) -> str:
    """``CPU 12% · RAM 18/64 GiB · worker 1.2 GiB`` for the GPU panel's subtitle (pure)."""
    if host is None:
        return ""
    parts = [f"CPU {format_percent(host.cpu_percent)}"]
    parts.append(f"RAM {memory_text(host.memory_used, host.memory_total)}")
    if host.process_rss is not None:
        parts.append(f"worker {format_mib(host.process_rss)}")
    return " · ".join(parts)


CARD_MIN_HEIGHT = 3
"""Title, utilisation plot, memory plot: one line each."""


class GpuCard(Vertical):
    """One GPU: title line, utilisation plot, memory plot."""

    def __init__(self, view: GpuView) -> None:
        super().__init__(id=f"gpu-{view.index}", classes="gpu-card")
        self._view = view

    def compose(self) -> ComposeResult:
        yield Static(gpu_title(self._view), classes="gpu-title")
        with Horizontal(classes="gpu-row"):
            yield Static(util_label(self._view), classes="gpu-label util-label")
            yield Plot(maximum=100.0, gradient=True, classes="util")
        with Horizontal(classes="gpu-row"):
            yield Static(mem_label(self._view), classes="gpu-label mem-label")
            yield Plot(maximum=100.0, gradient=True, classes="mem")

    def show(self, view: GpuView, metrics: MetricsView, window_s: float) -> None:
        self._view = view
        self.query_one(".gpu-title", Static).update(gpu_title(view))
        self.query_one(".util-label", Static).update(util_label(view))
        self.query_one(".mem-label", Static).update(mem_label(view))
        for name, series in (("util", "utilization"), ("mem", "memory")):
            plot = self.query_one(f".{name}", Plot)
            plot.points = metrics.gpu_series(view.index, series)
            plot.end_ts = metrics.end_ts
            plot.window_s = window_s
        level = load_level(view.utilization)
        for name in ("light", "moderate", "heavy"):
            self.set_class(name == level, f"-{name}")


class GpuPanel(VerticalScroll):
    """All GPUs, one card each."""

    async def show(self, gpus: Sequence[GpuView], metrics: MetricsView, window_s: float) -> None:
        cards = {card.id: card for card in self.query(GpuCard)}
        wanted = {f"gpu-{view.index}": view for view in gpus}
        for card_id, card in cards.items():
            if card_id not in wanted:
                await card.remove()
        for card_id, view in wanted.items():
            if card_id in cards:
                cards[card_id].show(view, metrics, window_s)
            else:
                card = GpuCard(view)
                await self.mount(card)
                card.show(view, metrics, window_s)
        self._size_cards()

    def on_resize(self) -> None:
        self._size_cards()

    def _size_cards(self) -> None:
        """Share the height: each card gets an equal part, at least its three lines."""
        cards = list(self.query(GpuCard))
        if not cards:
            return
        share = max(CARD_MIN_HEIGHT, self.content_size.height // len(cards))
        for card in cards:
            card.styles.height = share

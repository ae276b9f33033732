"""GPU panel: one card per GPU with utilisation and memory sparklines over the last minutes."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Label, Sparkline, Static

from pendra_tui.dashboard_model import GpuView, sparkline_window
from pendra_tui.formatting import format_mib, format_percent, format_power, format_temperature

SPARK_WIDTH = 60
"""Samples drawn per sparkline (the widget squeezes them into the width it has)."""


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
    """``util  42%`` — the label of the utilisation sparkline."""
    return f"util {format_percent(view.utilization):>4}"


def mem_label(view: GpuView) -> str:
    """``mem 40/80 GiB`` — the label of the memory sparkline."""
    return f"mem {memory_text(view)}"


def short_gpu_name(name: str) -> str:
    """``NVIDIA H100 80GB HBM3`` → ``H100 80GB HBM3``: the prefix costs width, says little."""
    for prefix in ("NVIDIA GeForce ", "NVIDIA "):
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix) :]
    return name


def memory_text(view: GpuView) -> str:
    """``40/80 GiB``; ``—`` where NVML could not say."""
    if view.memory_used is None or not view.memory_total:
        return f"{format_mib(view.memory_used)}/{format_mib(view.memory_total)}"
    return f"{view.memory_used / 2**30:.0f}/{view.memory_total / 2**30:.0f} GiB"


class GpuCard(Vertical):
    """One GPU: title line, utilisation sparkline, memory sparkline."""

    def __init__(self, view: GpuView) -> None:
        super().__init__(id=f"gpu-{view.index}", classes="gpu-card")
        self._view = view

    def compose(self) -> ComposeResult:
        yield Static(gpu_title(self._view), classes="gpu-title")
        with Horizontal(classes="gpu-row"):
            yield Label(util_label(self._view), classes="gpu-label util-label")
            yield Sparkline(sparkline_window(self._view.util_history, SPARK_WIDTH), classes="util")
        with Horizontal(classes="gpu-row"):
            yield Label(mem_label(self._view), classes="gpu-label mem-label")
            yield Sparkline(sparkline_window(self._view.mem_history, SPARK_WIDTH), classes="mem")

    def show(self, view: GpuView) -> None:
        self._view = view
        self.query_one(".gpu-title", Static).update(gpu_title(view))
        self.query_one(".util-label", Label).update(util_label(view))
        self.query_one(".mem-label", Label).update(mem_label(view))
        self.query_one(".util", Sparkline).data = sparkline_window(view.util_history, SPARK_WIDTH)
        self.query_one(".mem", Sparkline).data = sparkline_window(view.mem_history, SPARK_WIDTH)
        level = load_level(view.utilization)
        for name in ("light", "moderate", "heavy"):
            self.set_class(name == level, f"-{name}")


class GpuPanel(VerticalScroll):
    """All GPUs; with none, says that models run on the CPU."""

    def compose(self) -> ComposeResult:
        yield Static("No GPU detected: models run on the CPU.", id="no-gpu")

    async def show(self, gpus: Sequence[GpuView]) -> None:
        self.query_one("#no-gpu").display = not gpus
        cards = {card.id: card for card in self.query(GpuCard)}
        wanted = {f"gpu-{view.index}": view for view in gpus}
        for card_id, card in cards.items():
            if card_id not in wanted:
                await card.remove()
        for card_id, view in wanted.items():
            if card_id in cards:
                cards[card_id].show(view)
            else:
                card = GpuCard(view)
                await self.mount(card)
                card.show(view)

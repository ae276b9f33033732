"""Installs with progress bars, rate and ETA (the worker computes rate and ETA)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import ProgressBar, Static

from pendra_tui.dashboard_model import InstallView
from pendra_tui.formatting import format_duration, format_progress, format_rate, install_eta


def install_line(view: InstallView) -> Text:
    """``qwen3:8b → pendra  downloading`` and, while it runs, a second line
    ``1.2/5.0 GB  45 MB/s  ETA 1m 24s`` (pure)."""
    text = Text.assemble((view.ref, "bold"), f" → {view.backend}  ")
    style = {
        "failed": "red",
        "error": "red",
        "done": "green",
        "removed": "green",
        "cancelled": "yellow",
    }
    text.append(view.phase, style=style.get(view.phase, "cyan"))
    if view.error:
        text.append(f"  {view.error}", style="red")
        if view.hint:
            text.append(f"  → {view.hint}")
        return text
    if view.finished or (view.phase == "queued" and not view.bytes_done):
        return text  # a queued install has nothing to measure yet
    # The numbers go on their own line: wrapped after the phase they would break mid-value
    # ("48.2 / MB/s") in a panel as narrow as 80 columns leave it.
    text.append(f"\n{format_progress(view.bytes_done, view.bytes_total)}")
    text.append(f"  {format_rate(view.rate_bps)}")
    eta = (
        view.eta_s
        if view.eta_s is not None
        else install_eta(view.bytes_done, view.bytes_total, view.rate_bps)
    )
    if eta is not None:
        text.append(f"  ETA {format_duration(eta)}")
    return text


def row_id(view: InstallView) -> str:
    """A widget id for a ref+backend (ids allow only letters, digits, - and _)."""
    raw = f"{view.ref}-{view.backend}"
    return "install-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in raw)


class InstallRow(Vertical):
    """One install: its line and a progress bar (indeterminate until the size is known)."""

    def __init__(self, view: InstallView) -> None:
        super().__init__(id=row_id(view), classes="install-row")
        self._view = view

    def compose(self) -> ComposeResult:
        yield Static(install_line(self._view), classes="install-line")
        yield ProgressBar(total=None, show_eta=False, classes="install-bar")

    def show(self, view: InstallView) -> None:
        self._view = view
        self.query_one(".install-line", Static).update(install_line(view))
        bar = self.query_one(ProgressBar)
        bar.display = not view.finished and not (view.phase == "queued" and not view.bytes_done)
        if view.bytes_total:
            bar.update(total=view.bytes_total, progress=view.bytes_done)
        self.set_class(view.phase in {"failed", "error"}, "-failed")


class InstallsPanel(VerticalScroll):
    """The installs the worker reports, newest last."""

    def compose(self) -> ComposeResult:
        yield Static("No installs running. Press i to install a model.", id="no-installs")

    async def show(self, installs: Sequence[InstallView]) -> None:
        self.query_one("#no-installs").display = not installs
        rows = {row.id: row for row in self.query(InstallRow)}
        wanted = {row_id(view): view for view in installs}
        for rid, row in rows.items():
            if rid not in wanted:
                await row.remove()
        for rid, view in wanted.items():
            if rid in rows:
                rows[rid].show(view)
            else:
                row = InstallRow(view)
                await self.mount(row)
                row.show(view)

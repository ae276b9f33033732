"""Request counters: in flight, served, failed, tokens per second."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import Static

from pendra_tui.dashboard_model import RequestsView
from pendra_tui.formatting import format_count, format_tokens_per_s


def requests_table(view: RequestsView) -> Table:
    """A two-column grid of the counters (pure)."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_row("in flight", format_count(view.in_flight))
    table.add_row("served", format_count(view.served))
    table.add_row("failed", f"[red]{format_count(view.failed)}[/]" if view.failed else "0")
    table.add_row("tokens/s", format_tokens_per_s(view.tokens_per_s))  # "184.6"
    return table


class RequestsPanel(Static):
    def show(self, view: RequestsView) -> None:
        self.update(requests_table(view))

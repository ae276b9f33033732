"""The dashboard's backends table, updated by row key (no flicker, cursor stays put)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable

from pendra_tui.dashboard_model import BackendView, capability_summary

COLUMNS = ("backend", "status", "endpoint", "models", "capabilities")


def backend_cells(view: BackendView) -> tuple[str, str, str, str, str]:
    """One row's cells (pure)."""
    builtin = view.name == "pendra"
    return (
        "pendra (built-in)" if builtin else view.name,
        view.status,
        view.endpoint or ("in-process" if builtin else "—"),
        str(len(view.models)),
        capability_summary(view.capabilities),
    )


class BackendsTable(DataTable[str]):
    """Backends with status, endpoint, model count and capabilities."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        for name in COLUMNS:
            self.add_column(name, key=name)

    def show(self, backends: Sequence[BackendView]) -> None:
        """Diff the rows against ``backends`` by name: remove, update changed cells, add."""
        wanted = {view.name: backend_cells(view) for view in backends}
        for key in [k for k in self.rows if k.value not in wanted]:
            self.remove_row(key)
        existing = {k.value for k in self.rows}
        for name, cells in wanted.items():
            if name in existing:
                for column, value in zip(COLUMNS, cells, strict=True):
                    if self.get_cell(name, column) != value:
                        self.update_cell(name, column, value)
            else:
                self.add_row(*cells, key=name)

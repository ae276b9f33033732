"""The dashboard's backends table, updated by row key (no flicker, cursor stays put).

Only backends the worker has are rows: the built-in one and every external backend with an
endpoint (found, or configured and failing). Kinds switched off or never found are counted in
the panel's subtitle instead of filling the table with "disabled" rows. Columns that do not fit
the panel are dropped, least telling first, instead of a horizontal scrollbar eating a row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from textual import events
from textual.widgets import DataTable

from pendra_tui.dashboard_model import BackendView, capability_summary

COLUMNS = ("backend", "status", "endpoint", "models", "capabilities")
DROP_ORDER = ("capabilities", "models", "endpoint")
"""Which columns give way first when the panel is too narrow for all of them."""
CELL_PADDING = 2
"""DataTable pads each cell by one column on either side."""


def backend_cells(view: BackendView) -> tuple[str, str, str, str, str]:
    """One row's cells (pure)."""
    builtin = view.name == "pendra"
    return (
        "pendra (built-in)" if builtin else view.name,
        view.status,
        view.endpoint or ("in-process" if builtin else "—"),
        models_cell(view),
        capability_summary(view.capabilities),
    )


def models_cell(view: BackendView) -> str:
    """How many models it serves, and how many files it cannot (pure): ``2`` or ``2 (+1 bad)``;
    the Installs panel names each bad file with the reason."""
    count = str(len(view.models))
    return f"{count} (+{len(view.unusable)} bad)" if view.unusable else count


def shown_backends(backends: Sequence[BackendView]) -> tuple[list[BackendView], str]:
    """The rows worth a line, and a note counting the rest (pure).

    Shown: the built-in backend and any backend with an endpoint. Left out: kinds that are off
    (``disabled``) and kinds auto-discovery did not find (no endpoint).
    """
    shown = [b for b in backends if b.name == "pendra" or (b.endpoint and b.status != "disabled")]
    off = sum(1 for b in backends if b not in shown and b.status == "disabled")
    missing = sum(1 for b in backends if b not in shown and b.status != "disabled")
    parts = [f"{missing} not found"] if missing else []
    if off:
        parts.append(f"{off} off")
    return shown, " · ".join(parts)


def fit_columns(widths: Mapping[str, int], available: int) -> list[str]:
    """The columns to show in ``available`` cells: all of them when they fit, else without the
    ones in :data:`DROP_ORDER`, one at a time (pure)."""
    columns = list(COLUMNS)
    for name in DROP_ORDER:
        if sum(widths.get(c, 0) + CELL_PADDING for c in columns) <= available:
            break
        columns.remove(name)
    return columns


def column_widths(rows: Sequence[tuple[str, ...]]) -> dict[str, int]:
    """Widest cell (or header) per column (pure)."""
    return {
        name: max([len(name), *(len(row[i]) for row in rows)]) for i, name in enumerate(COLUMNS)
    }


class BackendsTable(DataTable[str]):
    """Backends with status, endpoint, model count and capabilities."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self._cells: dict[str, tuple[str, ...]] = {}
        self._columns: list[str] = []

    def on_mount(self) -> None:
        self._layout()

    def on_resize(self, _event: events.Resize) -> None:
        self._layout()

    def show(self, backends: Sequence[BackendView]) -> None:
        """Diff the rows against ``backends`` by name: remove, update changed cells, add."""
        shown, note = shown_backends(backends)
        self.border_subtitle = note or None
        self._cells = {view.name: backend_cells(view) for view in shown}
        if not self._layout():
            self._diff()

    def _layout(self) -> bool:
        """Pick the columns for the current width; rebuild the table when they changed."""
        available = self.scrollable_content_region.width or self.size.width
        if available <= 0:
            return False
        columns = fit_columns(column_widths(list(self._cells.values())), available)
        if columns == self._columns:
            return False
        self._columns = columns
        self.clear(columns=True)
        for name in columns:
            self.add_column(name, key=name)
        self._diff()
        return True

    def _diff(self) -> None:
        if not self._columns:
            return
        index = [COLUMNS.index(c) for c in self._columns]
        wanted = {name: tuple(cells[i] for i in index) for name, cells in self._cells.items()}
        for key in [k for k in self.rows if k.value not in wanted]:
            self.remove_row(key)
        existing = {k.value for k in self.rows}
        for name, cells in wanted.items():
            if name in existing:
                for column, value in zip(self._columns, cells, strict=True):
                    if self.get_cell(name, column) != value:
                        self.update_cell(name, column, value)
            else:
                self.add_row(*cells, key=name)

"""The one table every list in the app uses: sortable, filterable, updated by row key.

Keys are the same in every table: ``s`` sorts by the next column, ``S`` reverses the order, a
click on a header sorts by that column (again: reversed); the screen's ``/`` sets
:attr:`SortableTable.filter_text`. Rows are given as cells *and* sort values, so sizes and
durations sort as numbers, not as text; unknown values sort last either way.

Updates diff by row key: changed cells are updated in place and the cursor stays on its row,
even when the order changes. Columns that do not fit the width are left out, least telling
first (each column's ``drop`` rank), instead of a horizontal scrollbar eating a row.

Column widths are measured here and given to the DataTable explicitly: its own auto-width is
computed after a first render is already cached, which showed every model as "gemma" (the
column as wide as its header) until the cursor moved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual import events, on
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable

CELL_PADDING = 2
"""DataTable pads each cell by one column on either side."""
SORT_MARKS = {False: " ▲", True: " ▼"}


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    drop: int = 0
    """0: always shown; otherwise columns with higher numbers give way first when narrow."""
    numeric: bool = False
    """Right-aligned, and sorted largest first the first time it is chosen."""


@dataclass(frozen=True)
class Row:
    key: str
    cells: Mapping[str, str | Text]
    sort: Mapping[str, Any] = field(default_factory=dict)
    """What each column sorts by; a column missing here sorts by its cell text."""


def plain(cell: str | Text) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def sort_rows(rows: Sequence[Row], column: str, reverse: bool) -> list[Row]:
    """Rows ordered by ``column`` (pure): stable, unknown (``None``) values last in both
    directions, mixed types compared as text."""

    def value(row: Row) -> Any:
        if column in row.sort:
            return row.sort[column]
        cell = row.cells.get(column)
        return None if cell is None else plain(cell).lower()

    known = [row for row in rows if value(row) is not None]
    unknown = [row for row in rows if value(row) is None]
    try:
        known.sort(key=value, reverse=reverse)
    except TypeError:
        known.sort(key=lambda row: str(value(row)), reverse=reverse)
    return known + unknown


def filter_rows(rows: Sequence[Row], query: str) -> list[Row]:
    """Rows whose cells contain every word of ``query``, any case (pure)."""
    words = query.lower().split()
    if not words:
        return list(rows)
    return [
        row
        for row in rows
        if all(word in " ".join(plain(c) for c in row.cells.values()).lower() for word in words)
    ]


def fit_columns(columns: Sequence[Column], widths: Mapping[str, int], available: int) -> list[str]:
    """The keys of the columns to show in ``available`` cells (pure): all when they fit, else
    without the highest ``drop`` ranks, one at a time."""
    shown = list(columns)
    droppable = sorted((c for c in columns if c.drop), key=lambda c: -c.drop)
    for column in droppable:
        if sum(widths.get(c.key, 0) + CELL_PADDING for c in shown) <= available:
            break
        shown.remove(column)
    return [c.key for c in shown]


class SortableTable(DataTable[Any]):
    """A row-cursor table of :class:`Row`\\ s with the app's sort and filter keys."""

    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    """The table's columns, in display order."""
    DEFAULT_SORT: ClassVar[tuple[str, bool]] = ("", False)
    """``(column, reversed)`` until the user picks another; an empty column keeps row order."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sort_next", "Sort"),
        Binding("S", "sort_reverse", "Reverse", show=False),
    ]

    class Sorted(Message):
        """The order changed (a key or a header click): status lines say how it is sorted."""

        def __init__(self, table: SortableTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> SortableTable:
            return self.table

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self.sort_column, self.sort_reversed = self.DEFAULT_SORT
        self.filter_text = ""
        """Only rows containing every word of this are shown (set by the screen's ``/``)."""
        self._rows: list[Row] = []
        self._shown_columns: list[str] = []
        self._shown_widths: dict[str, int] = {}
        self._shown_keys: list[str] = []
        self._shown_cells: dict[str, dict[str, str | Text]] = {}

    # -- data ------------------------------------------------------------------------------------
    def show(self, rows: Sequence[Row]) -> None:
        """Replace the rows; the view updates in place where it can."""
        self._rows = list(rows)
        self._refresh_view()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._refresh_view()

    @property
    def row_keys_shown(self) -> list[str]:
        """The keys of the rows on screen, in screen order."""
        return list(self._shown_keys)

    @property
    def total_rows(self) -> int:
        return len(self._rows)

    def current_key(self) -> str | None:
        """The key of the row under the cursor."""
        if not self._shown_keys or self.cursor_row < 0:
            return None
        return self._shown_keys[min(self.cursor_row, len(self._shown_keys) - 1)]

    # -- sorting ---------------------------------------------------------------------------------
    def column_by_key(self, key: str) -> Column | None:
        return next((c for c in self.COLUMNS if c.key == key), None)

    def sort_by(self, key: str, reverse: bool | None = None) -> None:
        column = self.column_by_key(key)
        if column is None:
            return
        if reverse is None:
            reverse = (not self.sort_reversed) if key == self.sort_column else column.numeric
        self.sort_column, self.sort_reversed = key, reverse
        self._refresh_view(rebuild=True)
        self.post_message(self.Sorted(self))

    def action_sort_next(self) -> None:
        """Sort by the next column that is on screen."""
        keys = self._shown_columns or [c.key for c in self.COLUMNS]
        if not keys:
            return
        index = keys.index(self.sort_column) + 1 if self.sort_column in keys else 0
        chosen = keys[index % len(keys)]
        column = self.column_by_key(chosen)
        self.sort_by(chosen, reverse=bool(column and column.numeric))

    def action_sort_reverse(self) -> None:
        if not self.sort_column:
            first = self._shown_columns[0] if self._shown_columns else ""
            self.sort_by(first, reverse=True)
            return
        self.sort_by(self.sort_column, reverse=not self.sort_reversed)

    @on(DataTable.HeaderSelected)
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    def sort_description(self) -> str:
        """``sorted by memory ▼`` for a status line; empty when in the worker's own order."""
        column = self.column_by_key(self.sort_column)
        if column is None:
            return ""
        return f"sorted by {column.label}{SORT_MARKS[self.sort_reversed]}"

    # -- rendering -------------------------------------------------------------------------------
    def on_resize(self, _event: events.Resize) -> None:
        self._refresh_view()

    def on_mount(self) -> None:
        self._refresh_view(rebuild=True)

    def _ordered(self) -> list[Row]:
        rows = filter_rows(self._rows, self.filter_text)
        if self.sort_column:
            rows = sort_rows(rows, self.sort_column, self.sort_reversed)
        return rows

    def _widths(self) -> dict[str, int]:
        widths: dict[str, int] = {}
        for column in self.COLUMNS:
            cells = [plain(row.cells.get(column.key, "")) for row in self._rows]
            label = cell_len(column.label) + cell_len(SORT_MARKS[False])
            widths[column.key] = max([label, *(cell_len(cell) for cell in cells)])
        return widths

    def _label(self, column: Column) -> Text:
        mark = SORT_MARKS[self.sort_reversed] if column.key == self.sort_column else ""
        return Text(column.label + mark, justify="right" if column.numeric else "left")

    def _cell(self, column: Column, row: Row) -> str | Text:
        cell = row.cells.get(column.key, "")
        if column.numeric and not isinstance(cell, Text):
            return Text(str(cell), justify="right")
        return cell

    def _refresh_view(self, *, rebuild: bool = False) -> None:
        available = self.scrollable_content_region.width or self.size.width
        if available <= 0:
            return
        widths = self._widths()
        columns = fit_columns(self.COLUMNS, widths, available)
        ordered = self._ordered()
        keys = [row.key for row in ordered]
        widths = {key: widths[key] for key in columns}
        if rebuild or columns != self._shown_columns or widths != self._shown_widths:
            self._rebuild(columns, widths, ordered)
            return
        if keys != self._shown_keys:
            self._rebuild(columns, widths, ordered, keep_columns=True)
            return
        by_column = {c.key: c for c in self.COLUMNS}
        for row in ordered:
            before = self._shown_cells.get(row.key, {})
            for key in columns:
                cell = self._cell(by_column[key], row)
                if plain(before.get(key, "")) != plain(cell):
                    self.update_cell(row.key, key, cell)
            self._shown_cells[row.key] = {k: self._cell(by_column[k], row) for k in columns}

    def _rebuild(
        self,
        columns: list[str],
        widths: dict[str, int],
        ordered: list[Row],
        keep_columns: bool = False,
    ) -> None:
        cursor_key = self.current_key()
        by_column = {c.key: c for c in self.COLUMNS}
        if keep_columns:
            self.clear()
        else:
            self.clear(columns=True)
            for key in columns:
                self.add_column(self._label(by_column[key]), key=key, width=widths[key])
        self._shown_columns = columns
        self._shown_widths = widths
        self._shown_cells = {}
        for row in ordered:
            cells = [self._cell(by_column[key], row) for key in columns]
            self.add_row(*cells, key=row.key)
            self._shown_cells[row.key] = dict(zip(columns, cells, strict=True))
        self._shown_keys = [row.key for row in ordered]
        if cursor_key in self._shown_keys:
            self.move_cursor(row=self._shown_keys.index(cursor_key), animate=False)

"""The recent-requests table: model, backend, tokens in/out, TTFT, tok/s, outcome, duration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text

from pendra_tui.request_rows import RequestView, row_cells, row_sort_values
from pendra_tui.widgets.sortable_table import Column, Row, SortableTable

STATUS_STYLES = {"running": "cyan", "ok": "green", "failed": "red", "cancelled": "yellow"}


def request_table_row(view: RequestView, now_wall: float) -> Row:
    cells: dict[str, str | Text] = dict(row_cells(view, now_wall))
    cells["status"] = Text(str(cells["status"]), style=STATUS_STYLES.get(view.status, ""))
    return Row(key=view.id, cells=cells, sort=row_sort_values(view, now_wall))


class RequestsTable(SortableTable):
    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("age", "age", numeric=True),
        Column("model", "model"),
        Column("backend", "backend", drop=4),
        Column("kind", "kind", drop=6),
        Column("in", "in", drop=3, numeric=True),
        Column("out", "out", numeric=True),
        Column("ttft", "TTFT", drop=2, numeric=True),
        Column("rate", "tok/s", numeric=True),
        Column("status", "status"),
        Column("time", "time", drop=5, numeric=True),
    )
    DEFAULT_SORT: ClassVar[tuple[str, bool]] = ("age", False)
    """Newest first."""

    def show_requests(self, views: Sequence[RequestView], now_wall: float) -> None:
        self.show([request_table_row(view, now_wall) for view in views])

"""The models panel: what each backend has loaded (memory, KV cache, slots, idle-unload
countdown), what is installed but not loaded, and files that cannot be served, with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text

from pendra_tui.model_rows import ModelRow, row_cells, row_sort_values
from pendra_tui.widgets.sortable_table import Column, Row, SortableTable

STATE_STYLES = {"ready": "green", "loading": "yellow", "installed": "", "unusable": "red"}


def model_table_row(row: ModelRow, now: float) -> Row:
    cells: dict[str, str | Text] = dict(row_cells(row, now))
    cells["state"] = Text(str(cells["state"]), style=STATE_STYLES.get(row.state, ""))
    return Row(key=row.key, cells=cells, sort=row_sort_values(row, now))


class ModelsTable(SortableTable):
    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("model", "model"),
        Column("backend", "backend", drop=3),
        Column("state", "state"),
        Column("memory", "memory", numeric=True),
        Column("kv", "KV cache", drop=4, numeric=True),
        Column("slots", "slots", drop=2, numeric=True),
        Column("unload", "unloads in", drop=1, numeric=True),
        Column("ctx", "ctx", drop=5, numeric=True),
    )
    DEFAULT_SORT: ClassVar[tuple[str, bool]] = ("state", False)

    def show_models(self, rows: Sequence[ModelRow], now: float) -> None:
        self.show([model_table_row(row, now) for row in rows])

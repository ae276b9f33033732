"""The public catalogue: filter as you type, task filter, variants with fit, multi-select.

Used twice: as setup step 3, and from the dashboard (``pick=True``) where it returns the chosen
refs to install.
"""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Select, Static

from pendra_tui.catalogue_rows import TASKS, CatalogueRow, filter_rows, next_task
from pendra_tui.formatting import format_bytes, format_context, format_duration, verdict_label
from pendra_tui.screens.setup_step import SetupStep
from pendra_tui.services import CatalogueData
from pendra_tui.widgets.inputs import steady_input

COLUMNS = ("✓", "model", "task", "params", "quant", "size", "ctx", "fit", "backends")
"""Most telling first: the ref people type, then what decides the choice; backends (the widest)
last so at 80 columns it is the one that scrolls off."""


def row_cells(row: CatalogueRow, selected: bool) -> tuple[str, ...]:
    """Table cells of one variant (pure)."""
    return (
        "●" if selected else " ",
        row.ref,
        row.task,
        row.parameters or "—",
        row.quantisation or "—",
        format_bytes(row.size_bytes),
        format_context(row.context_length),
        verdict_label(row.verdict),
        " ".join(row.backends) or "—",
    )


class CatalogueScreen(SetupStep):
    """Pick models to install."""

    STEP = "catalogue"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle", "Select", show=True),
        Binding("ctrl+t", "next_task", "Task filter"),
        Binding("ctrl+f", "focus_filter", "Filter"),
    ]

    def __init__(self, *, pick: bool = False, available: list[str] | None = None) -> None:
        super().__init__()
        self.pick = pick
        """True when opened from the dashboard: returns the refs instead of going on."""
        self.available = available
        """Backends that can install here (``None``: take them from the setup choices)."""
        self._rows: list[CatalogueRow] = []
        self._shown: list[CatalogueRow] = []
        self._selected: list[str] = []
        """Chosen refs; in setup mode the app's own list, so Back and Forward keep it."""
        self._status_note = ""
        self._load_error: str | None = None
        """Why the catalogue is not shown; stays up until a load succeeds."""

    def body(self) -> ComposeResult:
        with Horizontal(id="catalogue-filters"):
            yield steady_input(
                self.app,
                placeholder="filter: name, size, quantisation, backend…",
                id="filter",
            )
            yield Select(
                [("all tasks", "all"), *((task, task) for task in TASKS)],
                value="all",
                allow_blank=False,
                id="task",
            )
        yield Static("Loading the catalogue…", id="catalogue-status")
        yield DataTable(id="catalogue", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        super().on_mount()
        if self.pick:
            for indicator in self.query(".steps-wide, .steps-narrow").results(Static):
                indicator.update("[b]Install models[/b]")
            self.query_one("#next").label = "Install selected"
            self.query_one("#back").label = "Cancel"
            self.query_one("#back").display = True
        else:
            self._selected = self.app.setup.selected
        table = self.query_one("#catalogue", DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        cached = None if self.pick else self.app.setup.catalogue
        if cached is not None:
            self._loaded(cached)
        else:
            self._load()
        table.focus()

    @work(exclusive=True, group="catalogue", exit_on_error=False)
    async def _load(self) -> None:
        from worker.errors import PendraError

        try:
            data = await self.app.services.catalogue.load()
        except (PendraError, OSError) as exc:
            self._load_error = (
                f"[red]The catalogue could not be loaded:[/] {escape(str(exc))}\n"
                "You can continue and install models later from the dashboard (i) or with "
                "`pendra models install REF`."
            )
            self._update_status()
            return
        self._loaded(data)

    def _loaded(self, data: CatalogueData) -> None:
        if not self.pick:
            self.app.setup.catalogue = data
        self._rows = data.rows
        self._load_error = None
        note = ""
        if data.cached:
            age = f" from {format_duration(data.age_s)} ago" if data.age_s is not None else ""
            note = f"  [yellow]offline: showing the cached catalogue{age}[/]"
        self._status_note = note
        self._apply_filter()

    # -- filtering and selection ---------------------------------------------------------------
    @property
    def task(self) -> str | None:
        value = self.query_one("#task", Select).value
        return None if value in ("all", Select.NULL) else str(value)

    @on(Input.Changed, "#filter")
    @on(Select.Changed, "#task")
    def _apply_filter(self) -> None:
        self._shown = filter_rows(self._rows, self.query_one("#filter", Input).value, self.task)
        table = self.query_one("#catalogue", DataTable)
        table.clear()
        for row in self._shown:
            table.add_row(*row_cells(row, row.ref in self._selected), key=row.ref)
        self._update_status()

    def _update_status(self) -> None:
        if self._load_error:
            self.query_one("#catalogue-status", Static).update(self._load_error)
            self.refresh_blocked()
            return
        count = len(self._selected)
        chosen = f"{count} selected" + (f": {', '.join(self._selected)}" if count else "")
        shown = f"{len(self._shown)} of {len(self._rows)} variants"
        self.query_one("#catalogue-status", Static).update(f"{shown} · {chosen}{self._status_note}")
        self.refresh_blocked()

    def action_next_task(self) -> None:
        select = self.query_one("#task", Select)
        select.value = next_task(self.task) or "all"

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_toggle(self) -> None:
        table = self.query_one("#catalogue", DataTable)
        if not self._shown or table.cursor_row < 0:
            return
        row = self._shown[min(table.cursor_row, len(self._shown) - 1)]
        if row.ref in self._selected:
            self._selected.remove(row.ref)
        else:
            self._selected.append(row.ref)
        table.update_cell(row.ref, "✓", "●" if row.ref in self._selected else " ")
        self._update_status()

    @on(DataTable.RowSelected, "#catalogue")
    def _row_chosen(self) -> None:
        self.action_toggle()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#catalogue", DataTable).focus()

    # -- navigation ----------------------------------------------------------------------------
    def blocked_reason(self) -> str | None:
        if self.pick and not self._selected:
            return "Select at least one model (space or enter on a row)."
        return None

    async def proceed(self) -> None:
        if self.pick:
            self.dismiss(list(self._selected))
        else:
            await super().proceed()

    def action_back(self) -> None:
        if self.pick:
            self.dismiss(None)
        else:
            super().action_back()

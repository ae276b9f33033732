"""The public catalogue: filter as you type, task filter, variants with fit, multi-select.

Used twice: as setup step 3, and from the dashboard (``pick=True``) where it returns the chosen
refs to install.
"""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Select, Static

from pendra_tui.catalogue_rows import (
    TASKS,
    CatalogueRow,
    default_backend,
    filter_rows,
    next_task,
)
from pendra_tui.catalogue_source import WORKER
from pendra_tui.formatting import format_bytes, format_context, format_duration, verdict_label
from pendra_tui.screens.setup_step import SetupStep
from pendra_tui.services import CatalogueData
from pendra_tui.widgets.inputs import steady_input
from pendra_tui.widgets.sortable_table import Column, Row, SortableTable

FIT_ORDER = {"gpu": 0, "partial": 1, "cpu": 2, "no": 3}
"""How the fit column sorts: what runs best here first."""

BACKEND_NAMES = {
    "pendra": "built-in",
    "ollama": "Ollama",
    "lmstudio": "LM Studio",
    "speaches": "Speaches",
    "vllm": "vLLM",
}


def needs_backend(row: CatalogueRow, available: list[str] | None) -> str | None:
    """``"Ollama"`` when ``row`` installs only on backends that are not running here (pure);
    ``None`` when one is (or while it is not known yet)."""
    if available is None or default_backend(row, available) is not None:
        return None
    names = [BACKEND_NAMES.get(name, name) for name in row.backends]
    return " / ".join(names) if names else "a backend"


def fit_cell(row: CatalogueRow, available: list[str] | None) -> Text:
    """The fit column: the verdict for this machine, or which backend the model needs."""
    needed = needs_backend(row, available)
    if needed is not None:
        return Text(f"✗ needs {needed}", style="dim red")
    return Text(verdict_label(row.verdict))


def parameter_count(text: str | None) -> float | None:
    """``"8B"`` → 8e9, ``"270M"`` → 2.7e8: so the params column sorts by size (pure)."""
    if not text:
        return None
    units = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
    try:
        return float(text[:-1]) * units[text[-1].upper()]
    except (KeyError, ValueError):
        return None


def catalogue_row(row: CatalogueRow, selected: bool, available: list[str] | None) -> Row:
    """One table row of a variant (pure)."""
    cells: dict[str, str | Text] = {
        "sel": "●" if selected else " ",
        "model": row.ref,
        "task": row.task,
        "params": row.parameters or "—",
        "quant": row.quantisation or "—",
        "size": format_bytes(row.size_bytes),
        "ctx": format_context(row.context_length),
        "fit": fit_cell(row, available),
        "backends": " ".join(row.backends) or "—",
    }
    unavailable = needs_backend(row, available) is not None
    return Row(
        key=row.ref,
        cells=cells,
        sort={
            "sel": 0 if selected else 1,
            "size": row.size_bytes,
            "ctx": row.context_length,
            "params": parameter_count(row.parameters),
            "fit": 9 if unavailable else FIT_ORDER.get(row.verdict or "", 5),
        },
    )


def cached_note(data: CatalogueData) -> str:
    """What the status line says about a cached copy (pure): whose copy, how old, and why the
    fresh one could not be had; empty for a fresh catalogue."""
    if not data.cached:
        return ""
    whose = "the worker's cached catalogue" if data.source == WORKER else "the cached catalogue"
    age = f" from {format_duration(data.age_s)} ago" if data.age_s is not None else ""
    note = f"  [yellow]offline: showing {whose}{age}[/]"
    if data.stale_reason:
        note += f"\n[dim]{escape(data.stale_reason)}[/]"
    return note


def catalogue_error(reason: str, *, pick: bool) -> str:
    """What to do when the catalogue cannot be loaded, for where the user is (pure): in setup,
    go on and install later; in the dashboard's install dialog, try again or install by name."""
    head = f"[red]The catalogue could not be loaded:[/] {escape(reason)}\n"
    if pick:
        return head + (
            "Press esc, then i to try again once the control plane answers (the bar at the top "
            "says whether it does), or install by name: `pendra models install REF`."
        )
    return head + (
        "You can go on: install models later from the dashboard (key i) or with "
        "`pendra models install REF`."
    )


def install_blocked_reason(*, selected: int, loaded: bool, failed: bool) -> str | None:
    """Why the install dialog's "Install selected" is refused (pure): nothing chosen yet, and
    while the catalogue is loading or after it failed to load, nothing can be."""
    if selected:
        return None
    if failed:
        return "Nothing to install until the catalogue loads."
    if not loaded:
        return "Loading the catalogue…"
    return "Select at least one model (space or enter on a row)."


class CatalogueTable(SortableTable):
    """Variants: the ref people type first, then what decides the choice; on a narrow terminal
    the backends, parameters and task give way before the fit verdict does."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("sel", "✓"),
        Column("model", "model"),
        Column("task", "task", drop=4),
        Column("params", "params", drop=5, numeric=True),
        Column("quant", "quant", drop=3),
        Column("size", "size", numeric=True),
        Column("ctx", "ctx", drop=2, numeric=True),
        Column("fit", "fit"),
        Column("backends", "backends", drop=6),
    )


class CatalogueScreen(SetupStep):
    """Pick models to install."""

    STEP = "catalogue"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle", "Select", show=True),
        Binding("slash", "focus_filter", "Filter"),
        Binding("ctrl+f", "focus_filter", "Filter", show=False),
        Binding("ctrl+t", "next_task", "Task filter", show=False),
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
        self._catalogue_loaded = False
        """A catalogue (live or cached) has been shown."""

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
        yield CatalogueTable(id="catalogue")

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
            if self.available is None:
                self._find_backends()
        table = self.query_one("#catalogue", CatalogueTable)
        cached = None if self.pick else self.app.setup.catalogue
        if cached is not None:
            self._loaded(cached)
        else:
            self._load()
        table.focus()

    @work(exclusive=True, group="discover", exit_on_error=False)
    async def _find_backends(self) -> None:
        """In setup, which backends answer decides what can be installed: discover them now
        (the Backends step shows the same result instead of looking again)."""
        from pendra_tui.setup_state import usable_backends
        from worker.errors import PendraError

        state = self.app.setup
        if state.candidates is None:
            try:
                found = await self.app.services.backends.discover()
            except (PendraError, OSError, ImportError):
                return  # the Backends step says why; here every model stays selectable
            state.candidates = [c for c in found if c.kind != "pendra"]
        self.available = usable_backends(state)
        self._apply_filter()

    @work(exclusive=True, group="catalogue", exit_on_error=False)
    async def _load(self) -> None:
        from worker.errors import PendraError

        try:
            data = await self.app.services.catalogue.load()
        except (PendraError, OSError) as exc:
            self._load_error = catalogue_error(str(exc), pick=self.pick)
            self._update_status()
            return
        except Exception as exc:  # a broken install or a bug: said here, never a traceback
            self._load_error = catalogue_error(f"{type(exc).__name__}: {exc}", pick=self.pick)
            self._update_status()
            return
        self._loaded(data)

    def _loaded(self, data: CatalogueData) -> None:
        if not self.pick:
            self.app.setup.catalogue = data
        self._rows = data.rows
        self._load_error = None
        self._catalogue_loaded = True
        self._status_note = cached_note(data)
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
        self._show_rows()
        self._update_status()

    def _show_rows(self) -> None:
        table = self.query_one("#catalogue", CatalogueTable)
        table.show(
            [catalogue_row(row, row.ref in self._selected, self.available) for row in self._shown]
        )

    def _update_status(self) -> None:
        if self._load_error:
            self.query_one("#catalogue-status", Static).update(self._load_error)
            self.refresh_blocked()
            return
        count = len(self._selected)
        chosen = f"{count} selected" + (f": {', '.join(self._selected)}" if count else "")
        shown = f"{len(self._shown)} of {len(self._rows)} variants"
        sort = self.query_one("#catalogue", CatalogueTable).sort_description()
        sort = f" · {sort}" if sort else ""
        self.query_one("#catalogue-status", Static).update(
            f"{shown} · {chosen}{sort}{self._status_note}"
        )
        self.refresh_blocked()

    def action_next_task(self) -> None:
        select = self.query_one("#task", Select)
        select.value = next_task(self.task) or "all"

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_toggle(self) -> None:
        table = self.query_one("#catalogue", CatalogueTable)
        key = table.current_key()
        row = next((r for r in self._shown if r.ref == key), None)
        if row is None:
            return
        if row.ref in self._selected:
            self._selected.remove(row.ref)
        else:
            needed = needs_backend(row, self.available)
            if needed is not None:
                self.notify(
                    f"{row.ref} installs with {needed}, and none runs here. Start it (or set "
                    "its endpoint on the Backends step), then choose the model.",
                    title="Not installable here",
                    severity="warning",
                )
                return
            self._selected.append(row.ref)
        self._show_rows()
        self._update_status()

    @on(DataTable.RowSelected, "#catalogue")
    def _row_chosen(self) -> None:
        self.action_toggle()

    @on(SortableTable.Sorted, "#catalogue")
    def _sorted(self) -> None:
        self._update_status()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#catalogue", DataTable).focus()

    # -- navigation ----------------------------------------------------------------------------
    def blocked_reason(self) -> str | None:
        if not self.pick:
            return None
        return install_blocked_reason(
            selected=len(self._selected),
            loaded=self._catalogue_loaded,
            failed=self._load_error is not None,
        )

    async def proceed(self) -> None:
        if self.pick:
            self.dismiss(list(self._selected))
        else:
            await super().proceed()

    def action_back(self) -> None:
        field = self.query_one("#filter", Input)
        if self.focused is field and field.value:
            field.value = ""  # esc in the filter clears it first, like everywhere else
            self.query_one("#catalogue", CatalogueTable).focus()
            return
        if self.pick:
            self.dismiss(None)
        else:
            super().action_back()

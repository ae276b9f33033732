"""Setup step 1: the installer's prerequisite checks.

Failures first, then warnings, then what passed — one line each, so the check that blocks is on
screen at 80×24 however many there are. The check under the cursor is explained in full below
the list (what was found, and the fix to run), its wrapped lines indented under their label.
"""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState

from pendra_tui.formatting import check_mark
from pendra_tui.screens.setup_step import SetupStep
from pendra_tui.services import Check
from pendra_tui.setup_state import blocking_checks
from pendra_tui.widgets.sortable_table import Column, Row, SortableTable

MARK_STYLES = {"ok": "green", "warn": "yellow", "fail": "red"}
SEVERITY = {"fail": 0, "warn": 1, "ok": 2}
"""How the checks sort: what blocks first, what passed last."""
FINDING_WIDTH = 64
"""The list shows the start of each finding; the line under the cursor is explained in full."""


def check_line(check: Check) -> Row:
    """One check as a table row (pure): mark, title, the short finding."""
    mark = Text(check_mark(check.status), style=f"bold {MARK_STYLES.get(check.status, '')}")
    title = Text(check.title, style="bold" if check.status != "ok" else "")
    if check.required and check.status == "fail":
        title.append("  required", style="bold red")
    detail = check.detail.splitlines()[0] if check.detail else ""
    if len(detail) > FINDING_WIDTH:
        detail = detail[: FINDING_WIDTH - 1] + "…"  # in full below the list
    return Row(
        key=check.id,
        cells={"mark": mark, "check": title, "detail": Text(detail, style="dim")},
        sort={"mark": SEVERITY.get(check.status, 3)},
    )


def check_text(check: Check) -> Table:
    """A check in full (pure): mark and title, then what was found and the fix, each label in
    its own column so wrapped lines stay indented under their text."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1)
    title = Text(check.title, style="bold")
    if check.required and check.status == "fail":
        title.append("  required", style="bold red")
    elif not check.required:
        title.append("  optional", style="dim")
    mark = Text(check_mark(check.status), style=f"bold {MARK_STYLES.get(check.status, '')}")
    grid.add_row(mark, title)
    if check.detail:
        grid.add_row("", Text(check.detail, style="dim"))
    if check.fix and check.status != "ok":
        fix = Text.assemble(("fix: ", "bold"), check.fix)
        grid.add_row("", fix)
    return grid


def checks_summary(checks: list[Check]) -> Text:
    """``1 failed · 2 warnings · 10 passed`` with the worst first (pure)."""
    counts = {status: sum(c.status == status for c in checks) for status in SEVERITY}
    text = Text()
    parts = [
        (counts["fail"], "failed", "bold red"),
        (counts["warn"], "warnings" if counts["warn"] != 1 else "warning", "bold yellow"),
        (counts["ok"], "passed", "green"),
    ]
    for number, word, style in parts:
        if text:
            text.append(" · ", style="dim")
        text.append(f"{number} {word}", style=style if number else "dim")
    text.append(f"   ({len(checks)} checks; ↑↓ explains each)", style="dim")
    return text


def blocked_text(failed: list[Check]) -> str | None:
    if not failed:
        return None
    names = ", ".join(check.title for check in failed)
    return f"Cannot continue: required check failed: {names}. Fix it, then press r to re-run."


class ChecksTable(SortableTable):
    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("mark", " "),
        Column("check", "check"),
        Column("detail", "found", drop=1),
    )
    DEFAULT_SORT: ClassVar[tuple[str, bool]] = ("mark", False)


class PrereqScreen(SetupStep):
    """Runs the checks in a thread worker (they start subprocesses) and lists the results."""

    STEP = "prereqs"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "rerun", "Re-run checks")]

    def body(self) -> ComposeResult:
        yield Static("Checking this machine…", id="checks-summary")
        yield ChecksTable(id="checks")
        yield Static("", id="check-detail")

    def on_mount(self) -> None:
        super().on_mount()
        if self.app.setup.checks is None:
            self.action_rerun()
        else:
            self._show(self.app.setup.checks)
        self.query_one(ChecksTable).focus()

    def action_rerun(self) -> None:
        self.query_one("#checks-summary", Static).update("Checking this machine…")
        self._run_checks()

    @work(thread=True, exclusive=True, group="checks", exit_on_error=False)
    def _run_checks(self) -> list[Check]:
        return self.app.services.checks.run()

    @on(Worker.StateChanged)
    def _checks_done(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "checks":
            return
        if event.state == WorkerState.SUCCESS:
            self.app.setup.checks = list(event.worker.result or [])
            self._show(self.app.setup.checks)
        elif event.state == WorkerState.ERROR:
            self.app.setup.checks = [
                Check(
                    "checks",
                    "Prerequisite checks",
                    "fail",
                    True,
                    f"the checks could not run: {event.worker.error}",
                    "reinstall with get.sh, or run `pendra doctor` for details",
                )
            ]
            self._show(self.app.setup.checks)

    def _show(self, checks: list[Check]) -> None:
        table = self.query_one(ChecksTable)
        table.show([check_line(check) for check in checks])
        if table.row_count:
            table.move_cursor(row=0)
        self.query_one("#checks-summary", Static).update(checks_summary(checks))
        self._explain()
        self.refresh_blocked()

    @on(DataTable.RowHighlighted, "#checks")
    def _explain(self) -> None:
        checks = {check.id: check for check in self.app.setup.checks or []}
        key = self.query_one(ChecksTable).current_key()
        detail = self.query_one("#check-detail", Static)
        detail.update(check_text(checks[key]) if key in checks else "")

    def blocked_reason(self) -> str | None:
        checks = self.app.setup.checks
        if checks is None:
            return "Wait for the checks to finish."
        return blocked_text(blocking_checks(checks))

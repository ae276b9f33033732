"""Setup step 1: the installer's prerequisite checks, each ✓ / ⚠ / ✗ with the fix to run."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from pendra_tui.formatting import check_mark
from pendra_tui.screens.setup_step import SetupStep
from pendra_tui.services import Check
from pendra_tui.setup_state import blocking_checks

MARK_STYLES = {"ok": "green", "warn": "yellow", "fail": "red"}


def check_text(check: Check) -> Text:
    """A check as two or three lines: mark + title (+ "required"), detail, fix (pure)."""
    text = Text()
    text.append(f"{check_mark(check.status)} ", style=f"bold {MARK_STYLES.get(check.status, '')}")
    text.append(check.title, style="bold")
    if check.required and check.status == "fail":
        text.append("  required", style="bold red")
    if check.detail:
        text.append(f"\n  {check.detail}", style="dim")
    if check.fix and check.status != "ok":
        text.append("\n  fix: ", style="bold")
        text.append(check.fix)
    return text


def blocked_text(failed: list[Check]) -> str | None:
    if not failed:
        return None
    names = ", ".join(check.title for check in failed)
    return f"Cannot continue: required check failed: {names}. Fix it, then press r to re-run."


class PrereqScreen(SetupStep):
    """Runs the checks in a thread worker (they start subprocesses) and lists the results."""

    STEP = "prereqs"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "rerun", "Re-run checks")]

    def body(self) -> ComposeResult:
        yield Static("Checking this machine…", id="checks-summary")
        yield VerticalScroll(id="checks")

    def on_mount(self) -> None:
        super().on_mount()
        if self.app.setup.checks is None:
            self.action_rerun()
        else:
            self._show(self.app.setup.checks)

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
        box = self.query_one("#checks", VerticalScroll)
        box.remove_children()
        box.mount_all(
            Static(check_text(check), classes=f"check -{check.status}") for check in checks
        )
        counts = {
            status: sum(c.status == status for c in checks) for status in ("ok", "warn", "fail")
        }
        self.query_one("#checks-summary", Static).update(
            f"{counts['ok']} passed · {counts['warn']} warnings · {counts['fail']} failed"
        )
        self.refresh_blocked()

    def blocked_reason(self) -> str | None:
        checks = self.app.setup.checks
        if checks is None:
            return "Wait for the checks to finish."
        return blocked_text(blocking_checks(checks))

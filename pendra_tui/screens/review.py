"""Setup step 5: what will happen, then start the worker and switch to the dashboard."""

from __future__ import annotations

import contextlib

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Static

from pendra_tui.screens.setup_step import SetupStep
from pendra_tui.setup_state import SetupState, install_plan, usable_backends


def review_text(state: SetupState, plan_lines: list[str]) -> Text:
    """The Review screen's summary (pure)."""
    text = Text()
    text.append("Worker key\n", style="bold")
    if state.key_path is not None:
        text.append(f"  {state.key_path} ({state.key_note or 'stored'})\n")
    else:
        text.append("  already stored\n")
    text.append("\nBackends\n", style="bold")
    backends = usable_backends(state)
    text.append(f"  {', '.join(backends) if backends else 'none ready yet'}\n")
    text.append("\nModels to install\n", style="bold")
    rows = {row.ref: row for row in (state.catalogue.rows if state.catalogue else [])}
    planned, impossible = install_plan(state.selected, rows, backends)
    if not planned and not impossible:
        text.append("  none now (press i on the dashboard later)\n")
    for ref, backend in planned:
        text.append(f"  {ref} → {backend}\n")
    for ref in impossible:
        text.append(f"  ✗ {ref}: no enabled backend here can install it (skipped)\n", style="red")
    text.append("\nThen\n", style="bold")
    for line in plan_lines:
        text.append(f"  • {line}\n")
    return text


class ReviewScreen(SetupStep):
    """Summary and Start."""

    STEP = "review"
    CONTINUE_LABEL = "Start worker"

    def body(self) -> ComposeResult:
        yield Static(review_text(self.app.setup, self.app.services.launcher.plan()), id="review")
        yield Static("", id="start-status")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#next").focus()
        state = self.app.setup
        if (state.selected and state.catalogue is None) or state.candidates is None:
            self._prepare()

    @work(exclusive=True, group="prepare", exit_on_error=False)
    async def _prepare(self) -> None:
        """A resumed setup skipped the steps that load the catalogue and find the backends:
        load them here, so the plan says where each chosen model goes."""
        from worker.errors import PendraError

        state = self.app.setup
        services = self.app.services
        if state.selected and state.catalogue is None:
            with contextlib.suppress(PendraError, OSError):
                state.catalogue = await services.catalogue.load()
        if state.candidates is None:
            with contextlib.suppress(PendraError, OSError, ImportError):
                found = await services.backends.discover()
                state.candidates = [c for c in found if c.kind != "pendra"]
        self.query_one("#review", Static).update(review_text(state, services.launcher.plan()))

    async def proceed(self) -> None:
        self.query_one("#next").disabled = True
        self.query_one("#start-status", Static).update("Starting the worker…")
        self._start()

    @work(exclusive=True, group="start", exit_on_error=False)
    async def _start(self) -> None:
        from worker.errors import PendraError

        state = self.app.setup
        rows = {row.ref: row for row in (state.catalogue.rows if state.catalogue else [])}
        planned, _ = install_plan(state.selected, rows, usable_backends(state))
        try:
            summary = await self.app.services.launcher.start()
        except (PendraError, OSError) as exc:
            self.query_one("#start-status", Static).update(
                Text.assemble(("The worker did not start: ", "bold red"), str(exc))
            )
            self.query_one("#next").disabled = False
            return
        self.notify(summary, title="Worker started")
        self.app.setup_finished()
        self.app.open_dashboard([(ref, backend) for ref, backend in planned])

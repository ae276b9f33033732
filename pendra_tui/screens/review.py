"""Setup step 5: what will happen, how the worker runs (a process or service, or in Docker), then
start it and switch to the dashboard."""

from __future__ import annotations

import contextlib
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import RadioButton, RadioSet, Static

from pendra_tui.screens.setup_step import SetupStep
from pendra_tui.services import Services
from pendra_tui.setup_state import RUN_MODES, SetupState, install_plan, usable_backends

RUN_MODE_LABELS: dict[str, str] = {
    "process": "As a process or service on this machine (recommended)",
    "docker": "In Docker (`pendra stack up`)",
}


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


def launcher_for(services: Services, mode: str) -> Any:
    """The launcher Start uses for ``mode``; the process one when Docker is not offered."""
    if mode == "docker" and services.docker is not None:
        return services.docker
    return services.launcher


class ReviewScreen(SetupStep):
    """Summary, how to run the worker, and Start."""

    STEP = "review"
    CONTINUE_LABEL = "Start worker"

    def body(self) -> ComposeResult:
        if self.app.services.docker is not None:
            yield Static(Text("Run the worker", style="bold"), id="run-mode-title")
            mode = self.app.setup.run_mode
            with RadioSet(id="run-mode"):
                for name in RUN_MODES:
                    yield RadioButton(RUN_MODE_LABELS[name], value=name == mode, id=f"mode-{name}")
            yield Static("", id="docker-note")
        yield Static(self._summary(), id="review")
        yield Static("", id="start-status")

    def _summary(self) -> Text:
        launcher = launcher_for(self.app.services, self.app.setup.run_mode)
        return review_text(self.app.setup, launcher.plan())

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#next").focus()
        state = self.app.setup
        if (state.selected and state.catalogue is None) or state.candidates is None:
            self._prepare()
        # The radio set scrolls its selected button into view when it mounts; on a short
        # terminal that would hide the choice's own title.
        self.call_after_refresh(self.query_one("#step-body").scroll_home, animate=False)
        if self.app.services.docker is not None:
            self._check_docker()

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
        self.query_one("#review", Static).update(self._summary())

    @work(thread=True, exclusive=True, group="docker-check", exit_on_error=False)
    def _check_docker(self) -> None:
        docker = self.app.services.docker
        reason = docker.unavailable() if docker is not None else "not offered"
        self.app.call_from_thread(self._docker_checked, reason)

    def _docker_checked(self, reason: str | None) -> None:
        button = self.query_one("#mode-docker", RadioButton)
        button.disabled = reason is not None
        note = self.query_one("#docker-note", Static)
        note.display = reason is not None
        if reason is None:
            return
        note.update(Text(f"Docker is not available: {reason}", style="dim"))
        if self.app.setup.run_mode == "docker":
            self.query_one("#mode-process", RadioButton).value = True

    @on(RadioSet.Changed, "#run-mode")
    def _mode_changed(self, event: RadioSet.Changed) -> None:
        chosen = (event.pressed.id or "").removeprefix("mode-")
        if chosen in RUN_MODES:
            self.app.setup.run_mode = chosen
            self.query_one("#review", Static).update(self._summary())

    async def proceed(self) -> None:
        self.query_one("#next").disabled = True
        self.query_one("#start-status", Static).update("Starting the worker…")
        self._start()

    def _progress(self, line: str) -> None:
        """A step of a Docker start, from its worker thread."""
        self.app.call_from_thread(
            self.query_one("#start-status", Static).update, f"Starting the worker… {line}"
        )

    @work(exclusive=True, group="start", exit_on_error=False)
    async def _start(self) -> None:
        from worker.errors import PendraError

        state = self.app.setup
        rows = {row.ref: row for row in (state.catalogue.rows if state.catalogue else [])}
        planned, _ = install_plan(state.selected, rows, usable_backends(state))
        launcher = launcher_for(self.app.services, state.run_mode)
        try:
            if launcher is self.app.services.docker:
                summary = await launcher.start_with_progress(self._progress)
            else:
                summary = await launcher.start()
        except (PendraError, OSError) as exc:
            self.query_one("#start-status", Static).update(
                Text.assemble(("The worker did not start: ", "bold red"), str(exc))
            )
            self.query_one("#next").disabled = False
            return
        self.notify(summary, title="Worker started")
        self.app.setup_finished()
        self.app.open_dashboard([(ref, backend) for ref, backend in planned])

"""Setup step 4: the built-in backend plus each external kind, found or not.

Space switches the row on or off; e (or enter) sets an explicit endpoint, which the backend's own
check verifies on the spot before it is accepted. Continue saves the changes to
``$PENDRA_HOME/config.yaml`` (``<kind>_endpoint``), keeping the user's other keys. The words
are the ones ``pendra status`` and ``pendra backends`` use (ready, unreachable, disabled).
"""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Static

from pendra_tui.backend_config import AUTO, OFF
from pendra_tui.screens.setup_step import SetupStep
from pendra_tui.services import BackendCandidate
from pendra_tui.setup_state import SetupState, backend_enabled
from pendra_tui.widgets.inputs import steady_input
from pendra_tui.widgets.sortable_table import Column, Row, SortableTable

STATUS_ORDER = {"ready": 0, "unverified": 1, "unreachable": 2, "error": 3, "disabled": 4}


class BackendChoicesTable(SortableTable):
    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("on", "on"),
        Column("backend", "backend"),
        Column("endpoint", "endpoint", drop=1),
        Column("status", "status"),
        Column("detail", "detail", drop=2),
    )


def choice_row(state: SetupState, kind: str) -> Row:
    cells = backend_row(state, kind)
    keys = [column.key for column in BackendChoicesTable.COLUMNS]
    return Row(
        key=kind,
        cells=dict(zip(keys, cells, strict=True)),
        sort={"status": STATUS_ORDER.get(cells[3], 9), "on": 0 if cells[0] == "✓" else 1},
    )


def backend_row(state: SetupState, kind: str) -> tuple[str, str, str, str, str]:
    """The cells of one backend row from the setup state (pure)."""
    enabled = backend_enabled(state, kind)
    if kind == "pendra":
        return (
            "✓" if enabled else "✗",
            "pendra (built-in)",
            "in-process",
            "ready" if enabled else "disabled",
            "GGUF models from the modelstore",
        )
    found = {c.kind: c for c in state.candidates or []}
    explicit = state.endpoints.get(kind)
    if explicit not in (None, AUTO, OFF):
        result = state.verified.get(kind)
        status = result.status if result else "unverified"
        detail = (result.detail or models_text(result.models)) if result else ""
        return ("✓", kind, str(explicit), status, detail)
    candidate = found.get(kind)
    if not enabled:
        said = candidate.detail if candidate and kind not in state.endpoints else None
        return ("✗", kind, "—", "disabled", said or "never probed")
    if candidate is None or candidate.status != "ready":
        detail = candidate.detail if candidate and candidate.detail else "not found by discovery"
        return ("✓", kind, "—", "unreachable", detail or "")
    return ("✓", kind, candidate.endpoint or "—", "ready", models_text(candidate.models))


def models_text(count: int) -> str:
    """``1 model``, ``3 models`` (pure)."""
    return f"{count} model" if count == 1 else f"{count} models"


class EndpointScreen(ModalScreen[BackendCandidate | None]):
    """Ask for an endpoint URL and verify it with the backend's own check before accepting."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, kind: str, current: str | None) -> None:
        super().__init__()
        self.kind = kind
        self._current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"[b]{self.kind} endpoint[/b]", classes="dialog-title")
            yield Static("The URL of its API, e.g. http://localhost:11434. It is checked now.")
            yield steady_input(
                self.app,
                value=self._current or "",
                placeholder="http://host:port",
                id="endpoint",
            )
            yield Static("", id="endpoint-status")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Check & use", id="use", variant="primary")

    @on(Input.Submitted)
    @on(Button.Pressed, "#use")
    def _use(self) -> None:
        from worker.settings import parse_http_url

        raw = self.query_one("#endpoint", Input).value
        try:
            url = parse_http_url(raw)
        except ValueError as exc:
            self.query_one("#endpoint-status", Static).update(f"[red]{escape(str(exc))}[/]")
            return
        self.query_one("#endpoint-status", Static).update(f"Checking {escape(url)}…")
        self._verify(url)

    @work(exclusive=True, group="verify", exit_on_error=False)
    async def _verify(self, url: str) -> None:
        from worker.errors import PendraError

        try:
            result = await self.app.services.backends.verify(self.kind, url)
        except (PendraError, OSError, ImportError) as exc:
            result = BackendCandidate(self.kind, url, "error", str(exc))
        if result.status == "ready":
            self.dismiss(result)
            return
        reason = result.detail or result.status
        self.query_one("#endpoint-status", Static).update(
            f"[red]{escape(url)} did not pass the {self.kind} check:[/] {escape(reason)}"
        )

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class BackendsScreen(SetupStep):
    """Which backends the worker uses."""

    STEP = "backends"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle", "On/off"),
        Binding("e", "edit", "Endpoint"),
        Binding("r", "rediscover", "Rescan"),
    ]

    def body(self) -> ComposeResult:
        yield Static("Looking for backends on this machine…", id="backends-status")
        yield BackendChoicesTable(id="backend-table")
        yield Static(
            "[dim]space: on/off · e or enter: set its endpoint · r: look again · "
            "saved to config.yaml on Continue[/dim]",
            classes="explain",
        )

    @property
    def kinds(self) -> list[str]:
        return ["pendra", *self.app.services.backend_kinds]

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#backend-table", BackendChoicesTable)
        table.show([choice_row(self.app.setup, kind) for kind in self.kinds])
        table.focus()
        if self.app.setup.candidates is None:
            self.action_rediscover()
        else:
            self._summarise()

    def action_rediscover(self) -> None:
        self.query_one("#backends-status", Static).update("Looking for backends on this machine…")
        self._discover()

    @work(exclusive=True, group="discover", exit_on_error=False)
    async def _discover(self) -> None:
        from worker.errors import PendraError

        try:
            found = await self.app.services.backends.discover()
        except (PendraError, OSError, ImportError) as exc:
            self.query_one("#backends-status", Static).update(
                f"[red]Discovery failed:[/] {escape(str(exc))}"
            )
            self.app.setup.candidates = []
            return
        self.app.setup.candidates = [c for c in found if c.kind != "pendra"]
        self._redraw()

    def _summarise(self) -> None:
        ready = [c.kind for c in self.app.setup.candidates or [] if c.status == "ready"]
        if ready:
            text = f"Found: {', '.join(ready)}. The built-in backend is always available."
        else:
            text = (
                "No external backends found (Ollama, LM Studio, vLLM… were not answering). "
                "The built-in backend serves GGUF models on its own."
            )
        self.query_one("#backends-status", Static).update(text)

    def _redraw(self) -> None:
        table = self.query_one("#backend-table", BackendChoicesTable)
        table.show([choice_row(self.app.setup, kind) for kind in self.kinds])
        self._summarise()

    def _current_kind(self) -> str | None:
        return self.query_one("#backend-table", BackendChoicesTable).current_key()

    def action_toggle(self) -> None:
        kind = self._current_kind()
        state = self.app.setup
        if kind == "pendra":
            state.builtin_enabled = not state.builtin_enabled
        elif kind is not None:
            state.endpoints[kind] = AUTO if not backend_enabled(state, kind) else OFF
            state.verified.pop(kind, None)
        self._redraw()
        self.refresh_blocked()

    def action_edit(self) -> None:
        kind = self._current_kind()
        if kind is None or kind == "pendra":
            self.notify("The built-in backend runs inside the worker; it has no endpoint.")
            return

        def done(result: BackendCandidate | None) -> None:
            if result is not None:
                self.app.setup.endpoints[kind] = result.endpoint or ""
                self.app.setup.verified[kind] = result
                self._redraw()

        current = self.app.setup.endpoints.get(kind)
        self.app.push_screen(
            EndpointScreen(kind, current if current not in (AUTO, OFF) else None), done
        )

    @on(DataTable.RowSelected, "#backend-table")
    def _row_chosen(self) -> None:
        self.action_edit()

    def blocked_reason(self) -> str | None:
        state = self.app.setup
        external_on = any(
            backend_enabled(state, c.kind) and c.status == "ready" for c in state.candidates or []
        )
        if not state.builtin_enabled and not external_on and not state.verified:
            return "Enable at least one backend: the worker needs something to serve with."
        return None

    async def proceed(self) -> None:
        from worker.errors import PendraError

        state = self.app.setup
        if state.endpoints or not state.builtin_enabled:
            try:
                path = self.app.services.backends.save(state.endpoints, state.builtin_enabled)
            except PendraError as exc:
                self.query_one("#blocked", Static).update(f"[red]{escape(str(exc))}[/]")
                return
            self.notify(f"Saved to {path}.")
        await super().proceed()

"""The frame every setup screen shares: step indicator, body, Back/Continue, footer.

Keys: ctrl+n (or the Continue button) goes forward when the step allows it, escape goes back.
A step says why it cannot continue instead of silently ignoring the key.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Static

from pendra_tui.setup_state import STEP_TITLES, STEPS


def step_indicator(current: str) -> Text:
    """``Setup  1 Prerequisites › 2 Worker key › …`` with the current step highlighted (pure)."""
    text = Text("Pendra setup  ", style="bold")
    for number, step in enumerate(STEPS, start=1):
        if number > 1:
            text.append(" › ", style="dim")
        label = f"{number} {STEP_TITLES[step]}"
        text.append(label, style="bold reverse" if step == current else "dim")
    return text


def compact_step_indicator(current: str) -> Text:
    """``Pendra setup 3/5 · Models`` for narrow terminals (pure)."""
    number = STEPS.index(current) + 1 if current in STEPS else 0
    text = Text("Pendra setup  ", style="bold")
    text.append(f"{number}/{len(STEPS)} · {STEP_TITLES.get(current, '')}", style="bold reverse")
    return text


class SetupStep(Screen[Any]):
    """Base of the five setup screens."""

    STEP: ClassVar[str] = ""
    """This screen's entry in :data:`STEPS`."""
    CONTINUE_LABEL: ClassVar[str] = "Continue →"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "next", "Continue"),
        Binding("escape", "back", "Back"),
        Binding("q", "app.quit", "Quit"),
    ]

    def compose(self) -> ComposeResult:
        yield Static(step_indicator(self.STEP), id="steps", classes="steps-wide")
        yield Static(compact_step_indicator(self.STEP), id="steps-compact", classes="steps-narrow")
        yield Static("", id="resumed-note")
        with Vertical(id="step-body"):
            yield from self.body()
        yield Static("", id="blocked")
        with Horizontal(id="nav"):
            yield Button("← Back", id="back")
            yield Button(self.CONTINUE_LABEL, id="next", variant="primary")
        yield Footer(compact=True)

    def body(self) -> ComposeResult:
        """The step's own widgets."""
        yield from ()

    def on_mount(self) -> None:
        self.query_one("#back", Button).display = STEPS.index(self.STEP) > 0 if self.STEP else True
        note = self.query_one("#resumed-note", Static)
        resumed = getattr(self.app, "resumed_at", None) == self.STEP and not getattr(
            self, "pick", False
        )
        note.display = resumed
        if resumed:
            note.update(
                "Picked up where you left the setup last time, with the choices made then "
                "(esc goes back a step)."
            )
        self.refresh_blocked()

    # -- subclasses ----------------------------------------------------------------------------
    def blocked_reason(self) -> str | None:
        """Why Continue is refused right now; ``None`` when it is allowed."""
        return None

    async def proceed(self) -> None:
        """Called when Continue is allowed; default: go to the next step."""
        self.app.goto_step(STEPS[STEPS.index(self.STEP) + 1])

    # -- shared --------------------------------------------------------------------------------
    def refresh_blocked(self) -> None:
        reason = self.blocked_reason()
        self.query_one("#blocked", Static).update(Text(reason or "", style="bold"))
        self.query_one("#next", Button).disabled = reason is not None

    async def action_next(self) -> None:
        reason = self.blocked_reason()
        if reason:
            self.refresh_blocked()
            self.app.bell()
            return
        await self.proceed()

    def action_back(self) -> None:
        index = STEPS.index(self.STEP)
        if index > 0:
            self.app.goto_step(STEPS[index - 1])

    @on(Button.Pressed, "#next")
    async def _next_pressed(self) -> None:
        await self.action_next()

    @on(Button.Pressed, "#back")
    def _back_pressed(self) -> None:
        self.action_back()

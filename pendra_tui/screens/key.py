"""Setup step 2: the worker key — masked, paste-friendly, validated, stored 0600.

The key lives only in the Input's value and in the call that stores it; it is never put in a
notification, a log line, a title or an error message.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Button, Input, Static

from pendra_tui.screens.setup_step import SetupStep
from pendra_tui.widgets.key_input import KeyInput, clean_key


class KeyScreen(SetupStep):
    """Asks for the worker private key from the Pendra dashboard."""

    STEP = "key"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+s", "toggle_show", "Show/hide key")]

    def body(self) -> ComposeResult:
        yield Static(
            "Paste the worker key from the Pendra dashboard (Workers → Add worker). "
            "It is stored only on this machine, readable by you alone.",
            classes="explain",
        )
        with Horizontal(id="key-row"):
            field = KeyInput(placeholder="worker key", password=True, id="key-input")
            field.cursor_blink = not self.app.deterministic
            yield field
            yield Button("Show", id="toggle-show")
        yield Static("", id="key-status")

    def on_mount(self) -> None:
        super().on_mount()
        if self.app.setup.key_path is not None or self.app.services.keys.has_key():
            self._status("A key is already stored. Leave this empty to keep it.", "ok")
        self.query_one("#key-input", Input).focus()

    def _status(self, message: str, kind: str) -> None:
        status = self.query_one("#key-status", Static)
        status.update(Text(message))  # plain text: messages quote the control plane
        for name in ("ok", "error", "busy", "warn"):
            status.set_class(name == kind, f"-{name}")

    def action_toggle_show(self) -> None:
        field = self.query_one("#key-input", Input)
        field.password = not field.password
        self.query_one("#toggle-show", Button).label = "Show" if field.password else "Hide"

    @on(Button.Pressed, "#toggle-show")
    def _toggle_pressed(self) -> None:
        self.action_toggle_show()

    @on(Input.Submitted, "#key-input")
    async def _submitted(self) -> None:
        await self.action_next()

    async def proceed(self) -> None:
        key = clean_key(self.query_one("#key-input", Input).value)
        if not key:
            if self.app.setup.key_path is not None or self.app.services.keys.has_key():
                await super().proceed()
            else:
                self._status("Paste the worker key first.", "error")
            return
        problem = self.app.services.verifier.check_format(key)
        if problem:
            self._status(problem, "error")  # worker.keys says what is wrong, in full
            return
        self._status("Checking the key with the control plane…", "busy")
        self._verify_and_store(key)

    @work(exclusive=True, group="key", exit_on_error=False)
    async def _verify_and_store(self, key: str) -> None:
        from worker.errors import PendraError

        services = self.app.services
        verdict = await services.verifier.verify(key)
        if verdict.accepted is False:
            self._status(
                f"The key was refused: {verdict.message}. Copy it again from the dashboard.",
                "error",
            )
            return
        try:
            path = services.keys.store(key)
        except (OSError, PendraError) as exc:
            self._status(f"Could not store the key: {exc}", "error")
            return
        self.app.setup.key_path = path
        if verdict.accepted is None:
            self.app.setup.key_note = f"stored; not checked live ({verdict.message})"
        else:
            self.app.setup.key_note = "stored; accepted by the control plane"
        self.query_one("#key-input", Input).value = ""
        self._status(f"Key {self.app.setup.key_note}.", "ok" if verdict.accepted else "warn")
        await super().proceed()

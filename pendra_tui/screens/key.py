"""Setup step 2: the worker key — masked, paste-friendly, validated, stored 0600 — plus the
control plane to connect to and the name the console shows for this worker.

The key lives only in the Input's value and in the call that stores it; it is never put in a
notification, a log line, a title or an error message. Continue saves all three to config.yaml
(the key where the worker reads it), so a later ``pendra --no-ui`` — in any shell — uses what
was set up here. Opened again on a configured machine (``pendra setup``), the fields show the
current control plane and name, and an empty key field keeps the stored key.
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
from pendra_tui.widgets.inputs import steady_input
from pendra_tui.widgets.key_input import KeyInput, clean_key


class KeyScreen(SetupStep):
    """Asks for the worker private key from the Pendra console, the control plane and a name."""

    STEP = "key"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+s", "toggle_show", "Show/hide key")]

    def body(self) -> ComposeResult:
        identity = self.app.services.config.identity()
        yield Static(
            "Paste the worker private key from the Pendra console (Workers → Add worker). It is "
            "stored only on this machine, readable by you alone.",
            classes="explain",
        )
        with Horizontal(id="key-row"):
            field = KeyInput(
                placeholder="worker private key (base64)", password=True, id="key-input"
            )
            field.cursor_blink = not self.app.deterministic
            yield field
            yield Button("Show", id="toggle-show")
        yield Static("", id="key-status")
        with Horizontal(classes="setting-row"):
            yield Static("Control plane", classes="setting-label")
            yield steady_input(self.app, value=identity.server_url, id="server-url")
        with Horizontal(classes="setting-row"):
            yield Static("Worker name", classes="setting-label")
            yield steady_input(self.app, value=identity.worker_name, id="worker-name")

    def on_mount(self) -> None:
        super().on_mount()
        where = self.app.services.keys.where() if self.app.services.keys.has_key() else None
        if self.app.setup.key_path is not None or where:
            self._status(
                f"A key is already configured ({where or self.app.setup.key_path}). Leave the "
                "field empty to keep it.",
                "ok",
            )
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

    @on(Input.Submitted)
    async def _submitted(self) -> None:
        await self.action_next()

    async def proceed(self) -> None:
        from pendra_tui.backend_config import identity_changes
        from worker.errors import PendraError

        server_url = self.query_one("#server-url", Input).value
        worker_name = self.query_one("#worker-name", Input).value
        try:
            identity_changes(server_url, worker_name)  # the worker's own checks, before saving
        except PendraError as exc:
            self._status(exc.message, "error")
            return
        key = clean_key(self.query_one("#key-input", Input).value)
        if not key:
            if self.app.setup.key_path is not None or self.app.services.keys.has_key():
                self._save(None, server_url, worker_name)
            else:
                self._status("Paste the worker key first.", "error")
            return
        problem = self.app.services.verifier.check_format(key)
        if problem:
            self._status(problem, "error")  # worker.keys says what is wrong, in full
            return
        self._status("Checking the key with the control plane…", "busy")
        self._save(key, server_url, worker_name)

    @work(exclusive=True, group="key", exit_on_error=False)
    async def _save(self, key: str | None, server_url: str, worker_name: str) -> None:
        from worker.errors import PendraError

        services = self.app.services
        verdict = await services.verifier.verify(key, server_url) if key else None
        if verdict is not None and verdict.accepted is False:
            self._status(
                f"The key was refused: {verdict.message}. Copy it again from the console.",
                "error",
            )
            return
        try:
            services.config.save_identity(server_url, worker_name)
            path = services.keys.store(key) if key else services.keys.keep_environment_key()
        except (OSError, PendraError) as exc:
            self._status(f"Could not save: {exc}", "error")
            return
        if path is not None and verdict is None:
            self.app.setup.key_path = path
            self.app.setup.key_note = "stored from the environment"
        if path is not None and verdict is not None:
            self.app.setup.key_path = path
            if verdict.accepted is None:
                self.app.setup.key_note = f"stored; not checked live ({verdict.message})"
            else:
                self.app.setup.key_note = "stored; accepted by the control plane"
            self.query_one("#key-input", Input).value = ""
            self._status(f"Key {self.app.setup.key_note}.", "ok" if verdict.accepted else "warn")
        await super().proceed()

"""Setup step 2: the worker key — masked, paste-friendly, validated, stored 0600 — plus the
control plane to connect to and the name the console shows for this worker.

The key lives only in the Input's value and in the call that stores it; it is never put in a
notification, a log line, a title or an error message. Continue saves all three to config.yaml
(the key where the worker reads it), so a later ``pendra --no-ui`` — in any shell — uses what
was set up here. Opened again on a configured machine (``pendra setup``), the fields show the
current control plane and name, and an empty key field keeps the stored key.
"""

from __future__ import annotations

from pathlib import Path
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

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def is_local(url: str) -> bool:
    """Whether the control plane runs on this machine (a ``pendra sandbox``) (pure)."""
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def shown_path(path: Path, pendra_home: Path, user_home: Path) -> str:
    """``~/.pendra/sandbox/worker.key``, or ``$PENDRA_HOME/…`` for a home set elsewhere (pure)."""
    if path.is_relative_to(user_home) and pendra_home.is_relative_to(user_home):
        return "~/" + str(path.relative_to(user_home))
    if path.is_relative_to(pendra_home):
        return "$PENDRA_HOME/" + str(path.relative_to(pendra_home))
    return str(path)


def sandbox_hint(shown: str, exists: bool) -> str:
    """Where the key comes from when the control plane is a local sandbox (pure). It takes the
    place of the console explanation, and no more room: the key step fits 80×24 with its fields."""
    if exists:
        return (
            f"The control plane is a local `pendra sandbox`: it wrote the key it accepts to "
            f"{shown}; ctrl+o puts it in the field."
        )
    return (
        f"The control plane is a local `pendra sandbox`: start it and it writes the key it "
        f"accepts to {shown}; then press ctrl+o."
    )


class KeyScreen(SetupStep):
    """Asks for the worker private key from the Pendra console, the control plane and a name."""

    STEP = "key"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "toggle_show", "Show/hide key"),
        Binding("ctrl+o", "use_sandbox_key", "Use sandbox key"),
    ]

    def body(self) -> ComposeResult:
        identity = self.app.services.config.identity()
        yield Static(
            "Paste the worker private key from the Pendra console (Workers → Add worker). It is "
            "stored only on this machine, readable by you alone.",
            id="key-explain",
            classes="explain",
        )
        yield Static("", id="key-hint", classes="explain")  # instead, for a local sandbox
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
        self._show_hint()
        self.query_one("#key-input", Input).focus()

    def _control_plane(self) -> str:
        """The control plane being set up: the field, else the configured one."""
        value = self.query_one("#server-url", Input).value.strip()
        return value or self.app.services.config.identity().server_url

    @on(Input.Changed, "#server-url")
    def _control_plane_changed(self) -> None:
        self._show_hint()

    def _show_hint(self) -> None:
        """For a local sandbox, say where its key file is (and that ctrl+o reads it) instead of
        pointing to a console it does not have."""
        hint = self.query_one("#key-hint", Static)
        url = self._control_plane()
        local = is_local(url)
        hint.display = local
        self.query_one("#key-explain").display = not local
        if local:
            keys = self.app.services.keys
            key_file = keys.sandbox_key_file()
            shown = shown_path(key_file, keys.home, Path.home())
            hint.update(Text(sandbox_hint(shown, key_file.is_file())))
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "use_sandbox_key":
            return is_local(self._control_plane())
        return True

    def action_use_sandbox_key(self) -> None:
        """Fill the field from the sandbox's key file (still masked, still checked)."""
        key_file = self.app.services.keys.sandbox_key_file()
        try:
            key = self.app.services.keys.read_key_file(key_file)
        except OSError as exc:
            self._status(f"Cannot read {key_file}: {exc.strerror or exc}", "error")
            return
        field = self.query_one("#key-input", Input)
        field.value = clean_key(key)
        field.focus()
        self._status("The sandbox's key is in the field; Continue checks and stores it.", "ok")

    @on(Input.Changed, "#key-input")
    @on(Input.Changed, "#server-url")
    @on(Input.Changed, "#worker-name")
    def _editing(self) -> None:
        """An error about what was typed before goes as soon as it is edited."""
        status = self.query_one("#key-status", Static)
        if status.has_class("-error"):
            self._status("", "none")

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
            if key:
                saved = services.keys.store(key)
                path: Path | None = saved.path
            else:
                saved, path = None, services.keys.keep_environment_key()
        except (OSError, PendraError) as exc:
            self._status(f"Could not save: {exc}", "error")
            return
        if path is not None and verdict is None:
            self.app.setup.key_path = path
            self.app.setup.key_note = "stored from the environment"
        if saved is not None and verdict is not None:
            self.app.setup.key_path = saved.path
            if verdict.accepted is None:
                note = f"stored; not checked live ({verdict.message})"
            else:
                note = "stored; accepted by the control plane"
            if saved.backup is not None:
                note += f"; the key it replaced is kept in {saved.backup.name}"
            self.app.setup.key_note = note
            self.query_one("#key-input", Input).value = ""
            self._status(f"Key {note}.", "ok" if verdict.accepted else "warn")
            for line in saved.notes:
                self.notify(line, title="Worker key", timeout=10)
        await super().proceed()

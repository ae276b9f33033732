"""The Pendra worker app and the one factory that builds it (for the CLI, tests and screenshots).

``PendraApp`` decides the first screen: the setup flow when no worker key is stored, else the
dashboard of the running worker. It owns the setup state so Back/Forward keep what was entered.
Quitting never stops the worker: the app is only a client of its admin API.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import ClassVar, Literal

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from pendra_tui.screens.setup_step import SetupStep
from pendra_tui.services import Services
from pendra_tui.setup_state import STEPS, SetupState

KEY_NAMES = {"question_mark": "?", "slash": "/", "escape": "esc"}
"""Binding key names as the key a person presses."""

Start = Literal["auto", "setup", "dashboard", "prereqs", "key", "catalogue", "backends", "review"]
"""The first screen: "auto" decides by whether a key is stored; a step name starts there."""


class PendraApp(App[int]):
    """Setup flow + live dashboard."""

    CSS_PATH = "app.tcss"
    TITLE = "Pendra worker"
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [
        (0, "-narrow"),
        (100, "-wide"),
    ]
    """Below 100 columns the panels stack instead of sitting side by side."""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "toggle_theme", "Light/dark", show=False),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=False),
    ]
    """ctrl+c quits like everywhere else in a terminal (an Input that has focus copies first)."""

    def __init__(
        self, services: Services, *, start: Start = "auto", deterministic: bool = False
    ) -> None:
        super().__init__()
        self.services = services
        """Everything outside the app, injected."""
        self.start = start
        """Which screen opens first; "auto" picks by whether a key is stored."""
        self.deterministic = deterministic
        """Snapshots and screenshots: no cursor blink, no animations."""
        self.setup = SetupState()
        """What the setup flow collected so far."""
        self.resumed_at: str | None = None
        """The step an unfinished setup was picked up at, if it was."""
        if deterministic:
            self.animation_level = "none"

    def on_mount(self) -> None:
        self._check_size(self.size.width, self.size.height)
        first = self.start
        if first == "auto":
            first = self._resume() or ("dashboard" if self.services.keys.has_key() else "setup")
        if first == "dashboard":
            self.open_dashboard()
        else:
            self.goto_step(first if first in STEPS else STEPS[0])

    def _resume(self) -> str | None:
        """The step of a setup left unfinished (its choices restored), or ``None``."""
        store = self.services.progress
        progress = store.resumable() if store is not None else None
        if progress is None:
            return None
        if self.services.keys.has_key() and STEPS.index(progress.step) <= STEPS.index("key"):
            return None  # the key was set up some other way (`pendra key set`) since
        progress.restore(self.setup)
        self.resumed_at = progress.step
        return str(progress.step)

    async def action_quit(self) -> None:
        """Quit; an unfinished setup keeps the choices made on the current step too."""
        if isinstance(self.screen, SetupStep) and self.services.progress is not None:
            step = self.screen.STEP
            if step and not getattr(self.screen, "pick", False):
                self.services.progress.save(self.setup, step)
        self.exit(0)

    def setup_finished(self) -> None:
        """The worker was started (or found running): nothing left to resume."""
        if self.services.progress is not None:
            self.services.progress.clear()

    def make_step(self, step: str) -> Screen[object]:
        from pendra_tui.screens.backends import BackendsScreen
        from pendra_tui.screens.catalogue import CatalogueScreen
        from pendra_tui.screens.key import KeyScreen
        from pendra_tui.screens.prereqs import PrereqScreen
        from pendra_tui.screens.review import ReviewScreen

        screens = {
            "prereqs": PrereqScreen,
            "key": KeyScreen,
            "catalogue": CatalogueScreen,
            "backends": BackendsScreen,
            "review": ReviewScreen,
        }
        return screens[step]()

    def goto_step(self, step: str) -> None:
        """Show setup step ``step``, replacing the current step screen."""
        screen = self.make_step(step)
        if self.services.progress is not None:
            self.services.progress.save(self.setup, step)
        if isinstance(self.screen, SetupStep) and not getattr(self.screen, "pick", False):
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    def open_dashboard(self, pending_installs: list[tuple[str, str | None]] | None = None) -> None:
        from pendra_tui.screens.dashboard import DashboardScreen

        screen = DashboardScreen(pending_installs)
        if isinstance(self.screen, SetupStep):
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    # -- the minimum size ------------------------------------------------------------------------
    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int, height: int) -> None:
        """Below 80×24 cover the screen with a message instead of dropping panels silently."""
        from pendra_tui.screens.too_small import TooSmallScreen, is_too_small

        covered = isinstance(self.screen, TooSmallScreen) if self.screen_stack else False
        if is_too_small(width, height) and not covered:
            self.push_screen(TooSmallScreen())
        elif covered and not is_too_small(width, height):
            self.pop_screen()

    # -- the command palette ---------------------------------------------------------------------
    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The screen's own actions first (what its keys do, by name), then Textual's."""
        seen: set[str] = set()
        explained: dict[str, str] = getattr(screen, "ACTION_HELP", {})
        own = [
            binding
            for cls in type(screen).__mro__
            if issubclass(cls, Screen) and cls is not Screen
            for binding in cls.__dict__.get("BINDINGS", [])
        ]
        for binding in own:
            if not isinstance(binding, Binding) or not binding.description:
                continue
            if binding.action in seen or screen.check_action(binding.action, ()) is False:
                continue
            seen.add(binding.action)
            key = binding.key_display or binding.key.split(",")[0]
            what = explained.get(binding.action.split("(")[0], binding.description)
            yield SystemCommand(
                binding.description,
                f"{what} (key: {KEY_NAMES.get(key, key)})",
                partial(screen.run_action, binding.action),
            )
        yield from super().get_system_commands(screen)


def build_app(
    services: Services, *, start: Start = "auto", deterministic: bool = False
) -> PendraApp:
    """Build the app with its services injected."""
    return PendraApp(services, start=start, deterministic=deterministic)

"""The one-line bar at the top of the dashboard: link state, uptime, version."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from pendra_tui.formatting import format_duration

STATE_STYLES: dict[str, tuple[str, str]] = {
    "connected": ("●", "green"),
    "connecting": ("◌", "yellow"),
    "draining": ("◐", "yellow"),
    "offline": ("○", "red"),
    "not running": ("✗", "red"),
}
"""Glyph and colour per link state; glyphs keep the state readable without colour."""


def link_text(state: str, uptime_s: float | None, version: str | None) -> Text:
    """The bar's content (pure, so it is unit-tested)."""
    glyph, colour = STATE_STYLES.get(state, ("?", "yellow"))
    text = Text.assemble(("Pendra worker  ", "bold"), (f"{glyph} {state}", f"bold {colour}"))
    if uptime_s is not None:
        text.append(f"   up {format_duration(uptime_s)}")
    if version:
        text.append(f"   v{version}", style="dim")
    if state == "not running":
        text.append("   start it with pendra --no-ui · retrying", style="italic")
    return text


class LinkBar(Static):
    """Link state and uptime; ``uptime_s`` is set every second by the dashboard."""

    state: reactive[str] = reactive("connecting")
    """Link state: connected | connecting | offline | draining | not running."""
    uptime_s: reactive[float | None] = reactive(None)
    """Seconds since the worker started; ``None`` while unknown."""
    version: reactive[str | None] = reactive(None)
    """The worker's version string."""
    error: reactive[str | None] = reactive(None)
    """Why the worker is not reachable (shown while ``state`` is "not running")."""

    def render(self) -> Text:
        return link_text(self.state, self.uptime_s, self.version)

    def watch_state(self, state: str) -> None:
        for name in STATE_STYLES:
            self.set_class(name == state, f"-{name.replace(' ', '-')}")

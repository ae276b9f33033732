"""The one-line bar at the top of the dashboard: which worker, link state, uptime, private
inference, version."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from pendra_tui.dashboard_model import PrivateInferenceView
from pendra_tui.formatting import format_count, format_duration

STATE_STYLES: dict[str, tuple[str, str]] = {
    "connected": ("●", "green"),
    "connecting": ("◌", "yellow"),
    "draining": ("◐", "yellow"),
    "offline": ("○", "red"),
    "not running": ("✗", "red"),
}
"""Glyph and colour per link state; glyphs keep the state readable without colour."""


FINGERPRINT_SHOWN = 8
"""Hex digits of the workload key's fingerprint the bar shows: enough to tell keys apart."""


def private_text(view: PrivateInferenceView | None) -> Text:
    """``private 3f9a1c2b · 12 served``, or ``private off`` (pure, so it is unit-tested)."""
    if view is None:
        return Text()
    if not view.enabled or view.fingerprint is None:
        return Text.assemble(("private ", "dim"), ("off", "yellow"))
    return Text.assemble(
        ("private ", "dim"),
        (view.fingerprint[:FINGERPRINT_SHOWN], "bold"),
        (f" · {format_count(view.served)} served", ""),
    )


def link_text(
    state: str,
    uptime_s: float | None,
    version: str | None,
    private: PrivateInferenceView | None = None,
    name: str | None = None,
    worker_id: str | None = None,
) -> Text:
    """The bar's content (pure, so it is unit-tested). The worker's name comes first and its id
    last: on a narrow terminal the id is what gets cut."""
    glyph, colour = STATE_STYLES.get(state, ("?", "yellow"))
    text = Text("Pendra worker ", style="bold")
    if name:
        text.append(f"{name} ", style="bold")
    text.append(f" {glyph} {state}", style=f"bold {colour}")
    if uptime_s is not None:
        text.append(f"   up {format_duration(uptime_s)}")
    if private is not None and state != "not running":
        text.append("   ")
        text.append_text(private_text(private))
    if version:
        text.append(f"   v{version}", style="dim")
    if worker_id and state != "not running":
        text.append(f"   {worker_id}", style="dim")
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
    worker_name: reactive[str | None] = reactive(None)
    """``worker_name``: what the console calls this worker."""
    worker_id: reactive[str | None] = reactive(None)
    """``worker_id``: the worker's stable id."""
    error: reactive[str | None] = reactive(None)
    """Why the worker is not reachable (shown while ``state`` is "not running")."""
    private: reactive[PrivateInferenceView | None] = reactive(None, always_update=True)
    """The worker's private inference (None: not reported)."""

    def render(self) -> Text:
        return link_text(
            self.state,
            self.uptime_s,
            self.version,
            self.private,
            name=self.worker_name,
            worker_id=self.worker_id,
        )

    def watch_state(self, state: str) -> None:
        for name in STATE_STYLES:
            self.set_class(name == state, f"-{name.replace(' ', '-')}")

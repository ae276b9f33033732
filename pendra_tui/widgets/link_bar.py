"""The one-line bar at the top of the dashboard: link state and why, uptime, version."""

from __future__ import annotations

from dataclasses import dataclass

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

SEPARATOR = ("  ·  ", "dim")


@dataclass(frozen=True)
class LinkInfo:
    """Everything the bar shows; the dashboard builds a new one each second."""

    state: str = "connecting"
    uptime_s: float | None = None
    version: str | None = None
    reason: str | None = None
    """Why the link (or the worker) is down."""
    retry_in_s: float | None = None
    """Seconds to the next reconnect attempt, while the worker waits for it."""
    drained: bool = False
    """The worker stopped because it was drained from here."""
    in_flight: int = 0


def link_text(info: LinkInfo, width: int = 200) -> Text:
    """The bar's content (pure). The reason is cut to the width left, never the keys."""
    glyph, colour = STATE_STYLES.get(info.state, ("?", "yellow"))
    head = Text.assemble(
        ("Pendra worker", "bold"), "  ", (f"{glyph} {info.state}", f"bold {colour}")
    )
    tail = Text()
    if info.state == "not running":
        if info.drained:
            tail.append_text(Text.assemble(SEPARATOR, ("stopped after draining", "italic")))
        tail.append_text(
            Text.assemble(SEPARATOR, ("R", "bold"), " start it  ", ("r", "bold"), " retry")
        )
    elif info.state == "draining":
        tail.append_text(
            Text.assemble(SEPARATOR, f"finishing {info.in_flight} in flight, then it exits")
        )
    elif info.state in ("offline", "connecting") and (info.reason or info.retry_in_s is not None):
        if info.retry_in_s is not None:
            tail.append_text(
                Text.assemble(
                    SEPARATOR,
                    f"retry in {format_duration(info.retry_in_s)}  ",
                    ("r", "bold"),
                    " now",
                )
            )
    else:
        if info.uptime_s is not None:
            tail.append_text(Text.assemble(SEPARATOR, f"up {format_duration(info.uptime_s)}"))
        if info.version:
            tail.append_text(Text.assemble(SEPARATOR, (f"v{info.version}", "dim")))
    reason = info.reason if info.state in ("offline", "connecting") else None
    if reason:
        room = width - head.cell_len - tail.cell_len - len(SEPARATOR[0])
        if room >= 12:
            cut = reason if len(reason) <= room else reason[: room - 1] + "…"
            head.append_text(Text.assemble(SEPARATOR, (cut, "italic")))
    head.append_text(tail)
    return head


class LinkBar(Static):
    """Link state, why it is down and when it retries, uptime and version."""

    info: reactive[LinkInfo] = reactive(LinkInfo)
    """What to show; the dashboard sets a new :class:`LinkInfo` when anything changes."""

    @property
    def state(self) -> str:
        return self.info.state

    def render(self) -> Text:
        return link_text(self.info, max(20, self.content_size.width))

    def watch_info(self, info: LinkInfo) -> None:
        for name in STATE_STYLES:
            self.set_class(name == info.state, f"-{name.replace(' ', '-')}")

"""The one-line bar at the top of the dashboard: which worker, link state, uptime, private
inference, version."""

from __future__ import annotations

from dataclasses import dataclass

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

NAME_SHOWN = 24
"""Characters of the worker's name the bar shows before cutting it (the keys must stay)."""

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


WIDE_SEPARATOR = "  ·  "
NARROW_SEPARATOR = " · "


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
    name: str | None = None
    """``worker_name``: what the console calls this worker."""
    worker_id: str | None = None
    """``worker_id``: the worker's stable id (the first thing to give way)."""
    private: PrivateInferenceView | None = None
    """The worker's private inference (``None``: not reported)."""


def _parts(info: LinkInfo) -> tuple[list[tuple[Text, int]], Text | None]:
    """The bar's pieces after the state, each with how readily it gives way on a narrow terminal
    (higher goes first; 0 never), and the reason the link is down (cut rather than dropped)."""
    parts: list[tuple[Text, int]] = []
    reason = None
    if info.state == "not running":
        if info.drained:
            parts.append((Text("stopped after draining", style="italic"), 1))
        parts.append((Text.assemble(("R", "bold"), " start it  ", ("r", "bold"), " retry"), 0))
    elif info.state == "draining":
        parts.append((Text(f"finishing {info.in_flight} in flight, then it exits"), 0))
    elif info.state in ("offline", "connecting") and (info.reason or info.retry_in_s is not None):
        if info.reason:
            reason = Text(info.reason, style="italic")
        if info.retry_in_s is not None:
            retry = f"retry in {format_duration(info.retry_in_s)}  "
            parts.append((Text.assemble(retry, ("r", "bold"), " now"), 0))
    else:
        if info.uptime_s is not None:
            parts.append((Text(f"up {format_duration(info.uptime_s)}"), 2))
        if info.private is not None:
            parts.append((private_text(info.private), 1))
        if info.version:
            parts.append((Text(f"v{info.version}", style="dim"), 3))
        if info.worker_id:
            parts.append((Text(info.worker_id, style="dim"), 4))
    return parts, reason


def _head(info: LinkInfo, with_name: bool) -> Text:
    glyph, colour = STATE_STYLES.get(info.state, ("?", "yellow"))
    head = Text("Pendra worker", style="bold")
    if info.name and with_name:  # the console's label, shown in full up to a sane length
        name = info.name if len(info.name) <= NAME_SHOWN else info.name[: NAME_SHOWN - 1] + "…"
        head.append(f" {name}", style="bold")
    head.append("  ")
    head.append(f"{glyph} {info.state}", style=f"bold {colour}")
    return head


def link_text(info: LinkInfo, width: int = 200) -> Text:
    """The bar's content (pure). When it does not fit, the separators narrow, the least telling
    pieces give way (id, version, uptime), then the worker's name if that shows the reason the
    link is down in full, then the reason is cut — never the keys."""
    text = _fitted(info, width, with_name=True)
    _, reason = _parts(info)
    if info.name and reason is not None and reason.plain not in text.plain:
        return _fitted(info, width, with_name=False)  # why it is down matters more now
    return text


def _fitted(info: LinkInfo, width: int, *, with_name: bool) -> Text:
    head = _head(info, with_name)
    parts, reason = _parts(info)

    def joined(separator: str, reason_text: Text | None, kept: list[tuple[Text, int]]) -> Text:
        text = head.copy()
        for part in ([reason_text] if reason_text is not None else []) + [p for p, _ in kept]:
            text.append(separator, style="dim")
            text.append_text(part)
        return text

    for separator in (WIDE_SEPARATOR, NARROW_SEPARATOR):
        text = joined(separator, reason, parts)
        if text.cell_len <= width:
            return text
    kept = list(parts)
    for rank in sorted({rank for _, rank in parts if rank}, reverse=True):
        if joined(NARROW_SEPARATOR, reason, kept).cell_len <= width:
            break
        kept = [(part, r) for part, r in kept if r != rank]
    without = joined(NARROW_SEPARATOR, None, kept)
    room = width - without.cell_len - len(NARROW_SEPARATOR)
    if reason is None or room < 12:
        return without
    if joined(NARROW_SEPARATOR, reason, kept).cell_len <= width:
        return joined(NARROW_SEPARATOR, reason, kept)
    cut = reason.copy()
    cut.truncate(room - 1)
    cut.append("…", style="italic")
    return joined(NARROW_SEPARATOR, cut, kept)


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

"""The log pane's view: follows the tail, filters by level and search words, wraps on demand.

It follows new lines by default — also on start and attach, where it opens at the newest line —
and stops following as soon as the user scrolls up; ``f`` or End follows again (so does scrolling
back to the bottom). Search words are highlighted in the lines that match.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from pendra_tui.log_lines import LEVELS, line_level, next_level, passes

LEVEL_STYLES = {"debug": "dim", "warning": "yellow", "error": "red"}
"""Whole lines take their level's colour, so a warning stands out in a busy log."""
MAX_LINES = 2000
"""Lines kept: as many as the worker's own tail."""


class LogView(ScrollView, can_focus=True):
    """Log lines with level filter, search, wrap and follow-the-tail."""

    DEFAULT_CSS = """
    LogView {
        background: $surface;
        overflow-y: auto;
        overflow-x: auto;
        scrollbar-size-vertical: 1;
    }
    LogView.-wrap { overflow-x: hidden; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f,end", "follow", "Follow", key_display="f"),
        Binding("w", "toggle_wrap", "Wrap"),
        Binding("l", "next_level", "Level"),
    ]
    """The pane's own keys; ``/`` (search) belongs to the dashboard."""

    follow: reactive[bool] = reactive(True)
    """Keep the newest line in view."""
    wrap: reactive[bool] = reactive(False)
    min_level: reactive[str] = reactive("debug")
    """Lines below this level are hidden."""
    query: reactive[str] = reactive("")
    """Only lines containing every word of this are shown."""

    class Changed(Message):
        """Follow, wrap, level or search changed, or lines arrived: the status line redraws."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._lines: deque[str] = deque(maxlen=MAX_LINES)
        self._rows: list[Strip] = []
        self._shown = 0
        """Lines that pass the filter (for the status line)."""
        self._built_width = -1
        self._programmatic = 0

    # -- content ---------------------------------------------------------------------------------
    @property
    def lines(self) -> list[str]:
        """Every line kept, filtered or not."""
        return list(self._lines)

    @property
    def shown_count(self) -> int:
        return self._shown

    def set_lines(self, lines: Iterable[str]) -> None:
        """Replace the content (a fresh log tail)."""
        self._lines.clear()
        self._lines.extend(line.rstrip("\n") for line in lines)
        self._rebuild()

    def write_line(self, line: str) -> None:
        """Append one line; scrolls to it when following."""
        dropped = len(self._lines) == self._lines.maxlen
        self._lines.append(line.rstrip("\n"))
        if dropped or self._built_width < 0:
            self._rebuild()
            return
        if passes(self._lines[-1], self.min_level, self.query):
            self._shown += 1
            self._rows.extend(self._render(self._lines[-1], self._width()))
            self._resize_virtual()
            self._after_change()
        self.post_message(self.Changed())

    # -- keys --------------------------------------------------------------------------------------
    def action_follow(self) -> None:
        self.follow = True

    def action_toggle_wrap(self) -> None:
        self.wrap = not self.wrap

    def action_next_level(self) -> None:
        self.min_level = next_level(self.min_level)

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self._scroll_to_end()
        self.post_message(self.Changed())

    def watch_wrap(self, wrap: bool) -> None:
        self.set_class(wrap, "-wrap")
        self._rebuild()

    def watch_min_level(self) -> None:
        self._rebuild()

    def watch_query(self) -> None:
        self._rebuild()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._programmatic:
            return
        at_end = new_value >= self.max_scroll_y
        if new_value < old_value and not at_end:
            self.follow = False
        elif at_end and not self.follow and new_value > old_value:
            self.follow = True

    def on_resize(self, _event: events.Resize) -> None:
        if self._width() != self._built_width:
            self._rebuild()
        elif self.follow:
            self._scroll_to_end()
        if self.follow:
            # The size (so the bottom) settles with this refresh: shown for the first time, a
            # hidden tab's log must open at its newest line.
            self.call_after_refresh(self._scroll_to_end)

    # -- rendering ---------------------------------------------------------------------------------
    def _width(self) -> int:
        return max(1, self.scrollable_content_region.width or self.size.width)

    def _render(self, line: str, width: int) -> list[Strip]:
        text = Text(line, no_wrap=not self.wrap, overflow="fold")
        style = LEVEL_STYLES.get(line_level(line))
        if style:
            text.stylize(style)
        for word in self.query.split():
            text.highlight_words([word], style="reverse", case_sensitive=False)
        console = self.app.console
        if not self.wrap:
            return [Strip(list(text.render(console)), text.cell_len)]
        strips = []
        for piece in text.wrap(console, width, overflow="fold"):
            strips.append(Strip(list(piece.render(console)), piece.cell_len))
        return strips or [Strip.blank(width)]

    def _rebuild(self) -> None:
        width = self._width()
        if self.size.width <= 0:
            return
        self._built_width = width
        rows: list[Strip] = []
        shown = 0
        for line in self._lines:
            if passes(line, self.min_level, self.query):
                shown += 1
                rows.extend(self._render(line, width))
        self._rows = rows
        self._shown = shown
        self._resize_virtual()
        self.refresh()
        self._after_change()
        self.post_message(self.Changed())

    def _resize_virtual(self) -> None:
        widest = max((row.cell_length for row in self._rows), default=0)
        self.virtual_size = Size(self._width() if self.wrap else widest, len(self._rows))

    def _after_change(self) -> None:
        if self.follow:
            self._scroll_to_end()
        else:
            self.refresh()

    def _scroll_to_end(self) -> None:
        self._programmatic += 1
        try:
            # force: before its first layout the view may not think it can scroll yet
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True, force=True)
        finally:
            self._programmatic -= 1
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        style = self.rich_style
        if index >= len(self._rows):
            return Strip.blank(width, style)
        return self._rows[index].crop_extend(scroll_x, scroll_x + width, style)

    def status_text(self) -> Text:
        """``level ≥ info · 120 of 500 lines · wrap · following`` for the pane's status line."""
        text = Text()
        text.append("level ≥ ", style="dim")
        text.append(self.min_level, style="bold")
        text.append(f" · {self._shown} of {len(self._lines)} lines", style="dim")
        if self.query:
            text.append(" · search ", style="dim")
            text.append(repr(self.query), style="bold")
        text.append(" · wrap" if self.wrap else " · no wrap", style="dim")
        if self.follow:
            text.append(" · following", style="green")
        else:
            text.append(" · paused (f follows)", style="yellow")
        return text


__all__ = ["LEVELS", "LogView"]

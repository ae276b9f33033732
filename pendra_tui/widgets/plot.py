"""The braille area plot widget: sizes and colours what :mod:`pendra_tui.plotting` draws."""

from __future__ import annotations

from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from pendra_tui.plotting import BRAILLE_BASE, Point, braille_area, bucket_series, nice_ceiling


class Plot(Widget):
    """A braille area plot filling its size; ``points`` are ``(ts, value)`` oldest first.

    With ``maximum=None`` the scale is the next round number above the highest value shown.
    ``gradient`` colours columns by how high they reach (warning above half the scale, error
    above 80 %: utilisation, memory); otherwise one colour. Drawn with the line API from strips
    cached until the data or the size changes: plots redraw every 2 s, so they must be cheap.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"plot--bar", "plot--mid", "plot--high", "plot--axis"}
    """``plot--bar`` the area, ``plot--mid``/``plot--high`` the upper bands of a gradient plot,
    ``plot--axis`` the empty baseline."""

    DEFAULT_CSS = """
    Plot {
        width: 1fr;
        height: 1fr;
        min-height: 1;
    }
    Plot > .plot--bar { color: $success; }
    Plot > .plot--mid { color: $warning; }
    Plot > .plot--high { color: $error; }
    Plot > .plot--axis { color: $panel-lighten-2; }
    """

    points: reactive[tuple[Point, ...]] = reactive((), layout=False)
    """The samples, oldest first (a new tuple each update, so the reactive fires)."""
    end_ts: reactive[float | None] = reactive(None)
    """The right edge of the window (the newest sample's time); ``None``: the last point's."""
    window_s: reactive[float] = reactive(300.0)
    """Seconds the plot spans."""

    def __init__(
        self,
        *,
        maximum: float | None = None,
        gradient: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.maximum = maximum
        """Fixed top of the scale (100 for percentages), or ``None`` to scale to the data."""
        self.gradient = gradient
        self.shown_maximum = maximum or 1.0
        """The scale of the last rendering (what the labels quote as the plot's top)."""
        self._strips: list[Strip] | None = None

    def columns(self) -> list[float | None]:
        """The values of the current window, one per dot column of the current width."""
        width = self.size.width
        if width <= 0 or not self.points:
            return []
        end = self.end_ts if self.end_ts is not None else self.points[-1][0]
        return bucket_series(self.points, end, self.window_s, width * 2)

    def _invalidate(self) -> None:
        self._strips = None
        self.refresh()

    def watch_points(self) -> None:
        self._invalidate()

    def watch_end_ts(self) -> None:
        self._invalidate()

    def watch_window_s(self) -> None:
        self._invalidate()

    def on_resize(self) -> None:
        self._invalidate()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = None  # the theme changed: colours with it

    def rows_text(self) -> list[str]:
        """The plot as plain text rows (what the strips show, without colour)."""
        return [strip.text for strip in self._build()]

    def render_line(self, y: int) -> Strip:
        strips = self._build()
        if 0 <= y < len(strips):
            return strips[y]
        return Strip.blank(self.size.width, self.rich_style)

    def _build(self) -> list[Strip]:
        if self._strips is not None:
            return self._strips
        width, height = self.size.width, max(1, self.size.height)
        values = self.columns()
        if self.maximum is not None:
            top = self.maximum
        else:
            top = nice_ceiling(max((v for v in values if v is not None), default=0.0))
        self.shown_maximum = top
        rows = braille_area(values, height, top) if values else []
        blank = chr(BRAILLE_BASE)
        base = self.rich_style
        cell_styles = [base + style for style in self._cell_styles(values, top, width)]
        axis = base + self.get_component_rich_style("plot--axis")
        strips = []
        for index in range(height):
            row = rows[index] if index < len(rows) else ""
            row = row.rjust(width, blank)[:width]
            bottom = index == height - 1
            segments: list[Segment] = []
            run, run_style = "", None
            for column, char in enumerate(row):
                if char == blank and bottom:
                    char, style = "⣀", axis  # a faint baseline: an idle plot reads as "0"
                else:
                    style = cell_styles[column]
                if style is run_style:
                    run += char
                else:
                    if run:
                        segments.append(Segment(run, run_style))
                    run, run_style = char, style
            if run:
                segments.append(Segment(run, run_style))
            strips.append(Strip(segments, width))
        self._strips = strips
        return strips

    def _cell_styles(self, values: list[float | None], top: float, width: int) -> list[Style]:
        """One style per character cell: the bar colour, or for a gradient plot the colour of
        the higher of the cell's two values (warning above half the scale, error above 80 %)."""
        bar = self.get_component_rich_style("plot--bar")
        if not self.gradient or top <= 0:
            return [bar] * width
        mid = self.get_component_rich_style("plot--mid")
        high = self.get_component_rich_style("plot--high")
        pairs = [
            max((v for v in values[i : i + 2] if v is not None), default=0.0)
            for i in range(0, len(values), 2)
        ]
        pairs = [0.0] * (width - len(pairs)) + pairs
        styles = []
        for value in pairs[:width]:
            level = value / top
            styles.append(high if level >= 0.8 else mid if level >= 0.5 else bar)
        return styles

"""The braille area plot widget: sizes and colours what :mod:`pendra_tui.plotting` draws."""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from pendra_tui.plotting import BRAILLE_BASE, Point, braille_area, bucket_series, nice_ceiling


class Plot(Widget):
    """A braille area plot filling its size; ``points`` are ``(ts, value)`` oldest first.

    With ``maximum=None`` the scale is the next round number above the highest value shown.
    ``gradient`` colours the upper rows as warnings (utilisation, memory); otherwise one colour.
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

    def columns(self) -> list[float | None]:
        """The values of the current window, one per dot column of the current width."""
        width = self.size.width
        if width <= 0 or not self.points:
            return []
        end = self.end_ts if self.end_ts is not None else self.points[-1][0]
        return bucket_series(self.points, end, self.window_s, width * 2)

    def render(self) -> Text:
        height = max(1, self.size.height)
        width = self.size.width
        values = self.columns()
        if self.maximum is not None:
            top = self.maximum
        else:
            top = nice_ceiling(max((v for v in values if v is not None), default=0.0))
        self.shown_maximum = top
        rows = braille_area(values, height, top) if values else []
        blank = chr(BRAILLE_BASE)
        cell_styles = self._cell_styles(values, top, width)
        axis = self.get_component_rich_style("plot--axis")
        text = Text(no_wrap=True, overflow="crop")
        for index in range(height):
            row = rows[index] if index < len(rows) else ""
            row = row.rjust(width, blank)[:width]
            bottom = index == height - 1
            for column, char in enumerate(row):
                if char == blank and bottom:
                    text.append("⣀", axis)  # a faint baseline: an idle plot reads as "0"
                else:
                    text.append(char, cell_styles[column])
            if not bottom:
                text.append("\n")
        return text

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

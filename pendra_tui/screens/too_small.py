"""Shown instead of a squashed screen when the terminal is smaller than the app needs."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import Static

MIN_SIZE = (80, 24)
"""Columns and rows every screen is designed (and snapshot-tested) for."""


def too_small_text(width: int, height: int) -> str:
    """``terminal too small (need 80×24, have 60×20)`` (pure)."""
    need_w, need_h = MIN_SIZE
    return (
        f"terminal too small (need {need_w}×{need_h}, have {width}×{height})\n"
        "make the window bigger; q quits"
    )


def is_too_small(width: int, height: int) -> bool:
    return width < MIN_SIZE[0] or height < MIN_SIZE[1]


class TooSmallScreen(ModalScreen[None]):
    """Covers the app until the terminal is big enough again; the app pops it then."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "app.quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Static(too_small_text(*self.app.size), id="too-small")

    def on_resize(self) -> None:
        self.query_one("#too-small", Static).update(too_small_text(*self.app.size))

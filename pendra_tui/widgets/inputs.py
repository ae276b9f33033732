"""Text inputs that honour the app's deterministic mode (no blinking cursor in snapshots)."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.widgets import Input


def steady_input(app: App[Any], **kwargs: Any) -> Input:
    """An :class:`Input`; its cursor does not blink when the app is deterministic."""
    field = Input(**kwargs)
    if getattr(app, "deterministic", False):
        field.cursor_blink = False
    return field

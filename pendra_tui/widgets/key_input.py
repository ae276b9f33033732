"""The masked worker-key field: a paste of a wrapped key keeps every line, minus whitespace."""

from __future__ import annotations

import re

from textual import events
from textual.widgets import Input

_WHITESPACE = re.compile(r"\s+")


def clean_key(text: str) -> str:
    """Drop every whitespace character: pasted keys arrive wrapped or with a trailing newline."""
    return _WHITESPACE.sub("", text)


class KeyInput(Input):
    """A password :class:`Input` whose paste joins lines (``Input`` keeps only the first)."""

    def _on_paste(self, event: events.Paste) -> None:
        event.prevent_default()  # Input's own handler would insert the first line again
        text = clean_key(event.text)
        if text:
            selection = self.selection
            if selection.is_empty:
                self.insert_text_at_cursor(text)
            else:
                self.replace(text, *selection)
        event.stop()

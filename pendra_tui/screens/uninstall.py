"""Pick an installed model to remove, on a backend that allows removing it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from pendra_tui.dashboard_model import BackendView


def uninstallable(backends: Sequence[BackendView]) -> list[tuple[str, str]]:
    """``(model id, backend)`` pairs whose backend can uninstall (pure)."""
    return [
        (model_id, view.name)
        for view in backends
        if view.capabilities.get("uninstall")
        for model_id in view.model_ids
    ]


class UninstallScreen(ModalScreen[tuple[str, str] | None]):
    """A list of removable models; enter picks one, escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self._choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(
                "[b]Remove a model[/b]  (enter removes, esc cancels)", classes="dialog-title"
            )
            yield OptionList(
                *(
                    Option(f"{model}  [dim]on {backend}[/dim]", id=str(i))
                    for i, (model, backend) in enumerate(self._choices)
                ),
                id="uninstall-list",
            )

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self._choices[int(event.option_id or 0)])

    def action_cancel(self) -> None:
        self.dismiss(None)

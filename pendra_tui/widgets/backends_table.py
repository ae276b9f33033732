"""The dashboard's backends table.

Only backends the worker has are rows: the built-in one and every external backend with an
endpoint (found, or configured and failing). Kinds switched off or never found are counted in
the tab's subtitle instead of filling the table with "disabled" rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pendra_tui.dashboard_model import BackendView, capability_summary
from pendra_tui.widgets.sortable_table import Column, Row, SortableTable

STATUS_ORDER = {"ready": 0, "error": 1, "unreachable": 2, "disabled": 3}


def backend_cells(view: BackendView) -> dict[str, str]:
    """One row's cells (pure)."""
    builtin = view.name == "pendra"
    return {
        "backend": "pendra (built-in)" if builtin else view.name,
        "status": view.status,
        "endpoint": view.endpoint or ("in-process" if builtin else "—"),
        "models": str(len(view.models)),
        "capabilities": capability_summary(view.capabilities),
        "detail": view.detail or "",
    }


def backend_row(view: BackendView) -> Row:
    return Row(
        key=view.name,
        cells=backend_cells(view),
        sort={"status": STATUS_ORDER.get(view.status, 9), "models": len(view.models)},
    )


def shown_backends(backends: Sequence[BackendView]) -> tuple[list[BackendView], str]:
    """The rows worth a line, and a note counting the rest (pure).

    Shown: the built-in backend and any backend with an endpoint. Left out: kinds that are off
    (``disabled``) and kinds auto-discovery did not find (no endpoint). The words are the ones
    ``pendra status`` and ``pendra backends`` use.
    """
    shown = [b for b in backends if b.name == "pendra" or (b.endpoint and b.status != "disabled")]
    off = sum(1 for b in backends if b not in shown and b.status == "disabled")
    missing = sum(1 for b in backends if b not in shown and b.status != "disabled")
    parts = [f"{missing} unreachable (not found)"] if missing else []
    if off:
        parts.append(f"{off} disabled")
    return shown, " · ".join(parts)


class BackendsTable(SortableTable):
    """Backends with status, endpoint, model count and capabilities."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("backend", "backend"),
        Column("status", "status"),
        Column("endpoint", "endpoint", drop=2),
        Column("models", "models", drop=3, numeric=True),
        Column("capabilities", "capabilities", drop=4),
        Column("detail", "detail", drop=5),
    )

    def show_backends(self, backends: Sequence[BackendView]) -> str:
        """Show the rows; returns the note about the backends left out."""
        shown, note = shown_backends(backends)
        self.show([backend_row(view) for view in shown])
        return note

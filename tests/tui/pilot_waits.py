"""Waiting on and reading the app under a Pilot, for tests that drive it against real processes."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot

from pendra_tui.screens.dashboard import DashboardScreen


async def wait_for(
    pilot: Pilot, predicate: Callable[[], bool], what: str, timeout: float = 30
) -> None:
    """Let the app run until ``predicate()`` holds; fail naming ``what`` after ``timeout``
    seconds (a guard against a hang, not a speed bound)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.05)


def plain(renderable: Any, width: int = 400) -> str:
    """What a Rich renderable shows, as plain text with runs of spaces squeezed to two."""
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return "\n".join(
        re.sub(r"  +", "  ", line.strip()) for line in console.export_text().splitlines()
    )


def dashboard(pilot: Pilot) -> DashboardScreen:
    screen = pilot.app.screen
    assert isinstance(screen, DashboardScreen), type(screen).__name__
    return screen

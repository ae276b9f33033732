"""Snapshots of every screen and its main states at 80×24 and 120×40 (fixed data, fixed clock).

Regenerate after a deliberate UI change with
``.venv/bin/python -m pytest tests/tui/test_tui_snapshots.py --snapshot-update`` and look at the
SVGs before committing them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_fakes import FAKE_KEY
from tui_scenarios import SCENARIOS, SIZES, Scenario, quiet, settle

pytestmark = pytest.mark.timeout(120)

SNAPSHOTS = Path(__file__).parent / "__snapshots__" / "test_tui_snapshots"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_screen(snap_compare, scenario: Scenario, size: tuple[int, int]) -> None:
    assert snap_compare(scenario.build(), run_before=scenario.run_before, terminal_size=size), (
        scenario.description
    )


@pytest.mark.parametrize("size", [(79, 24), (100, 20)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_too_small_a_terminal_says_so(snap_compare, size: tuple[int, int]) -> None:
    """Below 80×24: one clear line instead of panels dropped silently."""
    import tui_fakes
    from tui_fakes import make_services

    from pendra_tui.app import build_app
    from pendra_tui.screens.too_small import TooSmallScreen

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot, lambda: isinstance(pilot.app.screen, TooSmallScreen))
        await quiet(pilot)

    app = build_app(
        make_services(worker=tui_fakes.dashboard_worker()), start="dashboard", deterministic=True
    )
    assert snap_compare(app, run_before=run_before, terminal_size=size)


def test_the_key_never_appears_in_a_snapshot() -> None:
    """Masked state only: not the key, nor any long piece of it, is in any stored SVG."""
    svgs = sorted(SNAPSHOTS.glob("*.svg"))
    assert any("key-masked" in p.name for p in svgs), "generate the snapshots first"
    for path in svgs:
        text = path.read_text(encoding="utf-8")
        for start in range(0, len(FAKE_KEY) - 8):
            assert FAKE_KEY[start : start + 8] not in text, path.name


def test_screenshots_keep_the_spaces_between_styled_runs() -> None:
    """Bug: the README's screenshot read "● connectedup 2h 14m": viewers that drop leading
    spaces of an SVG text run joined the two. Every screenshot keeps them."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "screenshots", root / "scripts" / "screenshots.py"
    )
    assert spec and spec.loader
    screenshots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(screenshots)
    svg = '<svg class="rich-terminal" viewBox="0 0 10 10"><text>&#160;&#160;up</text></svg>'
    fixed = screenshots.preserve_spaces(svg)
    assert fixed.startswith('<svg xml:space="preserve" class="rich-terminal"')
    assert screenshots.preserve_spaces(fixed) == fixed
    shots = sorted((root / "screenshots").glob("*.svg"))
    assert shots
    for path in shots:
        assert 'xml:space="preserve"' in path.read_text(encoding="utf-8")[:200], path.name

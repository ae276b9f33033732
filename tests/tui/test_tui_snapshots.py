"""Snapshots of every screen and its main states at 80×24 and 120×40 (fixed data, fixed clock).

Regenerate after a deliberate UI change with
``.venv/bin/python -m pytest tests/tui/test_tui_snapshots.py --snapshot-update`` and look at the
SVGs before committing them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_fakes import FAKE_KEY
from tui_scenarios import SCENARIOS, SIZES, Scenario

pytestmark = pytest.mark.timeout(120)

SNAPSHOTS = Path(__file__).parent / "__snapshots__" / "test_tui_snapshots"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_screen(snap_compare, scenario: Scenario, size: tuple[int, int]) -> None:
    assert snap_compare(scenario.build(), run_before=scenario.run_before, terminal_size=size), (
        scenario.description
    )


def test_the_key_never_appears_in_a_snapshot() -> None:
    """Masked state only: not the key, nor any long piece of it, is in any stored SVG."""
    svgs = sorted(SNAPSHOTS.glob("*.svg"))
    assert any("key-masked" in p.name for p in svgs), "generate the snapshots first"
    for path in svgs:
        text = path.read_text(encoding="utf-8")
        for start in range(0, len(FAKE_KEY) - 8):
            assert FAKE_KEY[start : start + 8] not in text, path.name

"""Regenerate ``screenshots/*.svg`` from the same fixed scenarios as the snapshot tests.

    .venv/bin/python scripts/screenshots.py          # every screen at 120x40
    .venv/bin/python scripts/screenshots.py --size 80x24

Runs with a throwaway PENDRA_HOME and the fakes in tests/tui (fixed data, fixed clock), so the
images are the same on every machine and never show a real key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


SVG_ROOT = '<svg class="rich-terminal"'


def preserve_spaces(svg: str) -> str:
    """Make every viewer keep the spaces at the start of a text run.

    Textual writes each run of one style as its own ``<text>``; a run that starts with spaces
    (``"   up 2h 14m"`` after a bold ``"● connected"``) lost them in viewers that apply SVG's
    default whitespace handling to non-breaking spaces too (librsvg, hence many converters and
    previews), so the README showed ``● connectedup 2h 14m``. ``xml:space="preserve"`` on the
    root keeps them everywhere.
    """
    if "xml:space=" in svg.split(">", 1)[0]:
        return svg
    return svg.replace(SVG_ROOT, '<svg xml:space="preserve" class="rich-terminal"', 1)


async def capture(scenario, size: tuple[int, int], out: Path) -> Path:  # type: ignore[no-untyped-def]
    app = scenario.build()
    async with app.run_test(size=size) as pilot:
        await scenario.run_before(pilot)
        await pilot.pause(0.1)
        path = out / f"{scenario.name}.svg"
        path.write_text(preserve_spaces(app.export_screenshot()), encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="120x40", help="terminal size, COLSxROWS")
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    args = parser.parse_args()
    cols, rows = (int(part) for part in args.size.lower().split("x"))
    os.environ["PENDRA_HOME"] = tempfile.mkdtemp(prefix="pendra-screens-")
    sys.path.insert(0, str(ROOT / "tests" / "tui"))
    sys.path.insert(0, str(ROOT))
    from tui_scenarios import SCENARIOS

    args.out.mkdir(parents=True, exist_ok=True)
    for scenario in SCENARIOS:
        path = asyncio.run(capture(scenario, (cols, rows), args.out))
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``bench/bench_install.py --quick`` runs end to end (real server process, real curl, the real
download), so the install bench never rots. Its numbers at 16 MiB mean nothing; only their shape
is checked."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("curl") is None, reason="the bench compares against curl")
def test_install_bench_quick_prints_its_section_and_ratio() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_install.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("bench ratios | install"))
    assert re.search(r"pendra/curl=\d+\.\d\dx", line)
    assert proc.stdout.startswith("## Install throughput")
    assert re.search(r"\| curl -o \| \d+ \| \d+, \d+ \|", proc.stdout)
    assert re.search(r"\| pendra install download \| \d+ \| \d+, \d+ \|", proc.stdout)
    assert "Load average" in proc.stdout

"""Package boundaries: the worker and the installer never import Textual or the app."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("textual", "pendra_tui")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_textual_imports_in_worker_or_installer_source() -> None:
    offenders = []
    for package in ("worker", "installer"):
        for path in sorted((ROOT / package).rglob("*.py")):
            bad = _imports(path) & set(FORBIDDEN)
            if bad:
                offenders.append(f"{path.relative_to(ROOT)}: {sorted(bad)}")
    assert offenders == []


def test_importing_every_worker_and_installer_module_loads_no_textual() -> None:
    script = """
import importlib, pkgutil, sys
import worker, installer
for package in (worker, installer):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "pendra_tui"))
print(",".join(bad))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_cli_help_is_fast_and_lists_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--no-ui" in result.stdout

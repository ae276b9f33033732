"""Fixtures shared by the whole suite.

Every test runs with its own ``PENDRA_HOME`` under pytest's tmp dir and with no backend endpoint
variables from the developer's shell, so nothing a test does touches the real ``~/.pendra``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.settings import BACKEND_KINDS

_LEAKY_VARS = (
    "PENDRA_HOME",
    "PENDRA_MODELS_DIR",
    "PENDRA_API_URL",
    "PENDRA_WORKER_KEY",
    "PENDRA_WORKER_KEY_FILE",
    "OPENAI_API_KEY",
    *(f"{kind.upper()}_ENDPOINT" for kind in BACKEND_KINDS),
)


@pytest.fixture(autouse=True)
def pendra_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh PENDRA_HOME for each test, with the developer's environment scrubbed."""
    for name in _LEAKY_VARS:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "pendra-home"
    home.mkdir()
    monkeypatch.setenv("PENDRA_HOME", str(home))
    return home


@pytest.fixture
def clean_env(pendra_home: Path) -> dict[str, str]:
    """A copy of the environment for child processes, pointed at the test's PENDRA_HOME."""
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_VARS}
    env["PENDRA_HOME"] = str(pendra_home)
    return env

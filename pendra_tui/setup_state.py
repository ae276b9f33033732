"""What the user decided in the setup flow so far; kept on the app so Back loses nothing.

The functions here are pure: which checks block, which backends are on, and where each chosen
model will be installed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pendra_tui.backend_config import AUTO, OFF
from pendra_tui.catalogue_rows import CatalogueRow, default_backend
from pendra_tui.services import BackendCandidate, CatalogueData, Check

STEPS: tuple[str, ...] = ("prereqs", "key", "catalogue", "backends", "review")
"""The setup steps in order; one screen each."""

RUN_MODES: tuple[str, ...] = ("process", "docker")
"""How Start runs the worker: as a process or service on this machine, or in a Docker container."""

STEP_TITLES: dict[str, str] = {
    "prereqs": "Prerequisites",
    "key": "Worker key",
    "catalogue": "Models",
    "backends": "Backends",
    "review": "Review & start",
}


@dataclass
class SetupState:
    checks: list[Check] | None = None
    """Results of the last prerequisite run; ``None`` before the first."""
    key_path: Path | None = None
    """Where the key was stored in this session (or found already stored)."""
    key_note: str = ""
    """The outcome of the live key check, shown on the Review screen."""
    catalogue: CatalogueData | None = None
    selected: list[str] = field(default_factory=list)
    """Refs chosen in the catalogue, in the order chosen."""
    candidates: list[BackendCandidate] | None = None
    """Discovered external backends; ``None`` until discovery ran."""
    endpoints: dict[str, str] = field(default_factory=dict)
    """Per kind the user changed: ``AUTO``, ``OFF`` or a verified URL."""
    builtin_enabled: bool = True
    verified: dict[str, BackendCandidate] = field(default_factory=dict)
    """The verification result of each explicit endpoint the user set."""
    run_mode: str = "process"
    """One of :data:`RUN_MODES`, chosen on the Review screen."""


def blocking_checks(checks: Sequence[Check]) -> list[Check]:
    """Required checks that failed: each one blocks Continue."""
    return [check for check in checks if check.blocks]


def backend_enabled(state: SetupState, kind: str) -> bool:
    if kind == "pendra":
        return state.builtin_enabled
    if kind in state.endpoints:
        return state.endpoints[kind] != OFF
    found = {c.kind: c for c in state.candidates or []}
    return kind not in found or found[kind].status != "disabled"


def usable_backends(state: SetupState) -> list[str]:
    """Backends that will be on and are known to answer (built-in first)."""
    names = ["pendra"] if state.builtin_enabled else []
    for candidate in state.candidates or []:
        if candidate.kind == "pendra":
            continue
        if backend_enabled(state, candidate.kind) and candidate.status == "ready":
            names.append(candidate.kind)
    for kind, result in state.verified.items():
        explicit = state.endpoints.get(kind) not in (None, OFF, AUTO)
        if explicit and result.status == "ready" and kind not in names:
            names.append(kind)
    return names


def install_plan(
    selected: Sequence[str], rows: Mapping[str, CatalogueRow], backends: Sequence[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """``(ref, backend)`` for each chosen model, and the refs nothing here can install."""
    planned: list[tuple[str, str]] = []
    impossible: list[str] = []
    for ref in selected:
        row = rows.get(ref)
        target = default_backend(row, backends) if row else None
        if target is None:
            impossible.append(ref)
        else:
            planned.append((ref, target))
    return planned, impossible

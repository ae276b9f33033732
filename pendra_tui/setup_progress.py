"""Where an unfinished setup stopped, so the next ``pendra`` picks it up there.

Each step the user reaches is saved to ``$PENDRA_HOME/setup-progress.json`` with the choices made
so far (models chosen, backends switched on or off, explicit endpoints, process or Docker) —
never the key, which
the key step has already stored 0600 where the worker reads it. Starting the worker from the
Review step deletes the file; so does a dashboard that finds a worker running (the setup was
finished some other way). A file that cannot be read is ignored: setup starts afresh, nothing
breaks.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pendra_tui.setup_state import RUN_MODES, STEPS, SetupState

FILE_NAME = "setup-progress.json"
VERSION = 1


@dataclass(frozen=True)
class Progress:
    """The saved part of a :class:`~pendra_tui.setup_state.SetupState` and the step reached."""

    step: str
    selected: list[str] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)
    builtin_enabled: bool = True
    saved_at: float = 0.0
    run_mode: str = "process"

    @classmethod
    def of(cls, state: SetupState, step: str, now: float) -> Progress:
        return cls(
            step=step,
            selected=list(state.selected),
            endpoints=dict(state.endpoints),
            builtin_enabled=state.builtin_enabled,
            saved_at=now,
            run_mode=state.run_mode,
        )

    def restore(self, state: SetupState) -> None:
        """Put the saved choices back into ``state`` (the catalogue and discovery run again)."""
        state.selected[:] = self.selected
        state.endpoints.clear()
        state.endpoints.update(self.endpoints)
        state.builtin_enabled = self.builtin_enabled
        if self.run_mode in RUN_MODES:
            state.run_mode = self.run_mode

    def as_json(self) -> str:
        return json.dumps(
            {
                "version": VERSION,
                "step": self.step,
                "selected": self.selected,
                "endpoints": self.endpoints,
                "builtin_enabled": self.builtin_enabled,
                "saved_at": self.saved_at,
                "run_mode": self.run_mode,
            },
            indent=2,
        )


def parse_progress(text: str) -> Progress | None:
    """The saved progress, or ``None`` for anything that is not a progress file of ours."""
    try:
        raw: Any = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("version") != VERSION or raw.get("step") not in STEPS:
        return None
    selected = raw.get("selected")
    endpoints = raw.get("endpoints")
    return Progress(
        step=str(raw["step"]),
        selected=[str(ref) for ref in selected] if isinstance(selected, list) else [],
        endpoints=(
            {str(k): str(v) for k, v in endpoints.items()} if isinstance(endpoints, dict) else {}
        ),
        builtin_enabled=bool(raw.get("builtin_enabled", True)),
        saved_at=float(raw.get("saved_at") or 0.0),
        run_mode=str(raw.get("run_mode") or "process"),
    )


class FileSetupProgress:
    """The progress file in ``home``; ``admin_socket`` tells whether a worker already runs."""

    def __init__(self, home: Path, admin_socket: Path) -> None:
        self.path = home / FILE_NAME
        self._admin_socket = admin_socket

    def save(self, state: SetupState, step: str) -> None:
        from worker.atomic_files import write_atomic

        progress = Progress.of(state, step, time.time())
        with contextlib.suppress(OSError):  # a read-only home loses the resume, not the setup
            write_atomic(self.path, progress.as_json().encode("utf-8"), mode=0o600)

    def resumable(self) -> Progress | None:
        """The saved progress when setup was left unfinished and no worker runs."""
        if self._admin_socket.exists():
            return None
        try:
            return parse_progress(self.path.read_text(encoding="utf-8"))
        except OSError:
            return None

    def clear(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

"""worker_id: generated once, saved to config.yaml, kept across restarts; pinned by WORKER_ID."""

from __future__ import annotations

import os
from pathlib import Path

from worker.identity import ensure_worker_id
from worker.settings import load_settings


def test_a_new_worker_id_is_saved_and_kept(pendra_home: Path) -> None:
    env = {"PENDRA_HOME": str(pendra_home)}
    settings, note = ensure_worker_id(load_settings(env))
    assert settings.worker_id and settings.worker_id.startswith("wrk-")
    assert note and "saved to" in note
    assert os.stat(pendra_home / "config.yaml").st_mode & 0o777 == 0o600
    again, second_note = ensure_worker_id(load_settings(env))
    assert again.worker_id == settings.worker_id and second_note is None


def test_worker_id_from_the_environment_is_not_written(pendra_home: Path) -> None:
    settings, note = ensure_worker_id(
        load_settings({"PENDRA_HOME": str(pendra_home), "WORKER_ID": "wrk-pinned"})
    )
    assert settings.worker_id == "wrk-pinned" and note is None
    assert not (pendra_home / "config.yaml").exists()


def test_an_unwritable_home_runs_with_a_fresh_id_and_says_so(pendra_home: Path) -> None:
    (pendra_home / ".config.lock").mkdir()  # the lock cannot be opened: nothing can be saved
    settings, note = ensure_worker_id(load_settings({"PENDRA_HOME": str(pendra_home)}))
    assert settings.worker_id and note and "could not be saved" in note and "WORKER_ID" in note

"""Saving what the setup flow collected into ``$PENDRA_HOME/config.yaml``.

The Backends screen's choices become ``<kind>_endpoint`` keys and ``builtin.enabled``; the key
step's become ``app_server_ws_url`` and ``worker_name``. Only those keys' lines change: every other
key, comment and blank line the user wrote stays (``worker.config_file.update_config``), the older
spellings of the same settings (``backends.ollama`` …) are dropped so two never disagree, and the
write is atomic with mode 0600, since the file can hold the worker key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

AUTO = ""
"""Endpoint value meaning "auto-discover" (empty = auto)."""

OFF = "off"
"""Endpoint value meaning "disabled, never probed"."""


def backend_changes(endpoints: Mapping[str, str], builtin_enabled: bool) -> dict[str, Any]:
    """config.yaml edits for the Backends screen's choices (pure).

    ``endpoints`` maps a kind (``ollama``…) to ``AUTO``, ``OFF`` or a URL.
    """
    from worker.settings import file_changes, find_spec

    changes: dict[str, Any] = {}
    for kind, value in endpoints.items():
        spec, _nearest = find_spec(f"{kind}_endpoint")
        if spec is not None:
            changes.update(file_changes(spec, value))
    changes["builtin.enabled"] = builtin_enabled
    return changes


def identity_changes(server_url: str, worker_name: str) -> dict[str, Any]:
    """config.yaml edits for the control plane URL and the worker name, checked as the worker
    reads them (pure; raises ``ConfigError`` naming the setting)."""
    from worker.settings import file_changes, find_spec, prepare_value

    changes: dict[str, Any] = {}
    for key, raw in (("app_server_ws_url", server_url), ("worker_name", worker_name)):
        spec, _nearest = find_spec(key)
        assert spec is not None
        value, _note = prepare_value(spec, raw)
        changes.update(file_changes(spec, value))
    return changes


def save_changes(path: Path, changes: Mapping[str, Any]) -> list[str]:
    """Apply ``changes`` to config.yaml; returns notes (a tightened mode, a flat rewrite)."""
    from worker.config_file import update_config

    return update_config(path, changes)


def save_backend_choices(path: Path, endpoints: Mapping[str, str], builtin_enabled: bool) -> None:
    """Write the Backends screen's choices to ``path``."""
    save_changes(path, backend_changes(endpoints, builtin_enabled))

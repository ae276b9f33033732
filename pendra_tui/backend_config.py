"""Saving the Backends screen's choices into ``$PENDRA_HOME/config.toml``.

Only ``[backends]`` endpoint keys and ``builtin.enabled`` are touched; every other key the user
wrote stays as it was (comments are lost: tomllib does not keep them, and we say so in the UI
help). The write is atomic (temp file in the same directory + ``os.replace``), so a crash never
leaves a half-written config.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from worker.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10 only
    import tomli as tomllib

AUTO = ""
"""Endpoint value meaning "auto-discover" (README, Configuration: empty = auto)."""

OFF = "off"
"""Endpoint value meaning "disabled, never probed"."""


def merge_backend_choices(
    data: Mapping[str, Any], endpoints: Mapping[str, str], builtin_enabled: bool
) -> dict[str, Any]:
    """A copy of the parsed config with the backend choices applied.

    ``endpoints`` maps a kind (``ollama``…) to ``AUTO``, ``OFF`` or a URL. Any spelling the
    settings loader accepts for that kind (``ollama``, ``ollama_endpoint``, ``OLLAMA_ENDPOINT``) is
    replaced by the one canonical ``kind = value`` key, so two spellings never disagree.
    """
    merged: dict[str, Any] = {key: value for key, value in data.items()}
    section = dict(merged.get("backends") or {})
    for kind, value in endpoints.items():
        spellings = {kind, f"{kind}_endpoint"}
        for key in [k for k in section if k.lower() in spellings]:
            del section[key]
        section[kind] = value
    merged["backends"] = section
    builtin = dict(merged.get("builtin") or {})
    builtin["enabled"] = builtin_enabled
    merged["builtin"] = builtin
    return merged


def save_backend_choices(path: Path, endpoints: Mapping[str, str], builtin_enabled: bool) -> None:
    """Read ``path`` (if any), apply the choices and write it back atomically."""
    data: dict[str, Any] = {}
    mode = 0o644
    if path.exists():
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
            mode = path.stat().st_mode & 0o777
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{path} is not valid TOML ({exc}); the backend choices were not saved",
                hint="fix or remove that file, then save again",
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if not isinstance(data.get("backends", {}), Mapping):
        raise ConfigError(
            f"[backends] in {path} is not a table; the backend choices were not saved",
            hint="fix that key in the file, then save again",
        )
    text = tomli_w.dumps(merge_backend_choices(data, endpoints, builtin_enabled))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None

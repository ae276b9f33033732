"""The settings file of a home, and the one-time move from ``config.toml`` to ``config.yaml``.

Earlier installs kept settings in ``config.toml`` (``api_url``, ``[backends]``, ``[builtin]`` …).
The first time any ``pendra`` command (or the daemon) loads settings on such a home, the file is
converted to ``config.yaml`` with the documented names (``api_url = "https://h"`` becomes
``app_server_ws_url: wss://h``, ``[backends] ollama = …`` becomes ``ollama_endpoint: …``; every
other key keeps its dotted name), written 0600, and the old file is renamed
``config.toml.migrated``. The new file says so in its first lines and the command that did it
prints a note. Where the home is read-only (a container with a mounted config), the TOML is read
as it is, with a note, every time.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.config_file import (
    HEADER,
    PRIVATE_MODE,
    config_lock,
    flatten,
    read_config,
    render_key,
    render_value,
)
from worker.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

LEGACY_NAME = "config.toml"
MIGRATED_NAME = "config.toml.migrated"
_ENDPOINT_SUFFIX = "_endpoint"


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}", hint="fix the line named above or remove the file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def convert_toml(data: Mapping[str, Any]) -> dict[str, Any]:
    """config.toml's keys under their config.yaml names, in the order they were written."""
    from worker.settings import BACKEND_KINDS, parse_control_plane_url, ws_base

    out: dict[str, Any] = {}
    for key, value in flatten(data):
        if key == "api_url":
            try:
                out["app_server_ws_url"] = ws_base(parse_control_plane_url(value))
            except ValueError:
                out["app_server_ws_url"] = value  # the loader reports it, naming the key
            continue
        group, _, name = key.partition(".")
        if group == "backends" and name:
            kind = name.lower().removesuffix(_ENDPOINT_SUFFIX)
            if kind in BACKEND_KINDS:
                out[f"{kind}{_ENDPOINT_SUFFIX}"] = value
                continue
        out[key] = value
    return out


def render_migrated(data: Mapping[str, Any], when: _dt.datetime) -> str:
    stamp = when.strftime("%Y-%m-%d %H:%M")
    note = f"# Moved here from config.toml on {stamp}; the old file is kept as {MIGRATED_NAME}.\n"
    return HEADER + note + "".join(f"{render_key(k)}: {render_value(v)}\n" for k, v in data.items())


def read_home_config(home: Path) -> tuple[dict[str, Any], list[str]]:
    """The flat settings of ``home``'s config.yaml (migrating config.toml first when it is the
    only one), and notes for the user."""
    yaml_path, toml_path = home / "config.yaml", home / LEGACY_NAME
    if yaml_path.exists():
        notes = []
        if toml_path.exists():
            notes.append(
                f"{toml_path} is ignored: settings are read from {yaml_path} (remove the old file)"
            )
        return read_config(yaml_path), notes
    if not toml_path.exists():
        return {}, []
    converted = convert_toml(read_toml(toml_path))
    try:
        with config_lock(yaml_path):
            if yaml_path.exists():  # another process migrated it meanwhile
                return read_config(yaml_path), []
            from worker.atomic_files import write_atomic

            text = render_migrated(converted, _dt.datetime.now())
            write_atomic(yaml_path, text.encode("utf-8"), mode=PRIVATE_MODE)
            os.replace(toml_path, home / MIGRATED_NAME)
    except (OSError, ConfigError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else exc.message
        return converted, [
            f"could not move {toml_path} to {yaml_path} ({reason or exc}); reading the old "
            "file as it is"
        ]
    return read_config(yaml_path), [
        f"moved the settings from {toml_path} to {yaml_path} (documented key names; the old file "
        f"is kept as {home / MIGRATED_NAME})"
    ]

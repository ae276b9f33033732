"""``pendra config get|set|unset|list``: read and change ``$PENDRA_HOME/config.yaml``.

Keys are the documented ones (``max_concurrent``, ``worker_name``, ``ollama_endpoint`` …); a
variable name (``MAX_CONCURRENT``) or an old name (``api_url``) is understood too, and an unknown
key is refused with the nearest valid one. A value is checked exactly as the worker will read it
before anything is written; the write keeps the file's comments and other keys, is atomic and
leaves the file 0600. The worker key is never printed, and never taken from the command line
(``pendra config set gpu_worker_private_key -`` reads it from stdin).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from worker.errors import ConfigError

ORDER = 75
MAX_STDIN = 4096


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config",
        help="show or change settings in config.yaml",
        description=(
            "Show or change the worker's settings. Values come from built-in defaults, then "
            "$PENDRA_HOME/config.yaml, then the environment; `list` shows where each came from. "
            "Changes apply when the worker next starts."
        ),
    )
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION")

    listing = actions.add_parser("list", help="every setting, its value and where it came from")
    listing.add_argument("--json", action="store_true", help="as JSON (for scripts)")
    listing.set_defaults(handler=run_list)

    get = actions.add_parser("get", help="one setting's value")
    get.add_argument("key", metavar="KEY")
    get.add_argument("--json", action="store_true", help="value, source and variable as JSON")
    get.set_defaults(handler=run_get)

    set_ = actions.add_parser(
        "set",
        help="check a value and write it to config.yaml",
        description=(
            "Check VALUE as the worker will read it, then write KEY: VALUE to config.yaml (mode "
            "0600, other lines kept). VALUE '-' reads it from stdin: the only way to set "
            "gpu_worker_private_key here (or use `pendra key set`)."
        ),
    )
    set_.add_argument("key", metavar="KEY")
    set_.add_argument("value", metavar="VALUE")
    set_.set_defaults(handler=run_set)

    unset = actions.add_parser("unset", help="remove a key from config.yaml (back to default)")
    unset.add_argument("key", metavar="KEY")
    unset.set_defaults(handler=run_unset)

    path = actions.add_parser("path", help="print the path of config.yaml")
    path.set_defaults(handler=run_path)
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)


def _spec(name: str) -> Any:
    from worker.settings import find_spec

    spec, nearest = find_spec(name)
    if spec is None:
        raise ConfigError(
            f"Unknown setting {name!r}" + (f"; did you mean {nearest!r}?" if nearest else "."),
            hint="`pendra config list` shows every setting",
        )
    return spec


def _entry(settings: Any, spec: Any) -> dict[str, Any]:
    from worker.settings import display_value, source_of

    return {
        "key": spec.key,
        "env": spec.env,
        "value": display_value(settings, spec),
        "source": source_of(settings, spec),
        "default": spec.default,
        "documented": spec.documented,
        "help": spec.help,
    }


def _shown(entry: dict[str, Any]) -> str:
    value = entry["value"]
    if value is None or value == "":
        if entry["key"].endswith("_endpoint"):
            return "(auto-discover)"
        return f"({entry['default']})" if entry["default"] else "(not set)"
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run_list(args: argparse.Namespace) -> int:
    from worker.settings import SETTINGS, load_settings

    settings = load_settings()
    entries = [_entry(settings, spec) for spec in SETTINGS]
    if args.json:
        print(json.dumps({"file": str(settings.config_file), "settings": entries}, indent=2))
        return 0
    print(f"# {settings.config_file}, then the environment; `pendra config set KEY VALUE`")
    width = max(len(e["key"]) for e in entries)
    for entry in entries:
        source = "" if entry["source"] == "default" else f"   ← {_short_source(entry['source'])}"
        print(f"{entry['key']:<{width}}  {_shown(entry)}{source}")
    return 0


def _short_source(source: str) -> str:
    if source.startswith("environment variable "):
        return "$" + source.removeprefix("environment variable ")
    key, sep, _where = source.partition(" in ")
    return f"config.yaml ({key})" if sep else source


def run_get(args: argparse.Namespace) -> int:
    from worker.settings import load_settings

    spec = _spec(args.key)
    entry = _entry(load_settings(), spec)
    if args.json:
        print(json.dumps(entry, indent=2))
    else:
        value = entry["value"]
        print("" if value is None else json.dumps(value) if isinstance(value, list) else value)
    return 0


def _read_stdin(prompt: str) -> str:
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(prompt)
    return sys.stdin.read(MAX_STDIN)


def run_set(args: argparse.Namespace) -> int:
    from worker.settings import file_changes, load_settings, prepare_value

    spec = _spec(args.key)
    raw = args.value
    if raw == "-":
        raw = _read_stdin(f"{spec.key} (input hidden): " if spec.secret else f"{spec.key}: ")
        raw = raw.strip() if spec.secret else raw.rstrip("\n")
    elif spec.secret:
        raise ConfigError(
            f"{spec.key} is a secret: it is not taken on the command line, where other users "
            "of this machine can read it.",
            hint=f"pipe it in: `pendra config set {spec.key} -`, or use `pendra key set`",
        )
    settings = load_settings()
    value, note = prepare_value(spec, raw)
    notes = write_checked(settings, file_changes(spec, value))
    shown = "(the key)" if spec.secret else json.dumps(value) if isinstance(value, list) else value
    print(f"Set {spec.key} = {shown} in {settings.config_file}")
    if note:
        print(f"Note: {note}", file=sys.stderr)
    for line in [*notes, *_overridden(spec), *_restart_hint(settings)]:
        print(f"Note: {line}", file=sys.stderr)
    return 0


def run_unset(args: argparse.Namespace) -> int:
    from worker.config_file import read_config
    from worker.settings import file_changes, load_settings

    spec = _spec(args.key)
    settings = load_settings()
    present = read_config(settings.config_file)
    if not any(name in present for name in (spec.key, *spec.aliases)):
        print(f"{spec.key} is not set in {settings.config_file}; nothing to change.")
        return 0
    notes = write_checked(settings, file_changes(spec, None))
    print(f"Removed {spec.key} from {settings.config_file} (back to its default)")
    for line in [*notes, *_overridden(spec), *_restart_hint(settings)]:
        print(f"Note: {line}", file=sys.stderr)
    return 0


def run_path(_args: argparse.Namespace) -> int:
    from worker.settings import load_settings

    print(load_settings().config_file)
    return 0


def write_checked(settings: Any, changes: dict[str, Any]) -> list[str]:
    """Apply ``changes`` to config.yaml, then load the file on its own (without the environment)
    as the worker will; if it no longer loads, put the old file back and raise the reason."""
    from worker.atomic_files import write_atomic
    from worker.config_file import file_mode, update_config
    from worker.settings import load_settings

    path = settings.config_file
    try:
        before: bytes | None = path.read_bytes()
    except FileNotFoundError:
        before = None
    mode = file_mode(path)
    notes = update_config(path, changes)
    try:
        load_settings({"PENDRA_HOME": str(settings.home)})
    except ConfigError as exc:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, before, mode=mode if mode is not None else 0o600)
        raise ConfigError(f"Not changed: with that value {exc.message}", hint=exc.hint) from None
    return notes


def _overridden(spec: Any) -> list[str]:
    import os

    names = [n for n in (spec.env, *spec.env_aliases) if n]
    set_here = [
        n
        for n in names
        if os.environ.get(n, "").strip() or (spec.env_empty_counts and n in os.environ)
    ]
    if not set_here:
        return []
    return [f"{set_here[0]} is set in this environment and overrides config.yaml while it is set"]


def _restart_hint(settings: Any) -> list[str]:
    if settings.admin_socket.exists():
        return ["a worker is running on this home: restart it to use the new value"]
    return []

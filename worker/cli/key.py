"""``pendra key set``: store the worker key (0600) without it ever touching argv or the screen.

The key goes where the worker reads it (:meth:`worker.settings.Settings.key_location`): the key file
when one is in use (``key_file`` / ``PENDRA_WORKER_KEY_FILE``, or an existing ``worker.key``), else
``gpu_worker_private_key`` in config.yaml, as Pendra's documentation keeps it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from worker.errors import ConfigError

ORDER = 70
MAX_KEY_INPUT = 4096  # a key is 44-88 characters; anything much longer is not a key


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "key",
        help="store the worker key; show or rotate the workload key",
        description="Manage the worker private key from the Pendra dashboard, and the workload "
        "key private-inference requests are sealed to.",
    )
    actions = parser.add_subparsers(dest="key_command", metavar="ACTION")
    set_parser = actions.add_parser(
        "set",
        help="read the key from stdin (or --file) and store it, mode 0600",
        description=(
            "Read the worker private key (the base64 key from the Pendra console, or a pdk_ key) "
            "from stdin or --file, check it, and store it where the worker reads it: the key "
            "file when one is in use, else gpu_worker_private_key in $PENDRA_HOME/config.yaml; "
            "either way with mode 0600. The key is never echoed or logged, and never taken as a "
            "command-line argument (other users can read those)."
        ),
    )
    set_parser.add_argument(
        "--file", type=Path, metavar="FILE", help="read the key from FILE instead of stdin"
    )
    set_parser.set_defaults(handler=run_set)
    workload = actions.add_parser(
        "workload",
        help="show (or --rotate) the workload key private requests are sealed to",
        description=(
            "Show the fingerprint of this worker's workload key: the X25519 key clients seal "
            "private-inference requests to, and what they pin. --rotate replaces it; a running "
            "worker keeps the old key until the requests sealed to it have finished."
        ),
    )
    workload.add_argument("--json", action="store_true", help="print it as JSON")
    workload.add_argument("--rotate", action="store_true", help="replace the workload key")
    workload.set_defaults(handler=_run_workload)
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)


def _run_workload(args: argparse.Namespace) -> int:
    from worker.cli._workload_key import run

    return run(args)


def _read_source(args: argparse.Namespace) -> str:
    if args.file is not None:
        try:
            with args.file.open(encoding="utf-8") as handle:
                return handle.read(MAX_KEY_INPUT)
        except FileNotFoundError:
            raise ConfigError(f"--file {args.file}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--file {args.file}: cannot read it ({exc})") from None
    if sys.stdin.isatty():
        import getpass

        # getpass reads from the terminal without echoing, so the key never shows on screen.
        return getpass.getpass("Paste the worker key (input hidden): ")
    return sys.stdin.read(MAX_KEY_INPUT)


def run_set(args: argparse.Namespace) -> int:
    from worker.keys import backup_note, parse_key, store_key
    from worker.settings import load_settings

    settings = load_settings()
    key = parse_key(_read_source(args))
    stored, notes = store_key(settings, key)
    if not stored.changed:
        print(f"{stored.path} already holds this key ({key.key_id}); it is 0600.")
    else:
        print(f"Stored the worker key in {stored.path} (mode 0600); key {key.key_id}.")
    replaced = backup_note(stored)
    if replaced:
        print(replaced)
    for note in notes:
        print(f"Note: {note}", file=sys.stderr)
    return 0

"""``pendra key set``: store the worker key (0600) without it ever touching argv or the screen."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from worker.errors import ConfigError

ORDER = 70
MAX_KEY_INPUT = 4096  # a key is 52 characters; anything much longer is not a key


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
            "Read the worker key from stdin or --file, check it, and store it at "
            "$PENDRA_HOME/worker.key with mode 0600. The key is never echoed or logged, and never "
            "taken as a command-line argument (other users can read those)."
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
    from worker.keys import parse_key, store_key
    from worker.settings import load_settings

    settings = load_settings()
    key = parse_key(_read_source(args))
    target = settings.default_key_file
    stored = store_key(target, key)
    if not stored.changed:
        print(f"The worker key at {target} is already this key (worker id {key.worker_id}).")
    else:
        print(f"Stored the worker key at {target} (mode 0600); worker id {key.worker_id}.")
    if stored.backup is not None:
        what = (
            f"The previous key (worker id {stored.previous_worker_id})"
            if stored.previous_worker_id
            else "The file that was there (not a valid key)"
        )
        print(
            f"{what} is saved in {stored.backup} (mode 0600); delete it once you no longer need it."
        )
    if settings.key_file is not None and settings.key_file != target:
        print(
            f"Note: PENDRA_WORKER_KEY_FILE / key_file points at {settings.key_file}, which the "
            "worker reads instead of this file.",
            file=sys.stderr,
        )
    return 0

"""The ``pendra`` command line.

Each subcommand lives in its own module of this package, exposing ``ORDER`` (its place in
``--help``) and ``register(subparsers)``; handlers take the parsed arguments and return the exit
code. Modules keep heavy imports inside their handlers so ``pendra --help`` stays instant.

``pendra`` with no subcommand opens the terminal app, found through the ``pendra.ui`` entry point
so the headless worker never imports it (and runs where the app is not installed).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from worker import __version__
from worker.errors import PendraError, UsageError

EXIT_INTERRUPTED = 130
EXIT_MISSING_EXTRA = 2
OPTIONAL_EXTRAS: dict[str, tuple[str, str]] = {
    "docker": ("docker", "the Docker SDK for Python"),
    "packaging": ("docker", "packaging (`pendra stack` reads this installation's requirements)"),
}
"""Modules only some commands need, installed with an extra: module -> (extra, what it is)."""


def _command_modules() -> list[ModuleType]:
    modules = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            modules.append(module)
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pendra",
        description=(
            "Pendra worker: serve Pendra API traffic from this machine. Without a command, opens "
            "the setup flow (first run) or the live dashboard of the running worker."
        ),
        epilog="Docs: README.md · `pendra COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"pendra-worker {__version__}")
    parser.add_argument(
        "--no-ui",
        action="store_true",
        help="run the worker in the foreground, headless; logs to stderr; SIGTERM drains",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.register(subparsers)
    return parser


def _launch_ui(args: argparse.Namespace) -> int:
    from importlib.metadata import entry_points

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "No terminal here, so the app cannot open.",
            hint="run the worker headless with `pendra --no-ui`, or check it with `pendra status`",
        )
    found = entry_points(group="pendra.ui")
    if not found:
        raise UsageError(
            "The terminal app is not installed in this environment.",
            hint="use `pendra --no-ui`, or reinstall with get.sh",
        )
    run = next(iter(found)).load()
    return int(run(attach=getattr(args, "attach", False)) or 0)


def report(error: PendraError) -> None:
    """Print ``error`` for the person at the terminal: the one place the CLI renders errors."""
    print(f"pendra: {error}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.no_ui:
            if args.command:
                parser.error("--no-ui runs the worker; it takes no command")
            from worker.cli._headless import run_headless

            return run_headless()
        handler = getattr(args, "handler", None)
        if handler is None:
            return _launch_ui(args)
        return int(handler(args) or 0)
    except PendraError as exc:
        report(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pendra: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ModuleNotFoundError as exc:
        if exc.name not in OPTIONAL_EXTRAS:
            raise
        extra, what = OPTIONAL_EXTRAS[exc.name]
        print(
            f"pendra: this needs {what}, which is not installed with Pendra by default.\n"
            f"  → {sys.executable} -m pip install 'pendra-worker[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_MISSING_EXTRA


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

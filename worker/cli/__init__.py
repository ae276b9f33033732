"""The ``pendra`` command line.

Each subcommand lives in its own module of this package, exposing ``ORDER`` (its place in
``--help``) and ``register(subparsers)``; handlers take the parsed arguments and return the exit
code. Modules keep heavy imports inside their handlers so ``pendra --help`` stays instant.

``pendra`` with no subcommand opens the terminal app, found through the ``pendra.ui`` entry point
so the headless worker never imports it (and runs where the app is not installed).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from worker import __version__
from worker.errors import PendraError, UsageError

if TYPE_CHECKING:
    import argparse

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell shows for a tool a closed pipe stopped
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
    import argparse  # not for `pendra --no-ui`, which needs no parser

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
    if getattr(args, "setup", False):
        return int(run(setup=True) or 0)
    return int(run(attach=getattr(args, "attach", False)) or 0)


def report(error: PendraError) -> None:
    """Print ``error`` for the person at the terminal: the one place the CLI renders errors."""
    print(f"pendra: {error}", file=sys.stderr)


def _print_settings_warning(message: str) -> None:
    print(f"pendra: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words == ["--no-ui"]:
        # The daemon (what the service runs): it needs none of the other commands, so their
        # modules are not imported (the idle footprint is a feature).
        from worker.cli._headless import run_headless

        return _guarded(run_headless)
    parser = build_parser()
    args = parser.parse_args(words)
    if args.no_ui:
        parser.error("--no-ui runs the worker; it takes no command")
    from worker.settings import report_warnings_to

    report_warnings_to(_print_settings_warning)  # the headless worker logs them instead
    handler = getattr(args, "handler", None)
    if handler is None:
        return _guarded(lambda: _launch_ui(args))
    return _guarded(lambda: int(handler(args) or 0))


def _guarded(run: Callable[[], int]) -> int:
    """Run a command: a PendraError is its message and exit code, never a traceback."""
    try:
        code = run()
        sys.stdout.flush()  # here, where a closed pipe is handled, not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader went away (`pendra status | head`): stop quietly, as cat and git do, and
        # point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
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

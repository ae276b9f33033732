"""``pendra logs [-f] [-n N]``: the worker's log, from the running worker or its log file.

With a running worker the lines come from its in-memory tail (already redacted) and ``-f`` follows
the live ``"log"`` events until Ctrl-C. Without one, the tail of ``$PENDRA_HOME/logs/worker.log``
(and its rotated predecessors when it is short) is printed; ``-f`` then says there is nothing live
to follow.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import deque
from pathlib import Path
from typing import Any

ORDER = 20
DEFAULT_LINES = 200
EXIT_WORKER_STOPPED = 3


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "logs",
        help="the worker's log (from the running worker, else its log file); -f follows it",
        description=(
            "Print the last lines of the worker's log. With a running worker they come from it "
            "and -f follows new lines until Ctrl-C; without one, from $PENDRA_HOME/logs/worker.log."
        ),
    )
    parser.add_argument(
        "-n",
        "--lines",
        type=_non_negative,
        default=DEFAULT_LINES,
        metavar="N",
        help=f"how many lines (default {DEFAULT_LINES})",
    )
    parser.add_argument("-f", "--follow", action="store_true", help="follow new lines live")
    parser.set_defaults(handler=run)


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def log_files(log_path: Path) -> list[Path]:
    """The current log file then its rotated backups (``worker.log.1`` is the newest backup)."""
    files = [log_path]
    index = 1
    while (backup := log_path.with_name(f"{log_path.name}.{index}")).exists():
        files.append(backup)
        index += 1
    return files


def read_tail(log_path: Path, n: int) -> list[str]:
    """The last ``n`` lines across the log and its backups, oldest first."""
    if n <= 0:
        return []
    collected: list[str] = []
    for path in log_files(log_path):
        try:
            with path.open("r", encoding="utf-8", errors="replace") as handle:
                lines = deque((line.rstrip("\n") for line in handle), maxlen=n - len(collected))
        except FileNotFoundError:
            continue
        collected = list(lines) + collected
        if len(collected) >= n:
            break
    return collected


def run(args: argparse.Namespace) -> int:
    from worker.admin.client import AdminClient
    from worker.errors import NoWorkerRunning
    from worker.logs import LOG_FILE_NAME
    from worker.settings import load_settings

    settings = load_settings()
    client = AdminClient.for_settings(settings)
    try:
        return asyncio.run(_from_worker(client, args.lines, args.follow))
    except KeyboardInterrupt:
        if not args.follow:
            raise
        return 0  # Ctrl-C is how one stops following
    except NoWorkerRunning:
        log_path = settings.logs_dir / LOG_FILE_NAME
        if not log_path.exists():
            raise NoWorkerRunning(
                f"No Pendra worker is running for this PENDRA_HOME, and there is no log file at "
                f"{log_path} yet."
            ) from None
        _print_lines(read_tail(log_path, args.lines))
        if args.follow:
            raise NoWorkerRunning(
                f"No Pendra worker is running, so there is nothing to follow (the lines above are "
                f"from {log_path})."
            ) from None
        return 0


async def _from_worker(client: Any, lines: int, follow: bool) -> int:
    from worker.errors import NoWorkerRunning

    if not follow:
        _print_lines(await client.logs(lines))
        return 0
    async with client.event_stream({"log"}) as stream:
        # Subscribed before reading the tail, so no line falls between the two; lines that are in
        # both are printed once.
        tail = await client.logs(lines)
        _print_lines(tail)
        pending = set(tail[-50:])
        try:
            async for event in stream:
                line = str(event.get("line") or event.get("message") or "")
                if pending:
                    if line in pending:
                        pending.discard(line)
                        continue
                    pending.clear()
                _print_lines([line])
        except NoWorkerRunning:
            print("pendra: the worker stopped; nothing more to follow", file=sys.stderr)
            return EXIT_WORKER_STOPPED
    return 0


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()

"""``pendra attach``: the dashboard of the running worker (the screen ``pendra`` shows)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

ORDER = 15


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "attach",
        help="open the live dashboard of the running worker",
        description=(
            "Open the terminal dashboard on the running worker, e.g. over SSH. Needs a running "
            "worker (exit 3 when there is none)."
        ),
    )
    parser.set_defaults(handler=run, attach=True)


def run(args: argparse.Namespace) -> int:
    from worker.admin.client import AdminClient
    from worker.cli import _launch_ui
    from worker.settings import load_settings

    # Check first, so a missing worker is the clear NoWorkerRunning message rather than an app
    # that opens only to say the same thing.
    asyncio.run(AdminClient.for_settings(load_settings()).ping())
    return _launch_ui(args)

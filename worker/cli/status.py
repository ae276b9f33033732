"""``pendra status [--json]``: the state of the running worker (docs/status.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

ORDER = 10


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="state of the running worker: link, backends, GPUs, installs, requests",
        description=(
            "Show the running worker's state. Needs a running worker (exit 3 when there is none). "
            "--json prints the status document and nothing else: stable keys, documented in "
            "docs/status.md."
        ),
    )
    parser.add_argument("--json", action="store_true", help="the status document as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from worker.admin.client import AdminClient
    from worker.cli._status_text import render_status
    from worker.settings import load_settings

    client = AdminClient.for_settings(load_settings())
    document = asyncio.run(client.status())
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(render_status(document))
    return 0

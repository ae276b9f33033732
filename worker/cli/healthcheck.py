"""``pendra healthcheck``: exit 0 when the worker is healthy (the worker image's HEALTHCHECK).

Healthy means more than "the process is alive": the worker answers on its admin socket within a
few seconds (its event loop is not wedged) and holds its link to the control plane. One line says
why not otherwise, which ``docker inspect`` shows under ``State.Health``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

ORDER = 95
ANSWER_TIMEOUT_S = 8.0
EXIT_UNHEALTHY = 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "healthcheck",
        help="exit 0 when the running worker answers and is connected (for container health)",
        description=(
            "Ask the running worker whether it is healthy: it must answer on its admin socket and "
            "be connected to the control plane. Exit 0 when it is, 1 (with the reason) when not. "
            "The worker image's HEALTHCHECK runs this."
        ),
    )
    parser.set_defaults(handler=run)


def run(_args: argparse.Namespace) -> int:
    from worker.admin.client import AdminClient
    from worker.errors import PendraError
    from worker.settings import load_settings

    client = AdminClient.for_settings(load_settings(), timeout_s=ANSWER_TIMEOUT_S)
    try:
        document = asyncio.run(client.status())
    except PendraError as exc:
        print(f"unhealthy: {exc.message}")
        return EXIT_UNHEALTHY
    state = str((document.get("worker") or {}).get("state") or "unknown")
    if state != "connected":
        print(f"unhealthy: the worker is {state}, not connected to the control plane")
        return EXIT_UNHEALTHY
    print("healthy: connected")
    return 0

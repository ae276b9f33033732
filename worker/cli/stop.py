"""``pendra stop``: drain the running worker and wait until it has exited.

The worker stops taking new requests, finishes the ones in flight (up to ``drain_timeout_s``),
closes its link and exits 0 — what SIGTERM does, for a worker started anywhere on this home: in a
terminal, detached by the app, or as a service. A service started again by its manager
(``systemctl start``) comes back; ``pendra service uninstall`` removes it for good.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

ORDER = 12
EXIT_STILL_RUNNING = 1
POLL_S = 0.2
GRACE_S = 15.0  # past the drain timeout: closing the link and the runners


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stop",
        help="drain the running worker (in-flight requests finish) and wait until it exits",
        description=(
            "Tell the running worker to drain: it takes no new requests, finishes those in flight "
            "(up to drain_timeout_s), disconnects and exits. Waits until it has exited. Exit 0 "
            "when it stopped, 3 when no worker runs, 1 when it is still running after the wait."
        ),
    )
    parser.set_defaults(handler=run)


def run(_args: argparse.Namespace) -> int:
    from worker.admin.client import AdminClient
    from worker.settings import load_settings

    settings = load_settings()
    client = AdminClient.for_settings(settings)
    pid = asyncio.run(stop_worker(client, settings.drain_timeout_s + GRACE_S))
    if pid is None:
        return EXIT_STILL_RUNNING
    print(f"stopped the worker (pid {pid}).")
    return 0


async def stop_worker(client: Any, wait_s: float) -> int | None:
    """Drain the worker behind ``client``; its pid once it has gone, None if it outlived
    ``wait_s``. Raises NoWorkerRunning when none answers to begin with."""
    from worker.errors import NoWorkerRunning

    pid = int((await client.ping())["pid"])
    print(f"draining the worker (pid {pid}): in-flight requests finish first …", flush=True)
    await client.drain()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            await client.ping()
        except NoWorkerRunning:
            return pid
        await asyncio.sleep(POLL_S)
    print(
        f"pendra: the worker (pid {pid}) is still running after {wait_s:.0f} s.\n"
        "  → `pendra status` shows what it is waiting for; `kill -TERM` it to try again",
        file=sys.stderr,
    )
    return None

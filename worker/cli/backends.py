"""``pendra backends [--json]``: every backend kind, its endpoint, status, capabilities, models.

Asks the running worker (admin API) when there is one, so the answer is what the worker serves;
otherwise discovers directly with the same settings. ``--json`` prints a list of the docs/status.md
backend entries and nothing else on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from worker.settings import Settings

ORDER = 40


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backends",
        help="discovered backends: endpoint, status, capabilities",
        description=(
            "List every backend kind: the built-in one and the external ones (found, unreachable "
            "or disabled). Uses the running worker when there is one, else discovers directly."
        ),
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from worker.settings import load_settings

    settings = load_settings()
    rows, source = asyncio.run(collect(settings))
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_table(rows, source))
    return 0


async def collect(settings: Settings) -> tuple[list[dict[str, Any]], str]:
    """The rows and where they came from ("worker" or "direct discovery")."""
    rows = await from_running_worker(settings)
    if rows is not None:
        return rows, "the running worker"
    from worker.backends.snapshot import describe_backends_once

    return await describe_backends_once(settings), "direct discovery (no worker running)"


async def from_running_worker(settings: Settings) -> list[dict[str, Any]] | None:
    from worker.admin.client import call_running_worker

    status = await call_running_worker(settings, lambda client: client.status())
    backends = status.get("backends") if isinstance(status, dict) else None
    if not isinstance(backends, list):
        return None
    from worker.backends.discovery import DiscoveryOptions, not_found_entry
    from worker.settings import BACKEND_KINDS

    present = {row.get("name") for row in backends if isinstance(row, dict)}
    options = DiscoveryOptions()
    return [
        *backends,
        *(not_found_entry(k, settings, options) for k in BACKEND_KINDS if k not in present),
    ]


def _capabilities(caps: dict[str, bool]) -> str:
    names = {
        "chat": "chat",
        "embeddings": "embed",
        "images": "image",
        "transcription": "transcribe",
        "install": "install",
        "uninstall": "uninstall",
    }
    return ",".join(label for key, label in names.items() if caps.get(key)) or "-"


def render_table(rows: list[dict[str, Any]], source: str) -> str:
    """The human table: one line per backend, then a detail line where there is one."""
    header = ("BACKEND", "STATUS", "ENDPOINT", "MODELS", "CAPABILITIES")
    table = [header]
    for row in rows:
        table.append(
            (
                str(row.get("name")),
                str(row.get("status")),
                str(row.get("endpoint") or "-"),
                str(len(row.get("models") or [])),
                _capabilities(row.get("capabilities") or {}),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for i, cells in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if i and rows[i - 1].get("detail"):
            lines.append(f"    {rows[i - 1]['detail']}")
    lines.append(f"(from {source})")
    return "\n".join(lines) + "\n"

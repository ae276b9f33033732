"""``pendra doctor [--json]``: prerequisite checks; exit 1 when a required one fails.

With a worker running, the control plane and the modelstore checked are the ones that worker uses
(from its status document), so the answer holds for it even in a shell without its environment.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

ORDER = 60

_MARKS = {"ok": "✓", "warn": "!", "fail": "✗"}
_ASCII_MARKS = {"ok": "ok", "warn": "!!", "fail": "XX"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check this machine's prerequisites (exit 1 when a required one fails)",
        description=(
            "Check the OS, Python, configuration, worker key, disk, llama.cpp build, GPUs, Docker "
            "and the control plane. Warnings name what will not work and how to fix it; the exit "
            "status is 1 only when a required check fails. With a worker running, its control "
            "plane and modelstore are the ones checked."
        ),
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument(
        "--setup",
        action="store_true",
        help="check for setting up rather than serving: an unreachable control plane is reported "
        "but does not fail the run",
    )
    parser.set_defaults(handler=run)


def render(results: list[Any], *, unicode: bool = True) -> str:
    """The human report: one line per check, then its fix indented under it."""
    marks = _MARKS if unicode else _ASCII_MARKS
    width = max(len(r.title) for r in results) if results else 0
    lines = []
    for r in results:
        optional = "" if r.required or r.status.value == "ok" else " (optional)"
        lines.append(f" {marks[r.status.value]} {r.title.ljust(width)}  {r.detail}{optional}")
        if r.fix and r.status.value != "ok":
            lines.append(f"   {' ' * width}  → {r.fix}")
    blocking = [r for r in results if r.blocking]
    warnings = [r for r in results if r.status.value != "ok" and not r.blocking]
    lines.append("")
    if blocking:
        names = ", ".join(r.title for r in blocking)
        lines.append(f"Not ready: {len(blocking)} required check(s) failed: {names}.")
    else:
        lines.append("Ready." + (f" {len(warnings)} warning(s) above." if warnings else ""))
    return "\n".join(lines)


def _unicode_ok() -> bool:
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower()
    return "utf" in encoding


def run(args: argparse.Namespace) -> int:
    from installer.checks import exit_code, run_checks

    settings, worker = _settings_to_check()
    results = run_checks(settings, serving=not args.setup)
    code = exit_code(results)
    if args.json:
        document = {
            "ok": code == 0,
            "required_failed": [r.id for r in results if r.blocking],
            "checks": [r.to_dict() for r in results],
            "running_worker": worker,
        }
        print(json.dumps(document, indent=2))
    else:
        if worker is not None:
            print(
                f"Checking with the running worker's control plane ({worker['control_plane']}) "
                "and modelstore."
            )
        print(render(results, unicode=_unicode_ok()))
    return code


def _settings_to_check() -> tuple[Any, dict[str, Any] | None]:
    """This shell's settings, with the control plane and modelstore of the running worker when
    there is one (then also ``{"control_plane", "models_dir"}`` of it); ``(None, None)`` when the
    settings do not load (the configuration check reports why)."""
    import asyncio
    import dataclasses
    from pathlib import Path

    from worker.admin.client import call_running_worker
    from worker.errors import ConfigError, PendraError
    from worker.settings import load_settings, parse_control_plane_url

    try:
        settings = load_settings()
    except ConfigError:
        return None, None
    try:
        status = asyncio.run(call_running_worker(settings, lambda client: client.status()))
    except PendraError:  # a worker of another user, or one that does not answer: check as is
        return settings, None
    if not isinstance(status, dict):
        return settings, None
    control_plane = (status.get("worker") or {}).get("control_plane") or settings.api_url
    try:  # the status names the WebSocket base (wss://…); the checks speak HTTP to the same host
        api_url = parse_control_plane_url(control_plane)
    except ValueError:
        return settings, None
    store = next(
        (b.get("endpoint") for b in status.get("backends") or [] if b.get("name") == "pendra"),
        None,
    )
    models_dir = Path(store) if store else settings.models_dir
    worker = {"control_plane": control_plane, "models_dir": str(models_dir)}
    return dataclasses.replace(settings, api_url=api_url, models_dir=models_dir), worker

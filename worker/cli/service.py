"""``pendra service install|uninstall|status [--system]``: run the worker as a systemd/launchd
service so it survives logout and reboots.

Exit status 4 means this host has no service manager to install into (no systemd, e.g. a container
or this CI box): get.sh then runs the worker in the foreground instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

ORDER = 80


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "service",
        help="install, remove or inspect the background service (systemd / launchd)",
        description=(
            "Run `pendra --no-ui` as a service: a systemd user unit (or a system unit with "
            "--system) on Linux, a launchd agent on macOS. Your edits belong in the drop-in "
            "pendra.service.d/override.conf, which re-installs keep."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("install", "write, enable and start the service (re-run to upgrade)"),
        ("uninstall", "stop and remove the service (your drop-in edits are kept)"),
        ("status", "is the service installed and running?"),
    ):
        sub = actions.add_parser(name, help=text, description=text)
        sub.add_argument(
            "--system",
            action="store_true",
            help="a system-wide unit (needs root) instead of a user one",
        )
        if name == "install":
            sub.add_argument(
                "--print",
                action="store_true",
                help="print the unit that would be written; change nothing",
            )
        if name == "status":
            sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from installer.platform import detect_host
    from installer.service import NoServiceManager, current_spec, foreign_unit, manager_for
    from worker.settings import load_settings

    host = detect_host()
    settings = load_settings()
    if args.action == "install" and args.print:
        manager = manager_for(host, system=args.system, require_running=False)
        spec = current_spec(settings.home, system=args.system)
        content = manager.render(spec)
        print(f"# would be written to {manager.unit_path}", file=sys.stderr)
        sys.stdout.write(content.decode() if isinstance(content, bytes) else content)
        return 0
    if args.action == "install":
        manager = manager_for(host, system=args.system)
        report = manager.install(current_spec(settings.home, system=args.system))
        for message in report.messages:
            print(f"pendra service: {message}")
        print("pendra service: check it with `pendra status`; logs with `pendra logs`")
        return 0
    if args.action == "uninstall":
        # Only the unit that runs this installation's pendra; another installation's stays.
        exec_path = current_spec(settings.home, system=args.system).exec_path
        # Remove the files even where the manager no longer runs; only skip the systemctl calls.
        try:
            manager = manager_for(host, system=args.system)
        except NoServiceManager:
            manager = manager_for(host, system=args.system, require_running=False)
            if not manager.unit_path.exists():
                print("pendra service: no service installed (and no service manager here)")
                return 0
            foreign = foreign_unit(manager, exec_path)
            if foreign is not None:
                print(f"pendra service: kept {manager.unit_path}: {foreign}")
                return 0
            manager.unit_path.unlink()
            print(f"pendra service: removed {manager.unit_path}")
            return 0
        for message in manager.uninstall(exec_path):
            print(f"pendra service: {message}")
        return 0
    # status
    try:
        manager = manager_for(host, system=args.system)
        state = manager.status()
    except NoServiceManager as exc:
        state = {
            "manager": None,
            "scope": "system" if args.system else "user",
            "installed": False,
            "active": "unavailable",
            "reason": exc.message,
        }
    if args.json:
        print(json.dumps(state, indent=2))
    elif state["manager"] is None:
        print(f"pendra service: not available here: {state['reason']}")
        print("  → run the worker in the foreground: pendra --no-ui")
    else:
        installed = "installed" if state["installed"] else "not installed"
        pid = f", pid {state['pid']}" if state.get("pid") else ""
        print(
            f"pendra service ({state['manager']}, {state['scope']}): {installed}, "
            f"{state['active']}{pid}"
        )
        print(f"  unit: {state['unit']}")
    return 0

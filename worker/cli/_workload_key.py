"""``pendra key workload [--json] [--rotate]``: the workload key's fingerprint, what clients pin.

Through the running worker when there is one (its live key, its private-request counters; a
rotation there keeps the old key while requests sealed to it are in flight), else straight from
``$PENDRA_HOME/workload.key``. Reading never creates a key: the worker does that on first start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from worker.errors import PendraError
from worker.settings import Settings


class NoWorkloadKey(PendraError):
    code = "no_workload_key"


def describe(settings: Settings, *, rotate: bool) -> dict[str, Any]:
    from worker.admin.client import call_running_worker
    from worker.private_inference.workload_key import (
        WorkloadKey,
        key_path,
        load_or_create,
        read_key,
        write_key,
    )

    path = key_path(settings.home)

    async def ask(client: Any) -> dict[str, Any]:
        if rotate:
            return await client.rotate_workload_key()
        status = await client.status()
        block = (status.get("worker") or {}).get("private_inference")
        if not isinstance(block, dict):
            raise NoWorkloadKey(
                "The running worker does not report a workload key (it predates private "
                "inference).",
                hint="upgrade it, then restart it",
            )
        return block

    live = asyncio.run(call_running_worker(settings, ask))
    if live is not None:
        return {**live, "file": str(path), "worker_running": True}
    if rotate:
        key = WorkloadKey.generate()
        if path.exists():
            read_key(path)  # a file that is not a key is reported, never silently replaced
            write_key(path, key)
        else:
            key = load_or_create(path)[0]
    elif path.exists():
        key = read_key(path)
    else:
        raise NoWorkloadKey(
            f"No workload key yet at {path}.",
            hint="the worker creates it on its first start (`pendra --no-ui`); or create one now "
            "with `pendra key workload --rotate`",
        )
    return {
        "enabled": settings.private_inference,
        "fingerprint": key.kid,
        "public_key": key.public_b64,
        "file": str(path),
        "worker_running": False,
    }


def render(info: dict[str, Any], *, rotated: bool) -> str:
    fingerprint = info.get("fingerprint")
    if not fingerprint:
        return (
            "Private inference is off on this worker, so it has no workload key.\n"
            "  → turn it on with `pendra config set private_inference.enabled true` "
            "(or PENDRA_PRIVATE_INFERENCE=true) and restart the worker"
        )
    lines = [f"{'New workload' if rotated else 'Workload'} key fingerprint: {fingerprint}"]
    lines.append(f"  file     {info.get('file')}")
    if info.get("worker_running"):
        state = "on" if info.get("enabled") else "off"
        lines.append(
            f"  worker   running · private inference {state} · {info.get('served', 0)} served · "
            f"{info.get('failed', 0)} failed"
        )
        if info.get("retired_keys_held"):
            lines.append(
                f"           {info['retired_keys_held']} previous key(s) kept until the requests "
                "sealed to them finish"
            )
    else:
        lines.append(
            "  worker   not running"
            + ("" if info.get("enabled", True) else " · private inference is off in the config")
        )
        if rotated:
            lines.append("           it registers the new key when it next starts")
    lines.append(
        'Clients pin it with Pendra(..., private_inference={"pinned_fingerprint": "<this>"}) '
        "or PENDRA_PINNED_ORG_FINGERPRINT."
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from worker.settings import load_settings

    info = describe(load_settings(), rotate=args.rotate)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(render(info, rotated=args.rotate))
    return 0

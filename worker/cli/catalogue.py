"""``pendra catalogue [--json]``: the public catalogue with a fit verdict for this machine.

Through the running worker when there is one, so it shows the catalogue of the control plane the
worker uses (the shell need not set ``APP_SERVER_WS_URL``); directly otherwise. Offline, the last
good copy is shown and marked as cached with its age. ``--json`` prints one object (stable keys:
``cached``, ``age_s``, ``source_url``, ``stale_reason``, ``warnings``, ``machine``, ``models`` with
each variant's ``fit``) and nothing else on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

ORDER = 50


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "catalogue",
        help="models you can install, and whether they fit this machine",
        description=(
            "Show the Pendra model catalogue with a fit verdict per variant: gpu, partial (GPU + "
            "CPU), cpu, or no. Through the running worker when there is one (its control plane, "
            "or its cached copy when offline); else from APP_SERVER_WS_URL or the cached copy."
        ),
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from worker.settings import load_settings

    document = asyncio.run(collect(load_settings()))
    if args.json:
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for warning in document["warnings"]:
            print(f"pendra: catalogue: {warning}", file=sys.stderr)
        sys.stdout.write(render_table(document))
    return 0


async def collect(settings: Any) -> dict[str, Any]:
    """The catalogue document this command prints (also what ``--json`` emits)."""
    from worker.catalogue import CatalogueClient
    from worker.fit import fit_verdict
    from worker.hardware import MachineProfile

    catalogue = await _through_worker(settings)
    if catalogue is None:
        catalogue = await CatalogueClient(settings).load()
    profile = await asyncio.to_thread(MachineProfile.detect, settings.models_dir)
    models = []
    for model in catalogue.models:
        variants = []
        for variant in model.variants:
            fit = fit_verdict(
                profile, variant, max_context=settings.max_context, kv_type=settings.kv_type
            )
            variants.append(
                {
                    **variant.model_dump(mode="json"),
                    "fit": {"verdict": fit.value, "reason": fit.reason},
                }
            )
        models.append({**model.model_dump(mode="json"), "variants": variants})
    return {
        "cached": catalogue.cached,
        "age_s": catalogue.age_s,
        "source_url": catalogue.source_url,
        "stale_reason": catalogue.stale_reason,
        "warnings": list(catalogue.warnings),
        "machine": {
            "gpus": [{"name": g.name, "memory_total": g.memory_total} for g in profile.gpus],
            "ram_total": profile.ram_total,
            "disk_free": profile.disk_free,
        },
        "models": models,
    }


async def _through_worker(settings: Any) -> Any:
    """The running worker's catalogue (from its control plane or its cache); None without one."""
    from worker.admin.client import call_running_worker
    from worker.catalogue import Catalogue

    document = await call_running_worker(settings, lambda client: client.catalogue())
    return None if document is None else Catalogue.from_document(document)


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown age"
    if seconds < 90:
        return f"{int(seconds)} s old"
    if seconds < 5400:
        return f"{int(seconds // 60)} min old"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h old"
    return f"{seconds / 86400:.0f} days old"


def _size(value: int | None) -> str:
    from worker.units import format_bytes

    return "-" if value is None else format_bytes(value)


def _context(value: int | None) -> str:
    if not value:
        return "-"
    return f"{value // 1024}k" if value >= 1024 and value % 1024 == 0 else str(value)


def render_table(document: dict[str, Any]) -> str:
    """The human table (pure): a marker line when cached, then one row per variant."""
    lines: list[str] = []
    if document["cached"]:
        reason = document.get("stale_reason") or "offline"
        lines.append(f"(cached copy, {format_age(document.get('age_s'))}: {reason})")
    header = ("REF", "TASK", "PARAMS", "QUANT", "SIZE", "CONTEXT", "BACKENDS", "FIT")
    rows = [header]
    for model in document["models"]:
        for variant in model["variants"]:
            rows.append(
                (
                    f"{model['id']}:{variant['tag']}",
                    model["task"],
                    variant.get("parameters") or "-",
                    variant.get("quantisation") or "-",
                    _size(variant.get("size_bytes")),
                    _context(variant.get("context_length")),
                    ",".join(variant.get("backends") or []) or "-",
                    variant["fit"]["verdict"],
                )
            )
    if len(rows) == 1:
        lines.append("The catalogue is empty.")
        return "\n".join(lines) + "\n"
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    lines.append("")
    lines.append(
        "FIT: gpu = fits in GPU memory · partial = GPU + CPU offload (slower) · cpu = no GPU, "
        "fits in RAM · no = too big for memory or disk"
    )
    lines.append("Install with `pendra models install REF [--backend B]`.")
    return "\n".join(lines) + "\n"

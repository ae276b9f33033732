"""``pendra ps [--json]``: the models loaded in memory right now, like ``ollama ps``.

The built-in backend's entry in the status document lists its loaded models (``loaded``: each with
its runner's ``pid``, ``state``, ``weights_bytes``, KV cache (``kv_type``, ``kv_tokens``,
``kv_bytes``, ``kv_tokens_in_use``), ``context_length``, ``slots``/``slots_in_use``, ``queued``
and ``idle_unload_in_s``; older workers list bare ids). Ollama and Speaches are asked with their
own ``GET /api/ps``; LM Studio marks loaded models in its model list. Without a running worker the
built-in backend has nothing loaded, and the external backends are found by one discovery pass.

``--json`` prints a list of rows with stable keys (:data:`ROW_KEYS`) and nothing else on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

ORDER = 32
ROW_KEYS = (
    "backend",
    "id",
    "pid",
    "state",
    "memory_bytes",
    "weights_bytes",
    "kv_bytes",
    "kv_type",
    "kv_tokens",
    "kv_tokens_in_use",
    "context_length",
    "slots",
    "slots_in_use",
    "queued",
    "idle_unload_in_s",
    "vram_bytes",
)
FOREVER_S = 10 * 365 * 86400.0
"""An unload time this far away means "kept loaded" (Ollama's ``keep_alive: -1``)."""
PS_TIMEOUT_S = 5.0
_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ps",
        help="models loaded in memory: backend, memory, slots in use, idle-unload countdown",
        description=(
            "List the models loaded right now on every backend: memory (weights + KV cache), "
            "context, slots in use, queued requests and when an idle model is unloaded."
        ),
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from worker.settings import load_settings

    rows, source, notes = asyncio.run(collect(load_settings()))
    for note in notes:
        print(f"pendra: {note}", file=sys.stderr)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(rows, source))
    return 0


# -- pure -----------------------------------------------------------------------------------------
def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def row(backend: str, model_id: str, **values: Any) -> dict[str, Any]:
    """A row with every key of :data:`ROW_KEYS` (``None`` when unknown)."""
    out: dict[str, Any] = dict.fromkeys(ROW_KEYS)
    out.update(values, backend=backend, id=model_id)
    if out["memory_bytes"] is None and out["weights_bytes"] is not None:
        out["memory_bytes"] = out["weights_bytes"] + (out["kv_bytes"] or 0)
    return out


def rows_from_builtin(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The built-in backend's ``loaded`` list (dicts; bare ids from older workers)."""
    contexts = {
        m.get("id"): _int(m.get("context_length"))
        for m in entry.get("models") or []
        if isinstance(m, dict)
    }
    out = []
    for item in entry.get("loaded") or []:
        if isinstance(item, str):
            out.append(row(str(entry.get("name")), item, context_length=contexts.get(item)))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        out.append(
            row(
                str(entry.get("name")),
                item["id"],
                pid=_int(item.get("pid")),
                state=item.get("state") if isinstance(item.get("state"), str) else None,
                weights_bytes=_int(item.get("weights_bytes")),
                kv_bytes=_int(item.get("kv_bytes")),
                kv_type=item.get("kv_type") if isinstance(item.get("kv_type"), str) else None,
                kv_tokens=_int(item.get("kv_tokens")),
                kv_tokens_in_use=_int(item.get("kv_tokens_in_use")),
                context_length=_int(item.get("context_length")) or contexts.get(item["id"]),
                slots=_int(item.get("slots")),
                slots_in_use=_int(item.get("slots_in_use")),
                queued=_int(item.get("queued")),
                idle_unload_in_s=_num(item.get("idle_unload_in_s")),
            )
        )
    return out


def parse_time(text: Any) -> float | None:
    """An RFC 3339 time as Go writes it (nanoseconds, ``Z`` or an offset) → Unix time."""
    if not isinstance(text, str):
        return None
    match = _ISO.match(text.strip())
    if match is None:
        return None
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    try:
        stamp = datetime.fromisoformat(f"{base}.{(fraction or '0')[:6]:0<6}{zone}")
    except ValueError:
        return None
    return stamp.timestamp()


def rows_from_ollama_ps(
    backend: str, document: Any, now: float | None = None
) -> list[dict[str, Any]]:
    """Ollama's ``/api/ps`` (objects) or Speaches' (``{"models": ["id", …]}``) → rows."""
    now = time.time() if now is None else now
    out = []
    models = document.get("models") if isinstance(document, dict) else None
    for item in models or []:
        if isinstance(item, str):
            out.append(row(backend, item, state="loaded"))
            continue
        if not isinstance(item, dict):
            continue
        name = item.get("name") or item.get("model")
        if not isinstance(name, str):
            continue
        expires = parse_time(item.get("expires_at"))
        out.append(
            row(
                backend,
                name,
                state="loaded",
                memory_bytes=_int(item.get("size")),
                vram_bytes=_int(item.get("size_vram")),
                context_length=_int(item.get("context_length")),
                idle_unload_in_s=max(0.0, expires - now) if expires is not None else None,
            )
        )
    return out


def rows_from_lmstudio(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        row(
            str(entry.get("name")),
            m["id"],
            state="loaded",
            context_length=_int(m.get("context_length")),
        )
        for m in entry.get("models") or []
        if isinstance(m, dict) and isinstance(m.get("id"), str) and m.get("state") == "loaded"
    ]


def _until(item: Mapping[str, Any]) -> str:
    from worker.units import format_duration

    seconds = item.get("idle_unload_in_s")
    if item.get("state") == "loading":
        return "loading"
    if item.get("slots_in_use"):
        return "serving"
    if seconds is None:
        return "-"
    if seconds >= FOREVER_S:
        return "forever"
    return f"in {format_duration(seconds)}"


def _memory(item: Mapping[str, Any]) -> str:
    from worker.units import format_bytes

    total = item.get("memory_bytes")
    if total is None:
        return "-"
    text = format_bytes(total, binary=True)
    if item.get("kv_bytes") is not None and item.get("weights_bytes") is not None:
        text += f" ({format_bytes(item['kv_bytes'], binary=True)} KV)"
    elif item.get("vram_bytes") is not None and total:
        share = max(0.0, min(1.0, item["vram_bytes"] / total))
        text += f" ({share * 100:.0f}% GPU)"
    return text


def render(rows: list[dict[str, Any]], source: str) -> str:
    if not rows:
        return f"No model is loaded ({source}).\n"
    table = [("BACKEND", "MODEL", "MEMORY", "CONTEXT", "SLOTS", "QUEUED", "UNLOAD")]
    for item in rows:
        slots = (
            f"{item['slots_in_use'] or 0}/{item['slots']}" if item.get("slots") is not None else "-"
        )
        table.append(
            (
                str(item["backend"]),
                str(item["id"]),
                _memory(item),
                str(item.get("context_length") or "-"),
                slots,
                str(item["queued"]) if item.get("queued") is not None else "-",
                _until(item),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in table]
    return "\n".join([*lines, f"({source})"]) + "\n"


# -- collecting -----------------------------------------------------------------------------------
async def _ask_ps(backend: str, endpoint: str) -> tuple[list[dict[str, Any]], str | None]:
    import aiohttp

    url = endpoint.rstrip("/") + "/api/ps"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PS_TIMEOUT_S)) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                return [], f"{backend} at {endpoint} answered HTTP {response.status} to /api/ps"
            document = await response.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        return (
            [],
            f"cannot ask {backend} at {endpoint} what it has loaded: {exc or type(exc).__name__}",
        )
    return rows_from_ollama_ps(backend, document), None


async def rows_from_backends(
    backends: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for entry in backends:
        if not isinstance(entry, dict):
            continue
        name = entry.get("name")
        if "loaded" in entry:
            rows += rows_from_builtin(entry)
        elif name in {"ollama", "speaches"} and entry.get("status") == "ready":
            endpoint = entry.get("endpoint")
            if isinstance(endpoint, str) and endpoint:
                found, note = await _ask_ps(str(name), endpoint)
                rows += found
                notes += [note] if note else []
        elif name == "lmstudio":
            rows += rows_from_lmstudio(entry)
    return rows, notes


async def collect(settings: Any) -> tuple[list[dict[str, Any]], str, list[str]]:
    from worker.admin.client import call_running_worker

    status = await call_running_worker(settings, lambda client: client.status())
    if isinstance(status, dict):
        rows, notes = await rows_from_backends(status.get("backends") or [])
        return rows, "the running worker", notes
    from worker.backends.snapshot import describe_backends_once

    backends = await describe_backends_once(settings)
    external = [b for b in backends if isinstance(b, dict) and b.get("name") != "pendra"]
    rows, notes = await rows_from_backends(external)
    return rows, "no worker running, so the built-in backend has nothing loaded", notes

"""The human summary ``pendra status`` prints: pure functions over the status document
(docs/status.md).

Missing or null values print as "—" rather than failing, so a status document from a newer or older
worker still renders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worker.units import UNKNOWN, format_bytes, format_duration

DASH = UNKNOWN


def _num(value: Any, fmt: str, suffix: str = "") -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return DASH
    return f"{value:{fmt}}{suffix}"


def _list(doc: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = doc.get(key)
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _worker_lines(doc: Mapping[str, Any]) -> list[str]:
    worker = doc.get("worker") if isinstance(doc.get("worker"), Mapping) else {}
    state = worker.get("state") or "unknown"
    version = worker.get("version") or DASH
    lines = []
    name, worker_id = worker.get("worker_name"), worker.get("worker_id")
    if name or worker_id:
        lines.append(f"Worker    {name or DASH} ({worker_id or DASH})")
        lines.append(
            f"          {state} · v{version} · up {format_duration(worker.get('uptime_s'))}"
        )
    else:
        lines.append(
            f"Worker    {state} · v{version} · up {format_duration(worker.get('uptime_s'))}"
        )
    link = worker.get("link") if isinstance(worker.get("link"), Mapping) else {}
    if link.get("reason"):
        retry = link.get("retry_in_s")
        when = f"; retrying in {format_duration(retry)}" if isinstance(retry, (int, float)) else ""
        lines.append(f"          link: {link['reason']}{when}")
    plane = worker.get("control_plane")
    if plane:
        lines.append(f"Control   {plane}")
    models = worker.get("models_filter")
    if isinstance(models, list) and models:
        lines.append(f"Serving   only {', '.join(str(m) for m in models)} (models setting)")
    return lines


def _private_lines(doc: Mapping[str, Any]) -> list[str]:
    worker = doc.get("worker") if isinstance(doc.get("worker"), Mapping) else {}
    private = worker.get("private_inference")
    if not isinstance(private, Mapping):
        return []
    if not private.get("enabled") or not private.get("fingerprint"):
        return ["Private   off"]
    lines = [
        f"Private   on · {_num(private.get('served'), ',d')} served · "
        f"{_num(private.get('failed'), ',d')} failed",
        f"  workload key {private['fingerprint']}",
    ]
    retired = private.get("retired_keys_held")
    if isinstance(retired, int) and retired > 0:
        lines.append(f"  {retired} previous key(s) kept until the requests sealed to them finish")
    return lines


def _request_lines(doc: Mapping[str, Any]) -> list[str]:
    requests = doc.get("requests") if isinstance(doc.get("requests"), Mapping) else {}
    cap = requests.get("max_concurrent")
    in_flight = _num(requests.get("in_flight"), "d")
    parts = [
        f"{in_flight} of {cap} in flight" if isinstance(cap, int) else f"{in_flight} in flight",
        f"{_num(requests.get('served'), ',d')} served",
        f"{_num(requests.get('failed'), ',d')} failed",
    ]
    if isinstance(requests.get("cancelled"), int) and requests["cancelled"]:
        parts.append(f"{requests['cancelled']:,d} cancelled")
    rate = requests.get("tokens_per_s")
    if isinstance(rate, (int, float)) and not isinstance(rate, bool):
        parts.append(f"{rate:.1f} tok/s")
    return ["Requests  " + " · ".join(parts)]


def _backend_lines(doc: Mapping[str, Any]) -> list[str]:
    backends = _list(doc, "backends")
    if not backends:
        return ["Backends  none found"]
    rows = []
    for backend in backends:
        models = backend.get("models") if isinstance(backend.get("models"), list) else []
        count = f"{len(models)} model{'s' if len(models) != 1 else ''}"
        endpoint = backend.get("endpoint") or (
            "built-in" if backend.get("name") == "pendra" else ""
        )
        rows.append(
            (
                str(backend.get("name") or "?"),
                str(backend.get("status") or "?"),
                count,
                str(endpoint),
            )
        )
    return ["Backends", *_table(rows)]


def _loaded_lines(doc: Mapping[str, Any]) -> list[str]:
    """The built-in backend's loaded models: memory, KV pool use, slots, idle unload."""
    rows = []
    for backend in _list(doc, "backends"):
        entries = backend.get("loaded") if isinstance(backend.get("loaded"), list) else []
        for entry in entries:
            if not isinstance(entry, Mapping):  # a worker older than the object entries
                rows.append((str(entry), "", "", "", "", ""))
                continue
            weights, kv = entry.get("weights_bytes"), entry.get("kv_bytes")
            memory = (
                f"{format_bytes(weights, binary=True)} + KV {format_bytes(kv, binary=True)}"
                f" ({entry.get('kv_type') or '?'})"
            )
            pool = f"KV {_num(entry.get('kv_tokens_in_use'), ',d')} / "
            pool += f"{_num(entry.get('kv_tokens'), ',d')} tok"
            slots = f"{_num(entry.get('slots_in_use'), 'd')}/{_num(entry.get('slots'), 'd')} busy"
            queued = entry.get("queued")
            if isinstance(queued, int) and queued:
                slots += f", {queued} queued"
            idle = entry.get("idle_unload_in_s")
            unload = f"unloads in {format_duration(idle)}" if idle is not None else ""
            state = str(entry.get("state") or "?")
            rows.append((str(entry.get("id") or "?"), state, memory, pool, slots, unload))
    return ["Loaded", *_table(rows)] if rows else []


def _host_line(doc: Mapping[str, Any]) -> list[str]:
    host = doc.get("host") if isinstance(doc.get("host"), Mapping) else None
    if not host:
        return []
    used, total = host.get("memory_used"), host.get("memory_total")
    return [
        f"Host      CPU {_num(host.get('cpu_percent'), '.0f', '%')} · "
        f"RAM {format_bytes(used, binary=True)} / {format_bytes(total, binary=True)} · "
        f"worker {format_bytes(host.get('process_rss'), binary=True)}"
    ]


def _gpu_lines(doc: Mapping[str, Any]) -> list[str]:
    gpus = _list(doc, "gpus")
    if not gpus:
        return ["GPUs      none detected", *_host_line(doc)]
    rows = []
    for gpu in gpus:
        used, total = gpu.get("memory_used"), gpu.get("memory_total")
        memory = f"{format_bytes(used, binary=True)} / {format_bytes(total, binary=True)}"
        rows.append(
            (
                str(gpu.get("index", "?")),
                str(gpu.get("name") or "GPU"),
                _num(gpu.get("utilization"), ".0f", "%"),
                memory,
                _num(gpu.get("temperature"), ".0f", "°C"),
                _num(gpu.get("power_w"), ".0f", " W"),
            )
        )
    return ["GPUs", *_table(rows)]


def _install_lines(doc: Mapping[str, Any]) -> list[str]:
    installs = _list(doc, "installs")
    if not installs:
        return []
    rows = []
    for job in installs:
        done, total = job.get("bytes_done"), job.get("bytes_total")
        if isinstance(total, (int, float)) and total > 0 and isinstance(done, (int, float)):
            progress = f"{format_bytes(done)} / {format_bytes(total)} ({100 * done / total:.0f}%)"
        else:
            progress = format_bytes(done)
        rows.append(
            (
                str(job.get("ref") or "?"),
                f"→ {job.get('backend') or '?'}",
                str(job.get("phase") or "?"),
                progress,
            )
        )
    return ["Installs", *_table(rows)]


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def render_status(doc: Mapping[str, Any]) -> str:
    """The readable summary: worker, requests, private inference, backends, loaded models, GPUs,
    installs."""
    lines = [
        *_worker_lines(doc),
        *_request_lines(doc),
        *_private_lines(doc),
        *_backend_lines(doc),
        *_loaded_lines(doc),
        *_gpu_lines(doc),
        *_install_lines(doc),
    ]
    return "\n".join(lines)

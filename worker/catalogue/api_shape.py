"""The Pendra API's catalogue shape, to and from the worker's own (pure).

``GET /api/v1/catalogue`` on the real service answers (Pendra's public docs)::

    {"data": [{"id": "qwen3.6:27b", "name": "Qwen 3.6 27B", "backend": "both",
               "capability": "chat", "parameter_size": "27B", "context_length": 32768,
               "licence": "apache-2.0", "variants": [{…}]}]}

One entry per installable model, its id the ref users type (``<id>:<tag>``); its variants are the
builds (quantisations) and the ids other backends know it by. ``backend`` says where it installs:
``pendra`` (the built-in backend), ``ollama``, ``both`` (the two), or another backend's name. A
variant with ``gguf_url`` + ``gguf_sha256`` (or ``hf_repo`` + ``hf_file`` + ``gguf_sha256``)
installs into the built-in backend.

:func:`from_api` turns entries into the worker's models (:mod:`.schema`): entries sharing an id
before the ``:`` become one model; an entry becomes the variant of its tag — the built-in
backend's default build (Q4_K_M when there is one), plus every backend's id — and each further
GGUF build becomes ``<tag>-<quant>`` (``qwen3.6:27b-q8_0``, the way Ollama tags quantisations).
An Ollama entry without an explicit Ollama id is installed in Ollama under its own id. Variant
fields are read under the names the docs and the other backends' APIs use for them, so a field
spelled ``quantization`` or ``size`` is understood too. Unknown keys are ignored; an entry that
cannot be used is skipped with a warning.

:func:`to_api` writes the worker's models in the API's shape (what ``pendra sandbox`` serves).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from worker.catalogue.refs import ID_PATTERN, TAG_PATTERN

PREFERRED_QUANT = "Q4_K_M"
LATEST = "latest"
BACKEND_ALIASES: dict[str, tuple[str, ...]] = {
    "both": ("pendra", "ollama"),
    "builtin": ("pendra",),
    "built-in": ("pendra",),
    "pendra": ("pendra",),
    "all": (),
    "any": (),
}
CAPABILITY_TASKS: dict[str, str] = {
    "chat": "chat",
    "completion": "chat",
    "text": "chat",
    "vision": "chat",
    "ocr": "chat",
    "code": "chat",
    "embedding": "embedding",
    "embeddings": "embedding",
    "image": "image",
    "images": "image",
    "image-generation": "image",
    "transcription": "transcription",
    "audio": "transcription",
    "speech-to-text": "transcription",
    "stt": "transcription",
    "asr": "transcription",
}
"""The API's ``capability`` → the worker's task. OCR models read images through chat."""
# Field names a variant may use for the same thing (first found wins).
QUANT_KEYS = ("quantisation", "quantization", "quant", "quantization_level")
SIZE_KEYS = ("size_bytes", "size")
VRAM_KEYS = ("min_vram_bytes", "vram_bytes", "min_vram")
PARAMETER_KEYS = ("parameter_size", "parameters")
BACKEND_ID_KEYS: dict[str, tuple[str, ...]] = {
    "ollama": ("ollama_tag", "ollama_id", "ollama_model", "ollama"),
    "lmstudio": ("lmstudio_id", "lmstudio_model", "lmstudio"),
    "speaches": ("speaches_id", "speaches_model", "speaches"),
}
INTERNAL_ID_FIELD = {"ollama": "ollama_tag", "lmstudio": "lmstudio_id", "speaches": "speaches_id"}
GGUF_KEYS = ("gguf_url", "gguf_sha256", "hf_repo", "hf_file", "hf_revision")
_ID = re.compile(ID_PATTERN)
_TAG = re.compile(TAG_PATTERN)
_TAG_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def is_api_document(document: Any) -> bool:
    """``{"data": [...]}`` (the API's shape) rather than ``{"models": [...]}``."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("data"), list)
        and not isinstance(document.get("models"), list)
    )


def _first(mapping: Mapping[str, Any], keys: Iterable[str], kind: type | tuple[type, ...]) -> Any:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, kind) and not isinstance(value, bool) and value != "":
            return value
    return None


def _backend_id(variant: Mapping[str, Any], backend: str) -> str | None:
    found = _first(variant, BACKEND_ID_KEYS[backend], str)
    if found is None and variant.get("backend") == backend:
        found = _first(variant, ("id", "model", "tag", "name"), str)
    return found


def _has_gguf(variant: Mapping[str, Any]) -> bool:
    source = isinstance(variant.get("gguf_url"), str) or (
        isinstance(variant.get("hf_repo"), str) and isinstance(variant.get("hf_file"), str)
    )
    return source and isinstance(variant.get("gguf_sha256"), str)


def _preference(backend: Any) -> list[str]:
    names = backend if isinstance(backend, list) else [backend]
    out: list[str] = []
    for name in names:
        if not isinstance(name, str):
            continue
        for item in BACKEND_ALIASES.get(name.strip().lower(), (name.strip().lower(),)):
            if item and item not in out:
                out.append(item)
    return out


def _quant(variant: Mapping[str, Any]) -> str | None:
    value = _first(variant, QUANT_KEYS, str)
    return value.strip() if value else None


def _build(
    tag: str,
    entry: Mapping[str, Any],
    base: Mapping[str, Any],
    ids: Mapping[str, str],
    preference: list[str],
) -> dict[str, Any]:
    """One worker variant from the variant ``base`` (its GGUF, quant, sizes) and backend ids."""
    out: dict[str, Any] = {
        "tag": tag,
        "parameters": _first(entry, PARAMETER_KEYS, str) or _first(base, PARAMETER_KEYS, str),
        "quantisation": _quant(base),
        "context_length": _first(base, ("context_length",), int)
        or _first(entry, ("context_length",), int),
        "size_bytes": _first(base, SIZE_KEYS, int),
        "min_vram_bytes": _first(base, VRAM_KEYS, int),
    }
    available: list[str] = []
    if _has_gguf(base):
        out.update({key: base.get(key) for key in GGUF_KEYS if isinstance(base.get(key), str)})
        available.append("pendra")
    for backend, identifier in ids.items():
        out[INTERNAL_ID_FIELD[backend]] = identifier
        available.append(backend)
    ordered = [b for b in preference if b in available] + [
        b for b in available if b not in preference
    ]
    out["backends"] = ordered
    return out


def _entry_variants(
    entry: Mapping[str, Any], model_id: str, tag: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """The worker variants one API entry becomes (see the module docstring)."""
    raw = entry.get("variants")
    variants = [v for v in raw if isinstance(v, dict)] if isinstance(raw, list) else []
    warnings = []
    if isinstance(raw, list) and len(variants) != len(raw):
        warnings.append(
            f"{model_id}:{tag}: ignored {len(raw) - len(variants)} malformed variant(s)"
        )
    preference = _preference(entry.get("backend"))
    ids: dict[str, str] = {}
    for backend in BACKEND_ID_KEYS:
        found = next((i for i in (_backend_id(v, backend) for v in variants) if i), None)
        if found is None and backend == "ollama" and "ollama" in preference:
            found = f"{model_id}:{tag}"  # the catalogue's ids are Ollama names
        if found is not None:
            ids[backend] = found
    ggufs = [v for v in variants if _has_gguf(v)]
    ggufs.sort(key=lambda v: (_quant(v) or "").upper() != PREFERRED_QUANT)  # stable: Q4_K_M first
    base = ggufs[0] if ggufs else (variants[0] if variants else {})
    out = [_build(tag, entry, base, ids, preference)]
    used = {tag}
    for extra in ggufs[1:]:
        quant = _quant(extra) or f"v{len(used)}"
        extra_tag = _TAG_UNSAFE.sub("-", f"{tag}-{quant.lower()}").strip("-.")
        if extra_tag in used or not _TAG.match(extra_tag):
            extra_tag = f"{tag}-v{len(used)}"
        used.add(extra_tag)
        out.append(_build(extra_tag, entry, extra, {}, ["pendra"]))
    return out, warnings


def _invalid(variants: list[dict[str, Any]]) -> str | None:
    """Why one of ``variants`` is not a valid worker variant, or ``None``."""
    from pydantic import ValidationError

    from worker.catalogue.schema import CatalogueVariant

    for variant in variants:
        try:
            CatalogueVariant.model_validate(variant)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ())) or "variant"
            return f"{where}: {first.get('msg', 'invalid')}"
    return None


def _model_name(entry: Mapping[str, Any], model_id: str) -> str:
    """The entry's name without its size (``Qwen 3.6 27B`` → ``Qwen 3.6``): it names the model,
    whose variants are the sizes."""
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        return model_id
    size = _first(entry, PARAMETER_KEYS, str)
    trimmed = name.strip()
    if size and trimmed.lower().endswith(" " + size.lower()):
        trimmed = trimmed[: -len(size) - 1].rstrip()
    return trimmed or name.strip()


def from_api(entries: list[Any]) -> tuple[list[Any], list[str]]:
    """API entries → worker model documents (validated later, one by one) and warnings."""
    models: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for index, entry in enumerate(entries):
        label = entry.get("id") if isinstance(entry, dict) else None
        name = f"entry {index}" + (f" ({label!r})" if isinstance(label, str) else "")
        if not isinstance(entry, dict) or not isinstance(label, str):
            warnings.append(f"skipped {name}: no 'id'")
            continue
        model_id, _, tag = label.strip().partition(":")
        tag = tag or LATEST
        if not _ID.match(model_id) or not _TAG.match(tag) or label.count(":") > 1:
            warnings.append(f"skipped {name}: the id is not of the form <id>:<tag>")
            continue
        capability = entry.get("capability")
        task = CAPABILITY_TASKS.get(str(capability).strip().lower()) if capability else "chat"
        if task is None:
            warnings.append(
                f"skipped {name}: capability {capability!r} is not one this worker serves"
            )
            continue
        variants, notes = _entry_variants(entry, model_id, tag)
        warnings += notes
        problem = _invalid(variants)
        if problem:  # checked per entry: a bad one never takes its siblings' model with it
            warnings.append(f"skipped {name}: {problem}")
            continue
        model = models.get(model_id)
        if model is None:
            display = _model_name(entry, model_id)
            model = models[model_id] = {
                "id": model_id,
                "name": display,
                "family": entry.get("family") if isinstance(entry.get("family"), str) else "",
                "task": task,
                "description": entry.get("description")
                if isinstance(entry.get("description"), str)
                else "",
                "license": _first(entry, ("licence", "license"), str) or "",
                "variants": [],
            }
        elif model["task"] != task:
            warnings.append(f"skipped {name}: {model_id} is a {model['task']} model elsewhere")
            continue
        taken = {v["tag"] for v in model["variants"]}
        for variant in variants:
            if variant["tag"] in taken:
                warnings.append(f"skipped {name}: duplicate tag {variant['tag']!r}")
                continue
            model["variants"].append(variant)
    return list(models.values()), warnings


def api_backend(backends: Iterable[str]) -> str:
    """The API's ``backend`` value for a variant's backends."""
    names = list(backends)
    if {"pendra", "ollama"} <= set(names):
        return "both"
    return names[0] if names else "pendra"


def to_api(models: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Worker model documents (``{"id", "variants": [...]}``, as in ``sample_catalogue.json``)
    in the API's shape: one entry per variant, its builds and backend ids as its variant."""
    data = []
    for model in models:
        for variant in model.get("variants") or []:
            backends = [b for b in variant.get("backends") or [] if isinstance(b, str)]
            build = {
                key: variant.get(key)
                for key in (
                    "quantisation",
                    "size_bytes",
                    "min_vram_bytes",
                    *GGUF_KEYS,
                    "ollama_tag",
                    "lmstudio_id",
                    "speaches_id",
                )
                if variant.get(key) is not None
            }
            build["backends"] = backends
            parameters = variant.get("parameters")
            data.append(
                {
                    "id": f"{model['id']}:{variant['tag']}",
                    "name": f"{model.get('name') or model['id']} {parameters or variant['tag']}",
                    "backend": api_backend(backends),
                    "capability": model.get("task"),
                    "parameter_size": parameters,
                    "context_length": variant.get("context_length"),
                    "licence": model.get("license") or None,
                    "family": model.get("family") or None,
                    "description": model.get("description") or None,
                    "variants": [build],
                }
            )
    return {"data": data}

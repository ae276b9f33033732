"""File-name rules of the modelstore (pure): which files are models, partials, sidecars."""

from __future__ import annotations

from pathlib import Path

GGUF_SUFFIX = ".gguf"
SIDECAR_SUFFIX = ".meta.json"
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".download", ".incomplete")


def is_partial(name: str) -> bool:
    """A download or copy still in progress: hidden files and the usual temp suffixes."""
    lowered = name.lower()
    return name.startswith(".") or lowered.endswith(PARTIAL_SUFFIXES)


def is_model_file(name: str) -> bool:
    """A finished ``*.gguf`` file (any case), not a partial one."""
    return name.lower().endswith(GGUF_SUFFIX) and not is_partial(name)


def sidecar_path(gguf: Path) -> Path:
    """``model.gguf`` -> ``model.gguf.meta.json``, the sidecar of a curated install."""
    return gguf.with_name(gguf.name + SIDECAR_SUFFIX)


def stem_id(gguf: Path) -> str:
    """The model id of a GGUF without a sidecar: its file name without ``.gguf``."""
    return gguf.name[: -len(GGUF_SUFFIX)] if gguf.name.lower().endswith(GGUF_SUFFIX) else gguf.name

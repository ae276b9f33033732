"""File-name rules of the modelstore (pure): which files are models, partials, sidecars."""

from __future__ import annotations

import re
from pathlib import Path

GGUF_SUFFIX = ".gguf"
SIDECAR_SUFFIX = ".meta.json"
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".download", ".incomplete")
SPLIT_PART = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
"""A part of a split GGUF (``gguf-split``): llama.cpp loads part 1 and finds the rest beside it."""


def is_partial(name: str) -> bool:
    """A download or copy still in progress: hidden files and the usual temp suffixes."""
    lowered = name.lower()
    return name.startswith(".") or lowered.endswith(PARTIAL_SUFFIXES)


def is_model_file(name: str) -> bool:
    """A finished ``*.gguf`` file (any case) that is a model by itself: not a partial one, not
    part 2+ of a split GGUF, not a vision projector (``mmproj``) that belongs beside a model."""
    lowered = name.lower()
    if not lowered.endswith(GGUF_SUFFIX) or is_partial(name) or "mmproj" in lowered:
        return False
    split = SPLIT_PART.match(name)
    return split is None or int(split.group("no")) == 1


def split_parts(gguf: Path) -> list[Path]:
    """Every part of the split GGUF whose first part is ``gguf`` (just ``[gguf]`` otherwise)."""
    split = SPLIT_PART.match(gguf.name)
    if split is None:
        return [gguf]
    count = int(split.group("count"))
    stem = split.group("stem")
    return [gguf.with_name(f"{stem}-{no:05d}-of-{count:05d}.gguf") for no in range(1, count + 1)]


def sidecar_path(gguf: Path) -> Path:
    """``model.gguf`` -> ``model.gguf.meta.json``, the sidecar of a curated install."""
    return gguf.with_name(gguf.name + SIDECAR_SUFFIX)


def stem_id(gguf: Path) -> str:
    """The model id of a GGUF without a sidecar: its file name without ``.gguf`` (and without
    ``-00001-of-0000N`` for the first part of a split GGUF)."""
    split = SPLIT_PART.match(gguf.name)
    if split is not None:
        return split.group("stem")
    return gguf.name[: -len(GGUF_SUFFIX)] if gguf.name.lower().endswith(GGUF_SUFFIX) else gguf.name

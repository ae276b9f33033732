"""Choosing what to download from a GGUF repository's file list (pure).

A repository holds one *build* per quantisation: a single ``…-Q4_K_M.gguf``, or a split GGUF whose
parts are named ``…-00001-of-00003.gguf`` (llama.cpp loads the first part and finds the others
beside it), sometimes in a folder per quantisation. Vision models add an ``mmproj-….gguf``
projector, which llama.cpp needs beside the model. The quantisation is read from the file (or
folder) name, the way ``ollama pull hf.co/…:Q4_K_M`` matches it: case-insensitively.

Without a quantisation asked for, Q4_K_M is taken, else the closest one on :data:`PREFERRED` (and
the note says which); a quantisation asked for that the repository lacks is an error listing the
ones it has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from worker.errors import ModelNotFound

DEFAULT_QUANT = "Q4_K_M"
PREFERRED: tuple[str, ...] = (
    "Q4_K_M", "Q4_K_S", "UD-Q4_K_XL", "Q4_K_L", "IQ4_XS", "IQ4_NL", "Q4_0", "Q4_1", "MXFP4",
    "MXFP4_MOE", "Q5_K_M", "Q5_K_S", "UD-Q5_K_XL", "Q5_K_L", "Q5_0", "Q5_1", "Q3_K_L", "Q3_K_M",
    "UD-Q3_K_XL", "Q6_K", "Q6_K_L", "Q3_K_S", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS", "Q8_0",
    "Q2_K_L", "Q2_K", "UD-Q2_K_XL", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S",
    "BF16", "F16", "F32",
)  # fmt: skip
"""The default quantisation first, then the next closest in quality and size."""
MMPROJ_PREFERRED: tuple[str, ...] = ("F16", "BF16", "Q8_0", "F32")

_QUANT = re.compile(
    r"(?<![A-Za-z0-9])((?:UD-)?(?:I?Q[1-8](?:_[0-9A-Z]{1,4})*|TQ[12]_0|MXFP4(?:_MOE)?|BF16|F16|F32))"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


@dataclass(frozen=True)
class RepoFile:
    """One file of the repository as the Hub lists it (``siblings`` with ``blobs=True``)."""

    path: str
    size: int | None = None
    sha256: str | None = None
    """The LFS SHA-256; ``None`` for a file stored in git itself."""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Build:
    """One installable GGUF: a single file, or the parts of a split GGUF in order."""

    label: str | None
    parts: tuple[RepoFile, ...]

    @property
    def first(self) -> RepoFile:
        return self.parts[0]

    @property
    def size(self) -> int | None:
        sizes = [p.size for p in self.parts]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    @property
    def split(self) -> bool:
        return len(self.parts) > 1

    @property
    def name(self) -> str:
        """The label, or the file name without ``.gguf`` for a file whose name has none."""
        if self.label:
            return self.label
        match = _SPLIT.match(self.first.name)
        stem = match.group("stem") if match else self.first.name[: -len(".gguf")]
        return stem


@dataclass(frozen=True)
class Choice:
    build: Build
    mmproj: RepoFile | None = None
    note: str | None = None
    """Said to the user when the choice is not exactly what was asked for."""


def quant_label(path: str) -> str | None:
    """The quantisation named in a file path (the file name first, then its folders)."""
    segments = path.split("/")
    for segment in reversed(segments):
        found = _QUANT.findall(segment)
        if found:
            return found[-1].upper()
    return None


def is_mmproj(path: str) -> bool:
    return "mmproj" in path.rsplit("/", 1)[-1].lower()


def is_gguf(path: str) -> bool:
    return path.lower().endswith(".gguf")


@dataclass(frozen=True)
class RepoGGUFs:
    builds: tuple[Build, ...]
    mmprojs: tuple[RepoFile, ...]
    incomplete: tuple[str, ...] = ()
    """Split GGUFs with parts missing (named, never offered)."""

    @property
    def labels(self) -> list[str]:
        """Every build's name, the preferred quantisations first."""
        names = dict.fromkeys(b.name for b in self.builds)
        return sorted(names, key=lambda name: (_rank(name), name))


def repo_ggufs(files: Iterable[RepoFile]) -> RepoGGUFs:
    """Group a repository's files into builds and projector files."""
    singles: list[Build] = []
    mmprojs: list[RepoFile] = []
    groups: dict[tuple[str, str, int], dict[int, RepoFile]] = {}
    for item in files:
        if not is_gguf(item.path):
            continue
        if is_mmproj(item.path):
            mmprojs.append(item)
            continue
        match = _SPLIT.match(item.name)
        if match:
            folder = item.path.rsplit("/", 1)[0] if "/" in item.path else ""
            key = (folder, match.group("stem"), int(match.group("count")))
            groups.setdefault(key, {})[int(match.group("no"))] = item
        else:
            singles.append(Build(quant_label(item.path), (item,)))
    incomplete: list[str] = []
    for (folder, stem, count), parts in groups.items():
        if count < 1 or sorted(parts) != list(range(1, count + 1)):
            where = f"{folder}/{stem}" if folder else stem
            incomplete.append(f"{where} ({len(parts)} of {count} parts)")
            continue
        ordered = tuple(parts[i] for i in range(1, count + 1))
        singles.append(Build(quant_label(ordered[0].path), ordered))
    builds = sorted(singles, key=lambda b: (b.split, len(b.first.path), b.first.path))
    return RepoGGUFs(tuple(builds), tuple(sorted(mmprojs, key=lambda f: f.path)), tuple(incomplete))


def _rank(label: str | None) -> int:
    return PREFERRED.index(label) if label in PREFERRED else len(PREFERRED)


def _pick_mmproj(found: RepoGGUFs, build: Build) -> RepoFile | None:
    if not found.mmprojs:
        return None
    folder = build.first.path.rsplit("/", 1)[0] if "/" in build.first.path else ""

    def order(item: RepoFile) -> tuple[int, int, str]:
        item_folder = item.path.rsplit("/", 1)[0] if "/" in item.path else ""
        label = quant_label(item.path)
        preference = (
            MMPROJ_PREFERRED.index(label) if label in MMPROJ_PREFERRED else len(MMPROJ_PREFERRED)
        )
        return (item_folder != folder, preference, item.path)

    return min(found.mmprojs, key=order)


def choose(
    found: RepoGGUFs, repo: str, *, quant: str | None = None, file: str | None = None
) -> Choice:
    """The build to install: the exact ``file``, the ``quant`` asked for, or the default."""
    display = f"hf.co/{repo}"
    if not found.builds:
        extra = (
            f"; incomplete split GGUFs: {', '.join(found.incomplete)}" if found.incomplete else ""
        )
        raise ModelNotFound(
            f"{display} has no GGUF model file{extra}.",
            hint="the built-in backend runs GGUF models: look for a repository with GGUF files "
            "(often named …-GGUF)",
        )
    if file is not None:
        for build in found.builds:
            if any(part.path == file for part in build.parts):
                return Choice(build, _pick_mmproj(found, build))
        raise ModelNotFound(
            f"{display} has no GGUF file {file!r}.",
            hint=f"its GGUFs: {', '.join(b.first.path for b in found.builds)}",
        )
    if quant is not None:
        wanted = quant.upper()
        matches = [b for b in found.builds if b.label == wanted]
        if not matches:
            matches = [b for b in found.builds if b.name.lower() == quant.lower()]
        if not matches:
            labels = found.labels
            raise ModelNotFound(
                f"{display} has no {quant} GGUF.",
                hint=f"it has: {', '.join(labels)} — e.g. `pendra pull {display}:{labels[0]}`",
            )
        build = matches[0]
        note = None
        if len(matches) > 1:
            note = f"{len(matches)} files are {wanted}; took {build.first.path}"
        return Choice(build, _pick_mmproj(found, build), note)
    best = min(found.builds, key=lambda b: (_rank(b.label), b.split, len(b.first.path)))
    if _rank(best.label) == len(PREFERRED):
        # No known quantisation name: the smallest build is the one most likely to fit.
        best = min(found.builds, key=lambda b: (b.size is None, b.size or 0, b.first.path))
    note = None
    if best.label != DEFAULT_QUANT:
        others = ", ".join(x for x in found.labels if x != best.name) or "nothing else"
        note = (
            f"{display} has no {DEFAULT_QUANT} GGUF; installing {best.name}, the closest "
            f"(it also has: {others})"
        )
    return Choice(best, _pick_mmproj(found, best), note)

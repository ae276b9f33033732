"""Installing a catalogue variant into the built-in backend's modelstore, and removing it.

The GGUF is downloaded with :func:`~worker.installs.download.download_verified`; its sidecar
is written *before* the GGUF is renamed into place, so the modelstore's watcher never
sees the model without its ref (which would make it appear briefly under its file-stem id).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit

from worker.backends.base import Task
from worker.catalogue.refs import ModelRef
from worker.catalogue.schema import CatalogueModel, CatalogueVariant
from worker.errors import InstallError, ModelNotFound
from worker.hardware import free_disk
from worker.installs.download import (
    Progress,
    download_verified,
    free_space_error,
    lock_path,
    partial_path,
    validator_path,
)
from worker.modelstore.naming import is_model_file, sidecar_path
from worker.modelstore.sidecar import Sidecar, SidecarError, read_sidecar, write_sidecar

SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]*(?:\.[A-Za-z0-9_+-]+)*\.gguf$")
MAX_FILE_NAME = 200
FREE_SPACE_MARGIN = 64 * 1024 * 1024
"""Keep this much free after the download: a full disk breaks more than the download."""


@dataclass(frozen=True)
class InstalledFile:
    path: Path
    sha256: str
    size: int
    downloaded: bool
    resumed_from: int = 0


def file_name_for(ref: ModelRef, url: str) -> str:
    """The GGUF's file name: the URL's own name when it is a plain ``*.gguf`` name, else one made
    from the ref. Never hidden, never with a path in it, so it cannot escape the modelstore."""
    candidate = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if len(candidate) <= MAX_FILE_NAME and SAFE_FILE_NAME.match(candidate):
        return candidate
    return f"{ref.file_stem}.gguf"


def inside(directory: Path, name: str) -> Path:
    """``directory / name``, refusing anything that would land elsewhere."""
    path = directory / name
    if path.parent != directory or name in {"", ".", ".."} or "/" in name or "\\" in name:
        raise InstallError(f"Refusing the file name {name!r}: it would leave {directory}.")
    return path


def owner_ref(gguf: Path) -> str | None:
    """The ref recorded in a GGUF's sidecar, or ``None`` (no sidecar, or unreadable)."""
    try:
        return read_sidecar(sidecar_path(gguf)).ref
    except (OSError, SidecarError):
        return None


def destination(models_dir: Path, ref: ModelRef, url: str) -> Path:
    """Where ``ref`` goes; a different ref's file of the same name makes it use the ref's name."""
    path = inside(models_dir, file_name_for(ref, url))
    if path.exists():
        owner = owner_ref(path)
        if owner is not None and owner != str(ref):
            path = inside(models_dir, f"{ref.file_stem}.gguf")
    return path


def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def _sidecar_for(
    ref: ModelRef, model: CatalogueModel, variant: CatalogueVariant, url: str, sha256: str
) -> Sidecar:
    return Sidecar(
        ref=str(ref),
        task=Task(model.task),
        sha256=sha256,
        source_url=url,
        context_length=variant.context_length,
        installed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


async def install_into_store(
    models_dir: Path,
    ref: ModelRef,
    model: CatalogueModel,
    variant: CatalogueVariant,
    progress: Progress,
) -> InstalledFile:
    """Download (or resume, or re-verify) ``ref`` into ``models_dir`` with its sidecar."""
    if not (variant.gguf_url and variant.gguf_sha256):
        others = ", ".join(b for b in variant.backends if b != "pendra") or "none"
        raise InstallError(
            f"{ref} has no pinned GGUF download, so the built-in backend cannot install it.",
            hint=f"backends that can: {others} (use --backend)",
        )
    url, sha256, size = variant.gguf_url, variant.gguf_sha256, variant.size_bytes
    models_dir.mkdir(parents=True, exist_ok=True)
    dest = destination(models_dir, ref, url)

    if dest.exists():
        installed = await _adopt_existing(dest, ref, model, variant, url, sha256, size, progress)
        if installed is not None:
            return installed

    part = partial_path(dest)
    have = part.stat().st_size if part.exists() else 0
    if size is not None:
        free = free_disk(models_dir)
        needed = max(0, size - have)
        if free is not None and needed + FREE_SPACE_MARGIN > free:
            raise free_space_error(dest, needed + FREE_SPACE_MARGIN, free)

    # Sidecar first (see the module docstring), then the verified rename.
    write_sidecar(sidecar_path(dest), _sidecar_for(ref, model, variant, url, sha256))
    try:
        result = await download_verified(url, dest, sha256=sha256, size=size, progress=progress)
    except BaseException:
        if not dest.exists():
            with contextlib.suppress(FileNotFoundError):
                sidecar_path(dest).unlink()
        raise
    return InstalledFile(dest, result.sha256, result.size, True, result.resumed_from)


async def _adopt_existing(
    dest: Path,
    ref: ModelRef,
    model: CatalogueModel,
    variant: CatalogueVariant,
    url: str,
    sha256: str,
    size: int | None,
    progress: Progress,
) -> InstalledFile | None:
    """An install over an existing file: trust a matching sidecar, else re-hash the file."""
    actual = dest.stat().st_size
    try:
        sidecar = read_sidecar(sidecar_path(dest))
    except (OSError, SidecarError):
        sidecar = None
    if sidecar and sidecar.ref == str(ref) and sidecar.sha256 == sha256 and actual == size:
        return InstalledFile(dest, sha256, actual, downloaded=False)
    progress("verifying", 0, actual)
    got = await asyncio.to_thread(_sha256_file, dest)
    if got != sha256:
        raise InstallError(
            f"{dest} already exists and is a different file (SHA-256 {got}).",
            hint="move or delete it, then install again",
        )
    write_sidecar(sidecar_path(dest), _sidecar_for(ref, model, variant, url, sha256))
    return InstalledFile(dest, sha256, actual, downloaded=False)


def installed_files(models_dir: Path, ref: ModelRef | str) -> list[Path]:
    """The GGUFs whose sidecar says they are ``ref`` (in the modelstore or an install folder)."""
    from worker.installs.hf import find_installs

    return sorted(
        r.gguf
        for r in find_installs(models_dir, str(ref))
        if r.complete and is_model_file(r.gguf.name)
    )


def partial_files(models_dir: Path, ref: ModelRef, url: str | None) -> list[Path]:
    """The partial download of ``ref`` (and its validator), if any."""
    names = {f"{ref.file_stem}.gguf"}
    if url:
        names.add(file_name_for(ref, url))
    out = []
    for name in names:
        dest = models_dir / name
        out += [p for p in (partial_path(dest), validator_path(dest)) if p.exists()]
    return out


def remove_from_store(models_dir: Path, ref: ModelRef, url: str | None = None) -> list[Path]:
    """Delete ``ref``'s GGUF(s), sidecar(s) and partial download; the paths removed.

    Used when no built-in backend runs in this process (``pendra models rm`` without a worker);
    with a worker running, ``PendraBackend.uninstall`` does it and refuses a model that is serving.
    Installs with several files (split GGUFs, projectors; from Hugging Face) go with all of them.
    """
    from worker.installs.hf import find_installs, remove_record

    removed: list[Path] = []
    for record in find_installs(models_dir, str(ref)):
        removed += remove_record(record)
    for path in partial_files(models_dir, ref, url):
        dest = path.with_name(
            path.name.lstrip(".").removesuffix(".part.json").removesuffix(".part")
        )
        if lock_path(dest).exists():
            from worker.installs.filelock import FileLock

            with FileLock(lock_path(dest)) as lock:
                if not lock.acquired:
                    raise InstallError(
                        f"{ref} is being downloaded right now.",
                        hint="cancel the install first",
                    )
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    if not removed:
        raise ModelNotFound(
            f"{ref} is not installed in the built-in modelstore ({models_dir}).",
            hint="see what is installed with `pendra models`",
        )
    return removed

"""Installing a model resolved on the Hugging Face Hub into the modelstore, and removing it.

Each install gets its own folder in the modelstore (``hf.co--OWNER--REPO--QUANT``; the store reads
one level of folders): the GGUF, the other parts of a split GGUF, the ``mmproj`` projector of a
vision model, and the sidecar that records all of them with their SHA-256 (the curated sidecar plus
``files``, ``revision``, ``quantisation``, ``mmproj``).

Order matters, so the model never appears incomplete: the sidecar is written first (the store
ignores a sidecar whose GGUF is not there), then the projector and parts 2..N (the store never
lists those as models), and part 1 last, renamed into place only once verified. Every file is
fetched with the worker's own verified transfer (pinned SHA-256, resume, atomic rename); the Hub's
token goes only with requests to the Hub's own origin.

A file whose bytes are not the pinned ones removes the whole install — the files already verified
too — so nothing of it is left in the modelstore. An interruption (network, Ctrl-C, ``kill -9``)
keeps what was verified and the partial file: running the install again resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from worker.backends.base import Task
from worker.errors import InstallError, ModelNotFound
from worker.hf.refs import looks_like_hf_ref, parse_hf_ref
from worker.hf.resolve import HFFile, ResolvedHF, same_origin
from worker.installs.builtin import MAX_FILE_NAME, SAFE_FILE_NAME
from worker.installs.download import (
    IntegrityError,
    Progress,
    download_verified,
    lock_path,
    partial_path,
    validator_path,
)
from worker.installs.filelock import FileLock
from worker.modelstore.naming import SIDECAR_SUFFIX, sidecar_path
from worker.modelstore.sidecar import (
    Sidecar,
    SidecarError,
    SidecarFile,
    read_sidecar,
    write_sidecar,
)

FOLDER_PREFIX = "hf.co--"
MAX_FOLDER = 200
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True)
class HFInstalled:
    path: Path
    """The model's GGUF (the first part of a split GGUF)."""
    ref: str
    downloaded: bool
    bytes_total: int


def install_folder(models_dir: Path, resolved: ResolvedHF) -> Path:
    """``models_dir/hf.co--OWNER--REPO--QUANT``: one folder per installed quantisation."""
    owner, name = resolved.repo.split("/", 1)
    folder = _UNSAFE.sub("_", f"{FOLDER_PREFIX}{owner}--{name}--{resolved.quant}")[:MAX_FOLDER]
    path = models_dir / folder
    if path.parent != models_dir or folder.startswith("."):
        raise InstallError(f"Refusing the folder name {folder!r}: it would leave {models_dir}.")
    return path


def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def _sidecar(ref: str, resolved: ResolvedHF, task: str | None, context: int | None) -> Sidecar:
    first = resolved.parts[0]
    return Sidecar(
        ref=ref,
        task=Task(task) if task else None,
        sha256=first.sha256,
        source_url=first.url,
        context_length=context,
        installed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        revision=resolved.revision,
        quantisation=resolved.quant,
        has_chat_template=resolved.has_chat_template,
        licence=resolved.licence,
        mmproj=resolved.mmproj.name if resolved.mmproj else None,
        files=tuple(SidecarFile(f.name, f.sha256, f.size) for f in resolved.files),
    )


def _download_order(resolved: ResolvedHF) -> list[HFFile]:
    """Projector and parts 2..N first; part 1 (what makes the model appear) last."""
    return [*([resolved.mmproj] if resolved.mmproj else []), *resolved.parts[1:], resolved.parts[0]]


def _check_names(resolved: ResolvedHF) -> None:
    """Every file lands in the install's folder under its plain name: refuse names that are not
    plain GGUF names (whatever the Hub lists) and two files with the same name."""
    names = [f.name for f in resolved.files]
    for name in names:
        if len(name) > MAX_FILE_NAME or not SAFE_FILE_NAME.match(name):
            raise InstallError(
                f"{resolved.ref} lists a file named {name[:120]!r}, which is not a plain GGUF file "
                "name; nothing was downloaded.",
                hint="pick another quantisation or repository",
            )
    if len(set(names)) != len(names):
        raise InstallError(
            f"{resolved.ref} has two files with the same name in different folders; the "
            "built-in backend needs them side by side.",
            hint="install a single-folder quantisation of this repository instead",
        )


async def install_resolved(
    models_dir: Path,
    resolved: ResolvedHF,
    progress: Progress,
    *,
    ref: str | None = None,
    token: str | None = None,
    task: str | None = None,
    context_length: int | None = None,
) -> HFInstalled:
    """Download ``resolved`` into its folder; ``ref`` (default: the HF ref) names the model."""
    ref = ref or resolved.ref
    _check_names(resolved)
    folder = install_folder(models_dir, resolved)
    folder.mkdir(parents=True, exist_ok=True)
    first = folder / resolved.parts[0].name
    side = sidecar_path(first)
    previous = _read(side)
    trusted = {
        f.file: f.sha256 for f in (previous.files if previous and previous.ref == ref else ())
    }
    record = _sidecar(
        ref, resolved, task or resolved.task, context_length or resolved.context_length
    )
    if previous and previous.ref == ref and previous.revision == resolved.revision:
        record = replace(record, installed_at=previous.installed_at)  # the same install again
    write_sidecar(side, record)
    total = resolved.size
    done_before = 0
    downloaded = False
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        for item in _download_order(resolved):
            dest = folder / item.name
            base = done_before

            def report(phase: str, done: int, _total: int | None, base: int = base) -> None:
                progress(phase, base + done, total)

            if dest.exists() and await _already_there(dest, item, trusted, report):
                done_before += item.size
                continue
            headers = auth if same_origin(item.url, resolved.endpoint) else {}
            await download_verified(
                item.url, dest, sha256=item.sha256, size=item.size, progress=report, headers=headers
            )
            downloaded = True
            done_before += item.size
    except IntegrityError:
        for record in find_installs(models_dir, ref):  # nothing of a bad download stays
            if record.sidecar.parent == folder:
                remove_record(record)
        raise
    return HFInstalled(first, ref, downloaded, total)


async def _already_there(
    dest: Path, item: HFFile, trusted: dict[str, str], report: Progress
) -> bool:
    """A file from an earlier (interrupted) run: trusted when the sidecar recorded it with this
    hash and the size matches (files only ever get their name once verified); else re-hashed."""
    import asyncio

    size = dest.stat().st_size
    if trusted.get(item.name) == item.sha256 and size == item.size:
        return True
    report("verifying", 0, size)
    got = await asyncio.to_thread(_sha256_file, dest)
    if got == item.sha256:
        return True
    raise InstallError(
        f"{dest} already exists and is a different file (SHA-256 {got}).",
        hint=f"remove it (`pendra rm` the model, or delete {dest.parent}), then install again",
    )


def _read(side: Path) -> Sidecar | None:
    try:
        return read_sidecar(side)
    except (OSError, SidecarError):
        return None


# -- finding and removing installs ----------------------------------------------------------------
def _sidecars(models_dir: Path) -> Iterator[Path]:
    """Every sidecar in the modelstore and its first-level folders, with or without its GGUF."""
    if not models_dir.is_dir():
        return
    for entry in sorted(models_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            with contextlib.suppress(OSError):
                yield from sorted(
                    p for p in entry.iterdir() if p.name.endswith(SIDECAR_SUFFIX) and p.is_file()
                )
        elif entry.name.endswith(SIDECAR_SUFFIX):
            yield entry


def same_model(wanted: str, recorded: str) -> bool:
    """Whether ``recorded`` (a sidecar's ref) is the model ``wanted`` names. HF refs compare by
    repository (case-insensitively, as the Hub does) and quantisation (any case); ``wanted``
    without a quantisation matches every quantisation of its repository."""
    if not looks_like_hf_ref(wanted):
        return wanted == recorded
    if not looks_like_hf_ref(recorded):
        return False
    try:
        want, have = parse_hf_ref(wanted), parse_hf_ref(recorded)
    except Exception:
        return False
    if want.repo.lower() != have.repo.lower():
        return False
    return want.quant is None or (have.quant or "").lower() == want.quant.lower()


@dataclass(frozen=True)
class InstallRecord:
    """An install found by its sidecar (complete, or interrupted before part 1 landed)."""

    sidecar: Path
    ref: str
    files: tuple[Path, ...]

    @property
    def gguf(self) -> Path:
        return self.sidecar.with_name(self.sidecar.name[: -len(SIDECAR_SUFFIX)])

    @property
    def complete(self) -> bool:
        return self.gguf.is_file()


def find_installs(models_dir: Path, wanted: str) -> list[InstallRecord]:
    """The installs whose sidecar ref is the model ``wanted`` names (see :func:`same_model`)."""
    found = []
    for side in _sidecars(models_dir):
        sidecar = _read(side)
        if sidecar is None or not same_model(wanted, sidecar.ref):
            continue
        gguf = side.with_name(side.name[: -len(SIDECAR_SUFFIX)])
        files = [gguf, *(side.parent / f.file for f in sidecar.files)]
        unique = tuple(dict.fromkeys(files))
        found.append(InstallRecord(side, sidecar.ref, unique))
    return found


def remove_record(record: InstallRecord) -> list[Path]:
    """Delete one install: its files, their partial downloads, the sidecar, and its folder when
    that is an install folder left empty. Refuses while a download of it is running."""
    for path in record.files:
        if lock_path(path).exists():
            with FileLock(lock_path(path)) as lock:
                if not lock.acquired:
                    raise InstallError(
                        f"{record.ref} is being downloaded right now.",
                        hint="cancel the install first",
                    )
    removed: list[Path] = []
    for path in (*record.files, record.sidecar):
        for candidate in (path, partial_path(path), validator_path(path), lock_path(path)):
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
                removed.append(candidate)
    folder = record.sidecar.parent
    if folder.name.startswith(FOLDER_PREFIX):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty: a user's own files in it stay
    return removed


def remove_installs(models_dir: Path, wanted: str) -> list[Path]:
    """Delete every install of ``wanted``; raises :class:`ModelNotFound` when there is none."""
    records = find_installs(models_dir, wanted)
    if looks_like_hf_ref(wanted):
        refs = sorted({r.ref for r in records})
        if len(refs) > 1 and parse_hf_ref(wanted).quant is None:
            raise InstallError(
                f"{len(refs)} quantisations of {wanted} are installed: {', '.join(refs)}.",
                hint="name the one to remove, e.g. `pendra rm " + refs[0] + "`",
            )
    removed: list[Path] = []
    for record in records:
        removed += remove_record(record)
    if not records:
        raise ModelNotFound(
            f"{wanted} is not installed in the built-in modelstore ({models_dir}).",
            hint="see what is installed with `pendra models`",
        )
    return removed

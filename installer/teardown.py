"""What ``get.sh --uninstall --remove-models`` may delete from the built-in modelstore.

The rule: only files this product installed, never a directory it did not create, never a file the
user put there. A GGUF counts as *installed by pendra* when the ``<file>.gguf.meta.json`` sidecar
beside it is one the installer writes (:func:`worker.installs.builtin.install_into_store`, for
catalogue and Hugging Face refs alike): a valid sidecar carrying ``ref``, a 64-hex ``sha256``,
an http(s) ``source_url`` and ``installed_at``. A sidecar a user writes by hand to give their own
GGUF a chat format has no download record, so their GGUF stays. With such a GGUF go its sidecar
and the hidden partial-download files of the same name (``.<file>.gguf.part``, ``.part.json``,
``.lock``). An interrupted download goes too: its recorded sidecar, or its partial file whose
``.part.json`` validator records the URL and pinned hash the downloader was fetching.

``--all`` (``get.sh --remove-all-models``) widens this to every ``*.gguf`` at the top of the models
directory, the user's own included, with their sidecars and partial downloads; a symlink is
unlinked, never followed. Other files and every sub-directory are always left alone, and so is
every file owned by another user (a shared folder). The models directory itself goes only when it
is the default one under ``PENDRA_HOME`` and ends up empty.

The directory comes from the worker's own settings loader, so this sees exactly the directory the
worker uses. A directory that is ``/``, ``$HOME`` or a parent of ``$HOME`` is refused outright, as
is a relative one (it would depend on where this runs).

Run by get.sh as ``python -I -m installer.teardown plan-models [--all]`` (what would go, one
tab-separated line each) and ``remove-models [--all]``, which reads the paths get.sh showed the user
on stdin and removes only those still planned, so nothing is deleted that was not listed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from worker.errors import PendraError
from worker.installs.download import lock_path, partial_path, validator_path
from worker.installs.filelock import FileLock
from worker.modelstore.naming import GGUF_SUFFIX, SIDECAR_SUFFIX, sidecar_path
from worker.modelstore.sidecar import Sidecar, SidecarError, read_sidecar

EXIT_REFUSED = 3
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PARTIAL_SUFFIXES = (".part.json", ".part", ".lock")


class UnsafeModelsDir(PendraError):
    """The models directory is one whose contents cannot be the worker's alone."""

    code = "unsafe_models_dir"
    exit_code = EXIT_REFUSED


@dataclass(frozen=True)
class Kept:
    path: Path
    reason: str


@dataclass
class ModelsPlan:
    """The files to remove (each a plain path inside ``models_dir``) and the GGUFs kept, why."""

    models_dir: Path
    remove: list[Path] = field(default_factory=list)
    keep: list[Kept] = field(default_factory=list)
    other_entries: int = 0


# --------------------------------------------------------------------------------------------------
# Rules (pure where possible)


def unsafe_dir_reason(directory: Path, home: Path) -> str | None:
    """Why ``directory`` must never be emptied by an uninstall, or ``None`` when it may be."""
    if not directory.is_absolute():
        return "it is a relative path: which directory it means depends on where it runs"
    home_real = Path(os.path.realpath(home))
    for candidate in {Path(os.path.normpath(directory)), Path(os.path.realpath(directory))}:
        if candidate == Path(candidate.anchor):
            return "it is the root of the file system"
        if candidate in {home, home_real}:
            return "it is your home directory"
        if candidate in home.parents or candidate in home_real.parents:
            return "it holds your home directory"
    return None


def is_download_record(sidecar: Sidecar) -> bool:
    """A sidecar as the installer writes it: the ref, the pinned hash, the URL and the time."""
    scheme = urlsplit(sidecar.source_url or "").scheme
    return bool(sidecar.ref and sidecar.sha256 and sidecar.installed_at) and scheme in {
        "http",
        "https",
    }


def _plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _owned_by_me(path: Path) -> bool:
    try:
        return path.lstat().st_uid == os.geteuid()
    except OSError:
        return False


def _printable(name: str) -> bool:
    return name.isprintable() and "\t" not in name


def _recorded_sidecar(path: Path) -> bool:
    if not _plain_file(path):
        return False
    try:
        return is_download_record(read_sidecar(path))
    except (OSError, SidecarError):
        return False


def _recorded_partial(validator: Path) -> bool:
    """A partial download's validator as the downloader writes it: URL and pinned hash."""
    if not _plain_file(validator) or validator.lstat().st_size > 64 * 1024:
        return False
    try:
        data = json.loads(validator.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(data, dict):
        return False
    url, sha = data.get("url"), data.get("sha256")
    return (
        isinstance(url, str)
        and urlsplit(url).scheme in {"http", "https"}
        and isinstance(sha, str)
        and _SHA256.match(sha) is not None
    )


def _download_running(lock: Path) -> bool:
    if not _plain_file(lock):
        return False
    with FileLock(lock) as held:
        return not held.acquired


@dataclass
class _Slot:
    """Everything in the models directory that belongs to one GGUF name."""

    gguf: Path
    present: set[str] = field(default_factory=set)


def _slots(entries: Sequence[Path]) -> dict[str, _Slot]:
    """Group the directory's model-related entries by the GGUF name they belong to."""
    slots: dict[str, _Slot] = {}

    def slot(directory: Path, gguf_name: str) -> _Slot:
        return slots.setdefault(gguf_name, _Slot(directory / gguf_name))

    for entry in entries:
        name = entry.name
        gguf_name = None
        if name.startswith("."):
            for suffix in _PARTIAL_SUFFIXES:
                stem = name[1:].removesuffix(suffix)
                if stem != name[1:] and stem.lower().endswith(GGUF_SUFFIX):
                    gguf_name = stem
                    break
        elif name.endswith(GGUF_SUFFIX + SIDECAR_SUFFIX):
            gguf_name = name[: -len(SIDECAR_SUFFIX)]
        elif name.lower().endswith(GGUF_SUFFIX):
            gguf_name = name
        if gguf_name is not None:
            slot(entry.parent, gguf_name).present.add(name)
    return slots


def _plan_slot(slot: _Slot, plan: ModelsPlan, everything: bool) -> None:
    gguf = slot.gguf
    sidecar = sidecar_path(gguf)
    partials = [p for p in (partial_path(gguf), validator_path(gguf)) if p.name in slot.present]
    lock = lock_path(gguf)
    has_lock = lock.name in slot.present
    here = [gguf.parent / name for name in sorted(slot.present)]
    if not all(_printable(p.name) for p in here):
        plan.keep.extend(
            Kept(p, "its name has control characters: remove it yourself") for p in here
        )
        return
    if has_lock and _download_running(lock):
        plan.keep.append(Kept(gguf, "it is being downloaded right now"))
        return
    strangers = [p for p in here if not _owned_by_me(p)]
    if strangers:
        # In a shared folder, another user's files are theirs, whatever their sidecar says.
        plan.keep.append(Kept(strangers[0], "it belongs to another user"))
        return

    gguf_here = gguf.name in slot.present
    sidecar_ours = _recorded_sidecar(sidecar)
    go: list[Path] = []
    if gguf_here and gguf.is_symlink():
        if everything:
            go.append(gguf)
        else:
            plan.keep.append(Kept(gguf, "a link you made: pendra never makes links"))
    elif gguf_here and _plain_file(gguf):
        if sidecar_ours or everything:
            go.append(gguf)
        else:
            plan.keep.append(Kept(gguf, "not downloaded by pendra: no install record beside it"))
    # else: a directory (or device) named *.gguf, never touched
    gguf_goes = gguf in go or not gguf_here
    if gguf_goes and (sidecar_ours or everything) and _plain_file(sidecar):
        go.append(sidecar)
    if partials and (everything or sidecar_ours or _recorded_partial(validator_path(gguf))):
        go.extend(p for p in partials if _plain_file(p))
        if has_lock and _plain_file(lock):
            go.append(lock)
    plan.remove.extend(go)


def plan_models(models_dir: Path, home: Path, *, everything: bool = False) -> ModelsPlan:
    """What an uninstall removes from ``models_dir``; raises :class:`UnsafeModelsDir`."""
    reason = unsafe_dir_reason(models_dir, home)
    if reason is not None:
        raise UnsafeModelsDir(
            f"refusing to remove models from {models_dir}: {reason}",
            hint="point PENDRA_MODELS_DIR (or models_dir in the configuration) at the models' own "
            "folder, or run the uninstall without --remove-models",
        )
    plan = ModelsPlan(models_dir)
    if not models_dir.is_dir():
        return plan
    entries = sorted(models_dir.iterdir())
    slots = _slots(entries)
    for name in sorted(slots):
        _plan_slot(slots[name], plan, everything)
    listed = set(plan.remove) | {kept.path for kept in plan.keep}
    plan.other_entries = sum(1 for entry in entries if entry not in listed)
    return plan


def _size_text(path: Path) -> str:
    try:
        size = path.lstat().st_size
    except OSError:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    return f"{size} B"  # pragma: no cover


def remove_planned(plan: ModelsPlan, shown: set[Path], default_dir: Path) -> list[tuple[Path, str]]:
    """Delete the planned files that were shown; ``(path, "")`` when removed, else the reason."""
    results: list[tuple[Path, str]] = []
    for path in plan.remove:
        if path not in shown:
            results.append((path, "not in the list you confirmed; kept"))
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            results.append((path, f"cannot remove it: {exc.strerror}"))
            continue
        results.append((path, ""))
    if plan.models_dir == default_dir:
        with contextlib.suppress(OSError):  # not empty: it holds the user's files
            plan.models_dir.rmdir()
            results.append((plan.models_dir, ""))
    return results


# --------------------------------------------------------------------------------------------------
# The command get.sh runs


def _settings_dirs() -> tuple[Path, Path]:
    from worker.settings import default_models_dir, load_settings

    settings = load_settings()
    return settings.models_dir, default_models_dir(settings.home)


def _print_plan(plan: ModelsPlan) -> None:
    out = sys.stdout
    out.write(f"dir\t{plan.models_dir}\t\n")
    for path in plan.remove:
        out.write(f"remove\t{path}\t{_size_text(path)}\n")
    for kept in plan.keep:
        out.write(f"keep\t{kept.path if _printable(str(kept.path)) else ascii(str(kept.path))}\t")
        out.write(f"{kept.reason}\n")
    if plan.other_entries:
        noun = "entry" if plan.other_entries == 1 else "entries"
        out.write(f"other\t{plan.models_dir}\t{plan.other_entries} other {noun}, never touched\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m installer.teardown",
        description="List or remove the model files pendra installed (used by get.sh --uninstall).",
    )
    parser.add_argument("action", choices=("plan-models", "remove-models"))
    parser.add_argument(
        "--all", action="store_true", help="every *.gguf in the models directory, not only pendra's"
    )
    args = parser.parse_args(argv)
    try:
        models_dir, default_dir = _settings_dirs()
        plan = plan_models(models_dir, Path.home(), everything=args.all)
    except PendraError as exc:
        print(exc.message, file=sys.stderr)
        if exc.hint:
            print(exc.hint, file=sys.stderr)
        return exc.exit_code
    if args.action == "plan-models":
        _print_plan(plan)
        return 0
    shown = {Path(line) for line in sys.stdin.read().splitlines() if line}
    failed = 0
    for path, problem in remove_planned(plan, shown, default_dir):
        if problem:
            failed += 1
            print(f"kept\t{path}\t{problem}")
        else:
            print(f"removed\t{path}\t")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

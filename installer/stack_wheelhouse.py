"""The wheelhouse the worker image is installed from: what this installation runs, as wheels.

The image is built without a compiler and without network: llama-cpp-python was built (minutes) or
downloaded for this host's accelerator when get.sh installed it, and the image gets exactly that
build. Every distribution the worker needs is packed back into a wheel from its installed files,
each file checked against the hash pip recorded for it in ``RECORD`` — no index, no download, no
build. Only a project installed in editable mode (a source checkout) is built, with ``pip wheel``.

Wheels are cached under ``$XDG_CACHE_HOME/pendra/wheelhouse`` keyed by a fingerprint of the
installed files, so a second ``pendra stack up`` reuses them, and a reinstalled build of the same
version (CPU → CUDA llama-cpp-python) is never mistaken for the old one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from worker.child_env import child_env
from worker.errors import PendraError

PROJECT = "pendra-worker"
# Fixed member timestamps make a repacked wheel byte-for-byte reproducible.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIP_DIST_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
PIP_TIMEOUT_S = 1800.0

Progress = Callable[[str], None]


class WheelhouseError(PendraError):
    code = "wheelhouse_error"


def _silent(_line: str) -> None:
    return None


def site_dirs() -> list[str]:
    """Where this environment's installed distributions live (not the current directory: a
    source checkout's ``*.egg-info`` must not stand in for the installed project)."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def installed(name: str) -> metadata.Distribution:
    for dist in metadata.distributions(name=name, path=site_dirs()):
        return dist
    wanted = canonicalize_name(name)
    for dist in metadata.distributions(path=site_dirs()):
        if canonicalize_name(dist.metadata["Name"] or "") == wanted:
            return dist
    raise WheelhouseError(
        f"{name} is not installed in this environment ({sys.prefix})",
        hint="re-run get.sh to repair the installation",
    )


def requirement_closure(root: str = PROJECT) -> list[metadata.Distribution]:
    """``root`` and everything it needs here (markers evaluated for this interpreter), sorted."""
    found: dict[str, metadata.Distribution] = {}
    pending: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, extras = pending.pop()
        key = (canonicalize_name(name), extras)
        if key in seen:
            continue
        seen.add(key)
        dist = installed(name)
        found[canonicalize_name(dist.metadata["Name"])] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not any(
                requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            ):
                continue
            pending.append((requirement.name, frozenset(requirement.extras)))
    return [found[name] for name in sorted(found)]


def _b64_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def escaped_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def direct_url(dist: metadata.Distribution) -> dict[str, object]:
    try:
        return json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return {}


def editable_source(dist: metadata.Distribution) -> Path | None:
    """The source tree of an editable install (``pip install -e DIR``), else None."""
    info = direct_url(dist)
    dir_info = info.get("dir_info")
    url = str(info.get("url") or "")
    if isinstance(dir_info, dict) and dir_info.get("editable") and url.startswith("file://"):
        return Path(url[len("file://") :])
    return None


def fingerprint(dist: metadata.Distribution) -> str:
    """Changes whenever the installed files change: the RECORD pip wrote (it lists every file's
    hash), or for an editable install the source files themselves."""
    digest = hashlib.sha256(f"{dist.metadata['Name']}=={dist.version}\n".encode())
    source = editable_source(dist)
    if source is not None:
        for path in _source_files(source, dist):
            digest.update(str(path.relative_to(source)).encode() + b"\0")
            digest.update(path.read_bytes())
        return digest.hexdigest()[:20]
    digest.update((dist.read_text("RECORD") or "").encode())
    return digest.hexdigest()[:20]


def _source_files(source: Path, dist: metadata.Distribution) -> Iterator[Path]:
    tops = [line.strip() for line in (dist.read_text("top_level.txt") or "").splitlines()]
    roots = [source / top for top in tops if top and (source / top).is_dir()]
    if not roots:
        roots = [p for p in sorted(source.iterdir()) if (p / "__init__.py").exists()]
    for name in ("pyproject.toml", "setup.cfg", "setup.py", "README.md"):
        if (source / name).is_file():
            yield source / name
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                yield path


# --------------------------------------------------------------------------------------------------
# Packing an installed distribution back into a wheel


def _wheel_tags(dist: metadata.Distribution) -> str:
    tags = [
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    if not tags:
        return "py3-none-any"
    parts = [tag.split("-") for tag in tags]
    pythons, abis, platforms = (sorted({p[i] for p in parts}) for i in range(3))
    if len(pythons) * len(abis) * len(platforms) == len(set(tags)):
        return f"{'.'.join(pythons)}-{'.'.join(abis)}-{'.'.join(platforms)}"
    return tags[0]


def wheel_filename(dist: metadata.Distribution) -> str:
    return f"{escaped_name(dist.metadata['Name'])}-{dist.version}-{_wheel_tags(dist)}.whl"


def is_host_built(dist: metadata.Distribution) -> bool:
    """A wheel built for this machine (``linux_x86_64``), not a portable manylinux one."""
    return any(
        platform.startswith("linux_") for platform in _wheel_tags(dist).split("-")[-1].split(".")
    )


def _entry_point_scripts(dist: metadata.Distribution) -> set[str]:
    return {ep.name for ep in dist.entry_points if ep.group in {"console_scripts", "gui_scripts"}}


def _archive_name(dist: metadata.Distribution, rel: str, data_dir: str) -> str | None:
    """Where an installed file goes in the wheel; None for files the installer regenerates."""
    base = Path(str(dist.locate_file("")))
    absolute = Path(os.path.normpath(base / rel))
    if absolute.is_relative_to(base):
        return absolute.relative_to(base).as_posix()
    prefix = Path(sys.prefix)
    if not absolute.is_relative_to(prefix):
        raise WheelhouseError(f"{dist.metadata['Name']} installed {absolute} outside {prefix}")
    inside = absolute.relative_to(prefix)
    if inside.parts[:1] == ("bin",):
        if inside.name in _entry_point_scripts(dist):
            return None  # pip writes entry-point scripts again at install time
        return f"{data_dir}/scripts/{inside.name}"
    return f"{data_dir}/data/{inside.as_posix()}"


def _script_bytes(data: bytes) -> bytes:
    """A copied script starts with this venv's interpreter; ``#!python`` lets pip rewrite it."""
    if data.startswith(b"#!") and sys.prefix.encode() in data.split(b"\n", 1)[0]:
        return b"#!python\n" + data.split(b"\n", 1)[1]
    return data


def repack(dist: metadata.Distribution, out_dir: Path) -> Path:
    """Write ``dist`` as a wheel into ``out_dir`` from its installed files; every file must still
    match the hash in its RECORD (an edited or half-removed install is refused)."""
    name = escaped_name(dist.metadata["Name"])
    dist_info = f"{name}-{dist.version}.dist-info"
    data_dir = f"{name}-{dist.version}.data"
    records = [line for line in (dist.read_text("RECORD") or "").splitlines() if line.strip()]
    if not records:
        raise WheelhouseError(f"{dist.metadata['Name']} has no RECORD (not installed by pip)")
    members: list[tuple[str, bytes]] = []
    installed_info = Path(str(dist._path)).name  # type: ignore[attr-defined]
    for line in records:
        rel, hash_text, _size = line.rsplit(",", 2)
        parts = Path(rel).parts
        if "__pycache__" in parts or rel.endswith(".pyc"):
            continue
        if parts[0] == installed_info:
            if len(parts) == 2 and parts[1] in _SKIP_DIST_INFO:
                continue
            rel_in_wheel = "/".join((dist_info, *parts[1:]))
            source = Path(str(dist.locate_file(rel)))
        else:
            archive = _archive_name(dist, rel, data_dir)
            if archive is None:
                continue
            rel_in_wheel = archive
            source = Path(str(dist.locate_file(rel)))
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise WheelhouseError(
                f"{dist.metadata['Name']}: {source} is missing ({exc.strerror})",
                hint="the installation was changed after pip installed it; re-run get.sh",
            ) from None
        if hash_text.startswith("sha256=") and hash_text[7:] != _b64_digest(data):
            raise WheelhouseError(
                f"{dist.metadata['Name']}: {source} differs from what pip installed",
                hint="the installation was changed after pip installed it; re-run get.sh",
            )
        if rel_in_wheel.startswith(f"{data_dir}/scripts/"):
            data = _script_bytes(data)
        members.append((rel_in_wheel, data))
    record_lines = [f"{arc},sha256={_b64_digest(data)},{len(data)}" for arc, data in members]
    record_lines.append(f"{dist_info}/RECORD,,")
    members.append((f"{dist_info}/RECORD", ("\n".join(record_lines) + "\n").encode()))
    target = out_dir / wheel_filename(dist)
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for arc, data in sorted(members, key=lambda m: (m[0].startswith(dist_info), m[0])):
            info = zipfile.ZipInfo(arc, date_time=_ZIP_EPOCH)
            executable = "/scripts/" in arc or arc.endswith(".so")
            info.external_attr = (0o755 if executable else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compresslevel=1)
    tmp.replace(target)
    return target


def pip_wheel(requirement: str, out_dir: Path, progress: Progress = _silent) -> Path:
    """``pip wheel --no-deps`` of one requirement or source tree (uses pip's own cache)."""
    with tempfile.TemporaryDirectory(prefix="pendra-pip-wheel-") as tmp:
        argv = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "--wheel-dir",
            tmp,
            requirement,
        ]
        progress(f"pip wheel {requirement}")
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=PIP_TIMEOUT_S,
                check=False,
                stdin=subprocess.DEVNULL,
                env=child_env(),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WheelhouseError(f"`pip wheel {requirement}` did not run: {exc}") from None
        built = sorted(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not built:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise WheelhouseError(
                f"`pip wheel {requirement}` failed: {' | '.join(tail) or 'no output'}",
                hint="it needs the package index (or pip's cache) for the build tools",
            )
        target = out_dir / built[0].name
        shutil.move(str(built[0]), target)
        return target


# --------------------------------------------------------------------------------------------------
# The wheelhouse


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "pendra" / "wheelhouse"


@dataclass(frozen=True)
class WheelEntry:
    name: str
    version: str
    path: Path
    fingerprint: str
    host_built: bool
    how: str  # "repacked", "built" or "cached"


@dataclass
class Wheelhouse:
    directory: Path
    wheels: list[WheelEntry] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for wheel in sorted(self.wheels, key=lambda w: w.name):
            digest.update(f"{wheel.name} {wheel.version} {wheel.fingerprint}\n".encode())
        return digest.hexdigest()[:20]

    def host_built_files(self) -> Iterable[Path]:
        """The installed shared objects of host-built wheels (e.g. llama.cpp's)."""
        for wheel in self.wheels:
            if wheel.host_built:
                yield wheel.path


def fingerprints(dists: list[metadata.Distribution]) -> str:
    """The wheelhouse fingerprint without building it (for image reuse)."""
    digest = hashlib.sha256()
    for dist in sorted(dists, key=lambda d: canonicalize_name(d.metadata["Name"])):
        name = canonicalize_name(dist.metadata["Name"])
        digest.update(f"{name} {dist.version} {fingerprint(dist)}\n".encode())
    return digest.hexdigest()[:20]


def build_wheelhouse(
    dest: Path,
    *,
    cache: Path | None = None,
    progress: Progress = _silent,
    dists: list[metadata.Distribution] | None = None,
) -> Wheelhouse:
    """Put a wheel of every distribution the worker needs into ``dest`` (hard links into the
    cache where possible); reuses cached wheels whose installed files have not changed."""
    cache = cache or default_cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    house = Wheelhouse(dest)
    for dist in dists if dists is not None else requirement_closure():
        name = canonicalize_name(dist.metadata["Name"])
        print_name = f"{dist.metadata['Name']} {dist.version}"
        stamp = fingerprint(dist)
        slot = cache / f"{name}-{stamp}"
        cached = sorted(slot.glob("*.whl")) if slot.is_dir() else []
        if cached:
            wheel, how = cached[0], "cached"
        else:
            for stale in cache.glob(f"{name}-*"):
                own = re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{20}}", stale.name)
                if own and stale.is_dir() and stale != slot:
                    shutil.rmtree(stale, ignore_errors=True)  # an older install of it
            slot.mkdir(parents=True, exist_ok=True)
            source = editable_source(dist)
            try:
                if source is not None:
                    wheel, how = pip_wheel(str(source), slot, progress), "built"
                else:
                    progress(f"packing {print_name} from this installation")
                    wheel, how = repack(dist, slot), "repacked"
            except WheelhouseError as exc:
                if source is not None:
                    raise
                progress(f"{print_name}: {exc.message}; fetching it with pip instead")
                wheel, how = pip_wheel(f"{dist.metadata['Name']}=={dist.version}", slot), "built"
        target = dest / wheel.name
        if not target.exists():
            try:
                os.link(wheel, target)
            except OSError:
                shutil.copy2(wheel, target)
        house.wheels.append(
            WheelEntry(name, str(dist.version), target, stamp, is_host_built(dist), how)
        )
    return house

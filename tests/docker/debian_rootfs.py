"""Root filesystems for the Docker tests, made with debootstrap and cached between runs.

No image registry is reachable from the test machines, so every image the tests run starts from a
Debian root filesystem built here (``debootstrap --variant=minbase``) and ``docker import``-ed. A
tree takes about a minute to build, so its tarball is kept under the test cache directory
(``$PENDRA_TEST_CACHE``, default ``~/.cache/pendra-test``), named by a hash of its recipe: change
the recipe and the next run builds a new one. Builds take a file lock, so two test sessions on one
machine never build the same tree twice or read a half-written tarball.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

RECIPE_VERSION = 1
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SOURCES_FILES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


def cache_dir() -> Path:
    configured = os.environ.get("PENDRA_TEST_CACHE", "").strip()
    return Path(configured) if configured else Path.home() / ".cache" / "pendra-test"


def host_mirror(suite: str = "bookworm") -> str:
    """The Debian mirror this host's apt uses (deb822 or one-line format), else deb.debian.org."""
    for path in SOURCES_FILES:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
            if uris and suites and suite in suites.group(1).split():
                return uris.group(1).rstrip("/")
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[-2] == suite:
                return parts[-3].rstrip("/")
    return DEFAULT_MIRROR


@dataclass(frozen=True)
class Recipe:
    """One root filesystem: a minbase tree with ``include``, or — with ``parent`` — the parent's
    tree plus ``extra`` packages installed with apt in a chroot."""

    name: str
    suite: str = "bookworm"
    include: tuple[str, ...] = ("python3", "python3-venv", "ca-certificates")
    extra: tuple[str, ...] = ()
    mirror: str = DEFAULT_MIRROR
    parent: Recipe | None = None

    @property
    def key(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if v is not None}
        text = json.dumps({"v": RECIPE_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def tarball(self) -> Path:
        return cache_dir() / f"rootfs-{self.name}-{self.key}.tar"

    @property
    def image(self) -> str:
        return f"pendra-test-{self.name}:{self.key}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _run(argv: list[str], timeout_s: float, **kw: object) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, **kw)  # type: ignore[call-overload]
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(argv[:3])}… failed ({result.returncode}):\n{tail}")


def _tar(tree: Path, out: Path) -> None:
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _run(["tar", "-C", str(tree), "--numeric-owner", "-cf", str(tmp), "."], 600)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def _apt_in_chroot(tree: Path, packages: tuple[str, ...]) -> None:
    """``apt-get install`` inside the tree (with the host's resolv.conf and a mounted /proc)."""
    shutil.copyfile("/etc/resolv.conf", tree / "etc" / "resolv.conf")
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C",
    }
    proc = tree / "proc"
    _run(["mount", "-t", "proc", "proc", str(proc)], 30)
    try:
        _run(["chroot", str(tree), "apt-get", "update", "-qq"], 300, env=env)
        _run(
            [
                "chroot",
                str(tree),
                "apt-get",
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                *packages,
            ],
            900,
            env=env,
        )
        _run(["chroot", str(tree), "apt-get", "clean"], 60, env=env)
    finally:
        subprocess.run(["umount", "-l", str(proc)], capture_output=True, timeout=30, check=False)
    shutil.rmtree(tree / "var" / "lib" / "apt" / "lists", ignore_errors=True)
    (tree / "etc" / "resolv.conf").write_text("")


def _build(recipe: Recipe, log: Callable[[str], None]) -> Path:
    if recipe.tarball.exists():
        return recipe.tarball
    with tempfile.TemporaryDirectory(prefix="pendra-rootfs-", dir=cache_dir()) as tmp:
        tree = Path(tmp) / "tree"
        started = time.monotonic()
        if recipe.parent is None:
            include = f"--include={','.join(recipe.include)}"
            argv = ["debootstrap", "--variant=minbase", include, recipe.suite, str(tree)]
            _run([*argv, recipe.mirror], 900)
            log(f"debootstrap {recipe.suite} ({recipe.name}): {time.monotonic() - started:.0f} s")
        else:
            parent = _build(recipe.parent, log)
            tree.mkdir()
            _run(["tar", "-C", str(tree), "--numeric-owner", "-xf", str(parent)], 600)
        if recipe.extra:
            started = time.monotonic()
            _apt_in_chroot(tree, recipe.extra)
            log(f"{recipe.name}: + {' '.join(recipe.extra)}: {time.monotonic() - started:.0f} s")
        _tar(tree, recipe.tarball)
    for stale in cache_dir().glob(f"rootfs-{recipe.name}-*.tar"):
        if stale != recipe.tarball:
            stale.unlink(missing_ok=True)  # an older recipe's tree
    return recipe.tarball


def build_tarballs(recipes: list[Recipe], log: Callable[[str], None] = print) -> dict[str, Path]:
    """Make sure every recipe's tarball exists (building parents first); name → tarball."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir() / ".rootfs.lock"):
        return {recipe.name: _build(recipe, log) for recipe in recipes}

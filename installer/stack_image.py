"""The worker image: assembled from this host's wheelhouse on a base image, without a compiler.

:func:`ensure_image` builds ``pendra-worker:<version>`` from ``installer/docker/Dockerfile`` unless
an image with the same recipe (Dockerfile, base image id, the installed files' fingerprints) is
already there. Before building, the base image is asked what it has (a throwaway container with
no network runs its ``python3``): its Python must be this installation's (the wheels are built for
it), its glibc new enough for every wheel, and every shared library the host-built wheels link
(llama.cpp's ``libgomp.so.1``, a CUDA build's runtime libraries) either present in it or copied
from this host into the image. So the build needs neither a compiler nor any network, and works
air-gapped from a base image the site provides (``--base-image``, ``PENDRA_BASE_IMAGE``).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from installer import elf
from installer.stack_wheelhouse import (
    Wheelhouse,
    build_wheelhouse,
    fingerprints,
    is_host_built,
    requirement_closure,
)
from worker import __version__
from worker.errors import PendraError

RECIPE_VERSION = "1"
BASE_IMAGE_ENV = "PENDRA_BASE_IMAGE"
IMAGE_REPOSITORY = "pendra-worker"
LABEL_RECIPE = "ai.pendra.recipe"
LABEL_VERSION = "ai.pendra.version"
LABEL_BASE = "ai.pendra.base-image"
HOSTLIB_DIR = "hostlib"
WHEELHOUSE_DIR = "wheelhouse"

# Always part of glibc itself, so present wherever the glibc check passes.
GLIBC_SONAMES = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libutil.so.1",
        "libresolv.so.2",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    }
)
# The NVIDIA driver's libraries come from the NVIDIA container runtime at run time, never from
# the image (a copied driver library would not match the host's kernel module).
DRIVER_PREFIXES = ("libcuda.so", "libnvidia-", "libnvcuvid", "libvdpau_nvidia")
CUDA_PREFIXES = ("libcudart.so", "libcublas", "libggml-cuda")
_MANYLINUX_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_")

Progress = Callable[[str], None]

PROBE_SCRIPT = r"""
import ctypes, json, os, sys
libs = {}
for name in sys.argv[1:]:
    try:
        ctypes.CDLL(name)
        libs[name] = True
    except OSError:
        libs[name] = False
try:
    glibc = os.confstr("CS_GNU_LIBC_VERSION")
except (ValueError, OSError):
    glibc = None
try:
    import ensurepip, venv
    has_venv = True
except ImportError:
    has_venv = False
print(json.dumps({"python": list(sys.version_info[:2]), "glibc": glibc, "libs": libs,
                  "venv": has_venv}))
"""


class ImageError(PendraError):
    code = "stack_image_error"


def default_base_image() -> str:
    """The base for this installation: ``$PENDRA_BASE_IMAGE``, else the official slim Python
    image of this interpreter's version (the wheels are built for it)."""
    configured = os.environ.get(BASE_IMAGE_ENV, "").strip()
    if configured:
        return configured
    return f"python:{sys.version_info[0]}.{sys.version_info[1]}-slim"


def image_tag(gpu: bool = False) -> str:
    return f"{IMAGE_REPOSITORY}:{__version__}{'-cuda' if gpu else ''}"


def dockerfile_text() -> str:
    return resources.files("installer").joinpath("docker", "Dockerfile").read_text("utf-8")


# --------------------------------------------------------------------------------------------------
# What the host-built wheels need


def _dist_shared_objects(dist: metadata.Distribution) -> list[Path]:
    found = []
    for rel in dist.files or []:
        name = rel.name
        if name.endswith(".so") or ".so." in name:
            path = Path(str(dist.locate_file(rel)))
            if path.is_file() and not path.is_symlink() and elf.is_elf(path):
                found.append(path)
    return found


def _manylinux_glibc(platforms: Iterable[str]) -> tuple[int, ...] | None:
    """The oldest glibc any of a wheel's platform tags accepts (None: not a manylinux wheel)."""
    versions = []
    for tag in platforms:
        legacy = _MANYLINUX_LEGACY.get(tag.split("_")[0])
        if legacy is not None:
            versions.append(legacy)
        elif match := _MANYLINUX.match(tag):
            versions.append((int(match.group(1)), int(match.group(2))))
    return min(versions) if versions else None


def _wheel_platforms(dist: metadata.Distribution) -> list[str]:
    return [
        line.split(":", 1)[1].strip().split("-")[-1]
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]


@dataclass
class NativeNeeds:
    """What the base image must provide for the wheels to load."""

    glibc: tuple[int, ...] = (2, 17)
    glibc_reason: str = ""
    sonames: dict[str, Path] = field(default_factory=dict)
    """System libraries the host-built wheels link, with this host's copy of each."""
    cuda: bool = False


def host_library_path(soname: str) -> Path | None:
    """Where this host loads ``soname`` from (it is loaded into this process to find out)."""
    try:
        ctypes.CDLL(soname)
    except OSError:
        return None
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.split(maxsplit=5)[-1] if len(line.split()) >= 6 else ""
        base = os.path.basename(path)
        if base == soname or base.startswith(soname + "."):
            return Path(path)
    return None


def native_needs(dists: list[metadata.Distribution]) -> NativeNeeds:
    needs = NativeNeeds()
    for dist in dists:
        wanted = _manylinux_glibc(_wheel_platforms(dist))
        if wanted and wanted > needs.glibc:
            needs.glibc, needs.glibc_reason = wanted, f"{dist.metadata['Name']} {dist.version}"
    pending: list[str] = []
    for dist in dists:
        if not is_host_built(dist):
            continue
        objects = _dist_shared_objects(dist)
        own = {path.name for path in objects} | {
            rel.name for rel in dist.files or [] if ".so" in rel.name
        }
        for path in objects:
            needs.cuda = needs.cuda or path.name.startswith(CUDA_PREFIXES)
            glibc = elf.glibc_requirement(path)
            if glibc and glibc > needs.glibc:
                needs.glibc = glibc
                needs.glibc_reason = f"{dist.metadata['Name']} {dist.version} (built here)"
            for soname in elf.needed_libraries(path):
                needs.cuda = needs.cuda or soname.startswith(CUDA_PREFIXES)
                if soname not in own:
                    pending.append(soname)
    while pending:
        soname = pending.pop()
        if soname in needs.sonames or soname in GLIBC_SONAMES or soname.startswith(DRIVER_PREFIXES):
            continue
        path = host_library_path(soname)
        if path is None:
            raise ImageError(
                f"{soname}, which llama-cpp-python links, cannot be loaded on this host either",
                hint="repair the installation with get.sh, then try again",
            )
        needs.sonames[soname] = path
        pending.extend(elf.needed_libraries(path))
    return needs


# --------------------------------------------------------------------------------------------------
# The base image


@dataclass(frozen=True)
class BaseFacts:
    python: tuple[int, int]
    glibc: tuple[int, ...] | None
    libs: dict[str, bool]
    venv: bool


def parse_glibc(text: str | None) -> tuple[int, ...] | None:
    match = re.search(r"(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def probe_base_image(client: Any, image: str, sonames: Iterable[str]) -> BaseFacts:
    """Run the base image's ``python3`` once (no network, removed after) to learn what it has."""
    import docker

    try:
        output = client.containers.run(
            image,
            command=list(sonames),
            entrypoint=["python3", "-c", PROBE_SCRIPT],
            network_mode="none",
            remove=True,
            user="0",
            stdout=True,
            stderr=False,
        )
    except docker.errors.ContainerError as exc:
        raise ImageError(
            f"the base image {image} could not run python3: {_short(exc.stderr)}",
            hint=f"choose a base image with Python 3 (--base-image, e.g. {default_base_image()})",
        ) from None
    except docker.errors.APIError as exc:
        raise ImageError(
            f"the base image {image} has no usable python3 ({exc.explanation or exc})",
            hint=f"choose a base image with Python 3, e.g. {default_base_image()}",
        ) from None
    try:
        facts = json.loads(output.decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ImageError(f"could not read what the base image {image} offers") from None
    return BaseFacts(
        python=(int(facts["python"][0]), int(facts["python"][1])),
        glibc=parse_glibc(facts.get("glibc")),
        libs={str(k): bool(v) for k, v in (facts.get("libs") or {}).items()},
        venv=bool(facts.get("venv")),
    )


def _short(raw: Any) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _version(parts: Iterable[int]) -> str:
    return ".".join(str(p) for p in parts)


def check_base(image: str, facts: BaseFacts, needs: NativeNeeds) -> list[str]:
    """The sonames to copy from this host; raises :class:`ImageError` when the base cannot run
    these wheels at all."""
    here = sys.version_info[:2]
    if facts.python != here:
        raise ImageError(
            f"the base image {image} has Python {_version(facts.python)}, but this installation "
            f"runs Python {_version(here)}, which its wheels are built for",
            hint=f"use a base image with Python {_version(here)}, e.g. "
            f"--base-image python:{_version(here)}-slim",
        )
    if not facts.venv:
        raise ImageError(
            f"the base image {image} has Python without venv/ensurepip",
            hint="use an image with the python3-venv package (Debian/Ubuntu), or the official "
            f"python:{_version(here)}-slim",
        )
    if facts.glibc is None:
        raise ImageError(
            f"the base image {image} has no glibc (musl, e.g. Alpine, cannot load these wheels)",
            hint=f"use a glibc-based image, e.g. python:{_version(here)}-slim",
        )
    if facts.glibc < needs.glibc:
        raise ImageError(
            f"the base image {image} has glibc {_version(facts.glibc)}, but "
            f"{needs.glibc_reason} needs glibc {_version(needs.glibc)} or newer",
            hint="use a newer base image (the Debian or Ubuntu release this host runs, or newer)",
        )
    return sorted(name for name, present in facts.libs.items() if not present)


# --------------------------------------------------------------------------------------------------
# Building


@dataclass(frozen=True)
class ImageResult:
    tag: str
    built: bool
    recipe: str
    base_image: str
    copied_libraries: tuple[str, ...] = ()


def recipe_for(base_id: str, dists: list[metadata.Distribution]) -> str:
    digest = hashlib.sha256()
    for part in (RECIPE_VERSION, dockerfile_text(), base_id, fingerprints(dists)):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def ensure_base_image(client: Any, image: str, progress: Progress) -> Any:
    import docker

    try:
        return client.images.get(image)
    except docker.errors.ImageNotFound:
        pass
    progress(f"pulling the base image {image}")
    try:
        return client.images.pull(image)
    except docker.errors.APIError as exc:
        raise ImageError(
            f"the base image {image} is not here and could not be pulled: {exc.explanation or exc}",
            hint="without registry access, load an image that has Python "
            f"{_version(sys.version_info[:2])} (`docker load`) and pass it with --base-image "
            f"(or set {BASE_IMAGE_ENV})",
        ) from None


def existing_image(client: Any, tag: str) -> Any | None:
    import docker

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def prepare_context(
    context: Path,
    *,
    base_facts_missing: list[str],
    needs: NativeNeeds,
    progress: Progress,
    wheelhouse_cache: Path | None = None,
) -> Wheelhouse:
    """Fill ``context`` with the Dockerfile, the wheelhouse and the host libraries to copy."""
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile_text(), encoding="utf-8")
    house = build_wheelhouse(context / WHEELHOUSE_DIR, cache=wheelhouse_cache, progress=progress)
    libs = context / HOSTLIB_DIR
    libs.mkdir(exist_ok=True)
    (libs / "README").write_text(
        "Shared libraries the wheels link and the base image lacks, copied from the host that "
        "built this image.\n",
        encoding="utf-8",
    )
    for soname in base_facts_missing:
        source = needs.sonames.get(soname)
        if source is not None:
            shutil.copy2(source, libs / soname)
    return house


@dataclass(frozen=True)
class ImagePlan:
    """What an image for this installation on ``base`` needs, before anything is built."""

    base_image: str
    base_id: str
    tag: str
    recipe: str
    dists: list[metadata.Distribution]
    needs: NativeNeeds


def plan_image(client: Any, base_image: str | None, gpu: bool, progress: Progress) -> ImagePlan:
    base = base_image or default_base_image()
    dists = requirement_closure()
    needs = native_needs(dists)
    if gpu and not needs.cuda:
        raise ImageError(
            "this installation's llama-cpp-python is not a CUDA build, so a GPU image made from "
            "it would not use the GPUs",
            hint="re-run get.sh on this NVIDIA host (it installs the CUDA build), or build the "
            "CUDA image from a source checkout: `docker build -f Dockerfile.cuda -t "
            "pendra-worker:cuda .` and then `pendra stack up --gpu --image pendra-worker:cuda`",
        )
    base_obj = ensure_base_image(client, base, progress)
    recipe = recipe_for(base_obj.id, dists)
    return ImagePlan(base, base_obj.id, image_tag(gpu), recipe, dists, needs)


def prepare_build_context(
    client: Any,
    plan: ImagePlan,
    context: Path,
    progress: Progress,
    wheelhouse_cache: Path | None = None,
) -> list[str]:
    """Check the base image, then fill ``context``; returns the libraries copied from here."""
    facts = probe_base_image(client, plan.base_image, sorted(plan.needs.sonames))
    missing = check_base(plan.base_image, facts, plan.needs)
    if missing:
        progress(f"the base image lacks {', '.join(missing)}: copying this host's into the image")
    prepare_context(
        context,
        base_facts_missing=missing,
        needs=plan.needs,
        progress=progress,
        wheelhouse_cache=wheelhouse_cache,
    )
    return missing


def ensure_image(
    client: Any,
    *,
    base_image: str | None = None,
    gpu: bool = False,
    rebuild: bool = False,
    progress: Progress = print,
    wheelhouse_cache: Path | None = None,
) -> ImageResult:
    """The worker image for this installation: reused when its recipe matches, else built."""
    plan = plan_image(client, base_image, gpu, progress)
    current = existing_image(client, plan.tag)
    reusable = current is not None and (current.labels or {}).get(LABEL_RECIPE) == plan.recipe
    if reusable and not rebuild:
        progress(f"reusing the image {plan.tag} (this installation has not changed)")
        return ImageResult(plan.tag, False, plan.recipe, plan.base_image)
    with tempfile.TemporaryDirectory(prefix="pendra-image-") as tmp:
        missing = prepare_build_context(client, plan, Path(tmp), progress, wheelhouse_cache)
        progress(f"building {plan.tag} on {plan.base_image} (no compiler, no network)")
        build_image(client, Path(tmp), plan, progress)
    return ImageResult(plan.tag, True, plan.recipe, plan.base_image, tuple(missing))


def build_image(client: Any, context: Path, plan: ImagePlan, progress: Progress) -> None:
    """``docker build`` of a prepared context, with no network (everything is in the context)."""
    import docker

    tag, base = plan.tag, plan.base_image
    labels = {
        LABEL_RECIPE: plan.recipe,
        LABEL_VERSION: __version__,
        LABEL_BASE: base,
        "org.opencontainers.image.title": "Pendra worker",
        "org.opencontainers.image.version": __version__,
    }
    try:
        stream = client.api.build(
            path=str(context),
            dockerfile="Dockerfile",
            tag=tag,
            buildargs={"BASE_IMAGE": base},
            labels=labels,
            network_mode="none",
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise ImageError(
                    f"building {tag} failed: {str(detail).strip()}",
                    hint="`pendra stack up --rebuild` tries again from scratch",
                )
            line = str(chunk.get("stream") or "").rstrip()
            if line.startswith("Step "):
                progress(line)
    except docker.errors.APIError as exc:
        raise ImageError(f"building {tag} failed: {exc.explanation or exc}") from None

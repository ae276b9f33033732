"""Fixtures of the Docker tests: a private daemon, base images made with debootstrap, and the
wheelhouse of this installation — each once per session; the slow parts cached between runs.

Every test here is marked ``docker``. Without root, or without Docker and a way to install it, the
whole module skips and says why; on a root Debian machine (CI) everything it needs is installed
with apt and the tests run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from debian_rootfs import Recipe, build_tarballs, cache_dir, host_mirror
from private_daemon import PrivateDaemon, prerequisites, reap_stale_daemons

# A Debian host as get.sh finds one: systemd as PID 1, logind for lingering user services, and
# the OpenMP runtime llama.cpp links (a host that built llama-cpp-python has it with gcc).
SYSTEMD_PACKAGES = ("systemd", "systemd-sysv", "dbus", "libpam-systemd", "passwd", "libgomp1")


def _recipes() -> dict[str, Recipe]:
    base = Recipe("base", mirror=host_mirror())
    return {"base": base, "systemd": Recipe("systemd", extra=SYSTEMD_PACKAGES, parent=base)}


def _say(line: str) -> None:
    print(f"[docker tests] {line}", flush=True)


@pytest.fixture(scope="session")
def docker_prerequisites() -> None:
    """dockerd, debootstrap and docker-compose present (installed with apt when possible)."""
    reason = prerequisites()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def docker_daemon(docker_prerequisites: None) -> Iterator[PrivateDaemon]:
    """One private daemon per test module, so its gigabyte of image layers is removed when the
    module ends, inside the module's own time limit."""
    for root in reap_stale_daemons():
        _say(f"stopped a private dockerd left by an earlier, killed session ({root})")
    daemon = PrivateDaemon()
    started = time.monotonic()
    daemon.start()
    _say(f"private dockerd at {daemon.host} ({time.monotonic() - started:.1f} s)")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def docker_client(docker_daemon: PrivateDaemon) -> Any:
    return docker_daemon.client()


@pytest.fixture(scope="session")
def rootfs_tarballs(docker_prerequisites: None) -> dict[str, Path]:
    recipes = _recipes()
    started = time.monotonic()
    tarballs = build_tarballs(list(recipes.values()), log=_say)
    _say(f"root filesystems ready ({time.monotonic() - started:.1f} s)")
    return tarballs


def _import(client: Any, recipe: Recipe, tarball: Path) -> str:
    import docker

    try:
        client.images.get(recipe.image)
    except docker.errors.ImageNotFound:
        repository, tag = recipe.image.split(":")
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)
    return recipe.image


@pytest.fixture(scope="module")
def base_image(docker_client: Any, rootfs_tarballs: dict[str, Path]) -> str:
    """Debian bookworm minbase with python3, python3-venv and ca-certificates (no libgomp)."""
    return _import(docker_client, _recipes()["base"], rootfs_tarballs["base"])


@pytest.fixture(scope="module")
def systemd_image(docker_client: Any, rootfs_tarballs: dict[str, Path]) -> str:
    """The base plus systemd, so systemd boots as PID 1 in a container."""
    return _import(docker_client, _recipes()["systemd"], rootfs_tarballs["systemd"])


@pytest.fixture(scope="session")
def xdg_cache() -> Path:
    """``XDG_CACHE_HOME`` for the commands under test: the wheel cache survives between runs."""
    path = cache_dir() / "xdg"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def wheelhouse(
    tmp_path_factory: pytest.TempPathFactory, xdg_cache: Path, docker_prerequisites: None
) -> Path:
    """This installation as wheels, exactly as `pendra stack up` makes them."""
    from installer.stack_wheelhouse import build_wheelhouse

    started = time.monotonic()
    directory = tmp_path_factory.mktemp("wheelhouse")
    build_wheelhouse(directory, cache=xdg_cache / "pendra" / "wheelhouse")
    _say(f"wheelhouse ready ({time.monotonic() - started:.1f} s)")
    return directory


@pytest.fixture
def docker_env(
    clean_env: dict[str, str], docker_daemon: PrivateDaemon, xdg_cache: Path
) -> dict[str, str]:
    """The environment for `pendra` commands talking to the private daemon."""
    env = dict(clean_env)
    env["DOCKER_HOST"] = docker_daemon.host
    env["XDG_CACHE_HOME"] = str(xdg_cache)
    env.pop("PENDRA_BASE_IMAGE", None)
    env["PATH"] = os.environ.get("PATH", "")
    return env

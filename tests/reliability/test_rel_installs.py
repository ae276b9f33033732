"""Faults during installs: kill -9 at random points, a full disk, a read-only models directory.

The installs run as real ``pendra models install`` processes (no worker running, so the command
installs directly into the modelstore, as it does on a fresh box) against a real loopback HTTP
server with Range support that doubles as the control plane's catalogue
(``tests/installs/install_rangeserver.py``). Small generated files keep 20 kill/resume rounds fast.

A full disk is a real tmpfs mounted for the test when this runs as root (it does in CI's container);
elsewhere those tests are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.installs.install_rangeserver import RangeServer, make_blob
from worker.modelstore import ModelStore
from worker.settings import BACKEND_KINDS

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]
SIZE = 6 * 1024 * 1024 + 123
KILLS = 20
REF = "tiny:1m"


def catalogue(sha: str, size: int | None) -> bytes:
    variant: dict[str, Any] = {
        "tag": "1m",
        "context_length": 512,
        "backends": ["pendra"],
        "gguf_url": "/files/tiny-1m.Q4_K_M.gguf",
        "gguf_sha256": sha,
    }
    if size is not None:
        variant["size_bytes"] = size
    doc = {
        "version": 1,
        "models": [{"id": "tiny", "name": "Tiny", "task": "chat", "variants": [variant]}],
    }
    return json.dumps(doc).encode()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[RangeServer, str]]:
    blob = tmp_path / "source.gguf"
    sha = make_blob(blob, SIZE)
    srv = await RangeServer().start()
    srv.add("tiny-1m.Q4_K_M.gguf", blob, delay_per_chunk_s=0.06)
    srv.catalogue = catalogue(sha, SIZE)
    yield srv, sha
    await srv.stop()


def install_env(clean_env: dict[str, str], api_url: str, models: Path) -> dict[str, str]:
    return {
        **clean_env,
        "PENDRA_API_URL": api_url,
        "PENDRA_MODELS_DIR": str(models),
        **{f"{kind.upper()}_ENDPOINT": "off" for kind in BACKEND_KINDS},
    }


async def run_install(
    env: dict[str, str], kill_at: tuple[Path, int] | None = None
) -> tuple[int, str]:
    """Run ``pendra models install``; with ``kill_at=(part, n)``, SIGKILL it as soon as its
    partial download ``part`` holds ``n`` bytes (a point of the download, not of the clock)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "models", "install", REF, "--backend", "pendra",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    if kill_at is not None:
        part, bytes_at = kill_at
        deadline = time.monotonic() + 60
        while proc.returncode is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if part.stat().st_size >= bytes_at:
                    proc.send_signal(signal.SIGKILL)
                    break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), 0.005)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode(errors="replace")


def visible_models_verified(models: Path, sha: str) -> list[Path]:
    """Every GGUF the modelstore would show must be the complete, verified file."""
    files = ModelStore(models).gguf_files()
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == sha, f"{path} is visible but not the verified file"
    return files


async def test_kill_9_during_installs_never_leaves_a_bad_file_and_always_resumes(
    server: tuple[RangeServer, str], tmp_path: Path, clean_env: dict[str, str]
) -> None:
    srv, sha = server
    models = tmp_path / "models"
    env = install_env(clean_env, srv.url, models)
    rng = random.Random(10)
    killed = finished_early = 0
    partial_sizes: list[int] = []
    started = time.monotonic()
    part = models / ".tiny-1m.Q4_K_M.gguf.part"
    for _round in range(KILLS):
        # Start from scratch half the time, else resume whatever the last kill left.
        if rng.random() < 0.5:
            for path in models.glob("*") if models.exists() else []:
                path.unlink()
        # Kill at a random point of the download still ahead (or let a nearly done one finish).
        have = part.stat().st_size if part.exists() else 0
        target = have + rng.randint(64 * 1024, SIZE // 3)
        kill_at = (part, target) if target < SIZE - 1024 * 1024 else None
        code, output = await run_install(env, kill_at=kill_at)
        if code == -signal.SIGKILL:
            killed += 1
        else:
            assert code == 0, output
            assert "Traceback" not in output
            finished_early += 1
        visible_models_verified(models, sha)
        if part.exists():
            partial_sizes.append(part.stat().st_size)
    # Now let it finish: it resumes and ends with exactly one verified file.
    code, output = await run_install(env)
    assert code == 0, output
    files = visible_models_verified(models, sha)
    assert [p.name for p in files] == ["tiny-1m.Q4_K_M.gguf"]
    sidecar = json.loads((models / "tiny-1m.Q4_K_M.gguf.meta.json").read_text())
    assert sidecar["ref"] == REF and sidecar["sha256"] == sha
    assert not [p for p in models.iterdir() if p.name.endswith((".part", ".part.json"))]
    resumed = [r for r in srv.requests if "Range" in r]
    assert killed >= KILLS // 2, (killed, finished_early)
    assert resumed, "no install ever resumed from a partial download"
    print(
        f"\nRELIABILITY installs: {KILLS} rounds, {killed} killed with SIGKILL, "
        f"{finished_early} finished first, {len(resumed)} resumed with Range, partials "
        f"{min(partial_sizes, default=0)}..{max(partial_sizes, default=0)} bytes, "
        f"{time.monotonic() - started:.1f} s"
    )


# -- full disk and read-only directory (real tmpfs) ----------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str, options: str = "") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the full-disk tests run in CI's root container")
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_disk_full_mid_download_is_a_clear_error_and_resumable(
    server: tuple[RangeServer, str], tmp_path: Path, clean_env: dict[str, str]
) -> None:
    srv, sha = server
    srv.catalogue = catalogue(sha, None)  # size unknown: no preflight check, so the disk fills
    with tmpfs(tmp_path / "small", "2m") as models:
        code, output = await run_install(install_env(clean_env, srv.url, models))
        assert code != 0
        assert "Traceback" not in output
        assert "is full" in output, output
        assert "resume" in output
        assert ModelStore(models).gguf_files() == []  # nothing half-written is visible


async def test_not_enough_space_is_refused_before_downloading(
    server: tuple[RangeServer, str], tmp_path: Path, clean_env: dict[str, str]
) -> None:
    srv, _ = server
    with tmpfs(tmp_path / "small", "2m") as models:
        before = len(srv.requests)
        code, output = await run_install(install_env(clean_env, srv.url, models))
        assert code != 0 and "Traceback" not in output
        assert "Not enough disk space" in output, output
        assert len(srv.requests) == before  # not one byte was fetched
        assert list(models.iterdir()) == []


async def test_read_only_models_dir_is_a_clear_error(
    server: tuple[RangeServer, str], tmp_path: Path, clean_env: dict[str, str]
) -> None:
    srv, _ = server
    with tmpfs(tmp_path / "ro", "128m", "ro") as models:
        code, output = await run_install(install_env(clean_env, srv.url, models))
        assert code != 0
        assert "Traceback" not in output, output
        assert "Read-only" in output or "read-only" in output or "ermission" in output, output
        # The store still lists (nothing) without raising.
        assert ModelStore(models).scan() == []

"""A catalogue variant naming a Hugging Face repository and file instead of a URL: its pinned
SHA-256 must be the Hub's LFS hash, checked before anything is downloaded. Real ``pendra models
install`` processes (no worker: they act directly), a loopback control plane serving the
catalogue in the API's shape, and the Hub emulator with its CDN."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hub_fixtures import TINY, add_tiny_repo, blob

from tests.emulators.hf_hub import HubEmulator
from tests.installs.install_rangeserver import RangeServer
from worker.modelstore.sidecar import read_sidecar
from worker.settings import BACKEND_KINDS

FILE = "Tiny-Chat-Q8_0.gguf"


def catalogue(sha256: str) -> bytes:
    entry = {
        "id": "tiny:1m",
        "name": "Tiny 1M",
        "backend": "pendra",
        "capability": "chat",
        "parameter_size": "1M",
        "context_length": 512,
        "licence": "apache-2.0",
        "variants": [
            {"quantisation": "Q8_0", "hf_repo": TINY, "hf_file": FILE, "gguf_sha256": sha256}
        ],
    }
    return json.dumps({"data": [entry]}).encode()


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[HubEmulator]:
    emulator = HubEmulator()
    add_tiny_repo(
        emulator, blob(tmp_path / "a.gguf", 10_000, 1), blob(tmp_path / "b.gguf", 20_000, 2)
    )
    await emulator.start()
    yield emulator
    await emulator.stop()


async def install(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def plane_env(
    clean_env: dict[str, str], hub: HubEmulator, sha: str
) -> tuple[RangeServer, dict[str, str]]:
    plane = await RangeServer(catalogue=catalogue(sha)).start()
    env = {
        **clean_env,
        "PENDRA_API_URL": plane.url,
        "HF_ENDPOINT": hub.url,
        **{f"{kind.upper()}_ENDPOINT": "off" for kind in BACKEND_KINDS},
    }
    return plane, env


async def test_pinned_hf_file_installs_under_its_catalogue_ref(
    clean_env: dict[str, str], hub: HubEmulator, pendra_home: Path
) -> None:
    item = hub.repos[TINY].files[FILE]
    plane, env = await plane_env(clean_env, hub, item.sha256)
    try:
        code, out, err = await install(env, "models", "install", "tiny:1m", "--json")
    finally:
        await plane.stop()
    assert code == 0, err
    job = json.loads(out)
    assert (job["phase"], job["ref"], job["backend"]) == ("done", "tiny:1m", "pendra")
    folder = pendra_home / "models" / "hf.co--bartowski--Tiny-Chat-GGUF--Q8_0"
    assert (folder / FILE).read_bytes() == item.source.read_bytes()
    sidecar = read_sidecar(folder / f"{FILE}.meta.json")
    assert sidecar.ref == "tiny:1m" and sidecar.sha256 == item.sha256
    assert sidecar.task is not None and sidecar.task.value == "chat"
    assert sidecar.revision == hub.repos[TINY].sha

    code, out, err = await install(env, "rm", "tiny:1m")
    assert code == 0, err
    assert not folder.exists()


async def test_a_pin_the_hub_disagrees_with_downloads_nothing(
    clean_env: dict[str, str], hub: HubEmulator, pendra_home: Path
) -> None:
    plane, env = await plane_env(clean_env, hub, "0" * 64)
    try:
        code, _, err = await install(env, "models", "install", "tiny:1m")
    finally:
        await plane.stop()
    assert code == 1 and "Traceback" not in err
    assert f"pins {FILE} of hf.co/{TINY} to SHA-256 {'0' * 64}" in err
    assert "the Hub's LFS hash is" in err
    assert [r for r in hub.cdn.requests if r.method == "GET"] == []
    models = pendra_home / "models"
    assert not models.exists() or not any(models.iterdir())

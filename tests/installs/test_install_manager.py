"""InstallManager: built-in installs into the modelstore, shared jobs, cancel + resume, events,
uninstall, and installs through an external backend (the Ollama emulator of the backends tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from install_rangeserver import RangeServer, make_blob

from tests.emulators import OllamaEmulator, OllamaModel
from worker.backends.ollama import OllamaBackend
from worker.backends.registry import BackendRegistry
from worker.catalogue import Catalogue
from worker.catalogue.parse import parse_catalogue, resolve_urls
from worker.errors import BadRequest, InstallError, ModelNotFound
from worker.events import EventBus
from worker.installs import InstallManager
from worker.installs.download import partial_path
from worker.installs.manager import choose_backend
from worker.modelstore import read_sidecar, sidecar_path
from worker.settings import load_settings

SIZE = 2 * 1024 * 1024 + 777


@pytest.fixture
async def server() -> AsyncIterator[RangeServer]:
    srv = await RangeServer().start()
    yield srv
    await srv.stop()


def catalogue_for(server: RangeServer, sha: str, *, size: int = SIZE) -> Catalogue:
    doc: dict[str, Any] = {
        "version": 1,
        "models": [
            {
                "id": "tiny",
                "name": "Tiny",
                "task": "chat",
                "variants": [
                    {
                        "tag": "1m",
                        "context_length": 512,
                        "size_bytes": size,
                        "backends": ["pendra", "ollama"],
                        "gguf_url": "/files/tiny-1m.Q4_K_M.gguf",
                        "gguf_sha256": sha,
                        "ollama_tag": "tiny:1m",
                    },
                    {
                        "tag": "remote",
                        "size_bytes": 5,
                        "backends": ["ollama"],
                        "ollama_tag": "tiny:remote",
                    },
                ],
            }
        ],
    }
    return Catalogue(resolve_urls(parse_catalogue(doc).models, server.url))


def manager_for(catalogue: Catalogue, **kwargs: Any) -> InstallManager:
    async def load() -> Catalogue:
        return catalogue

    return InstallManager(load_settings(), catalogue_loader=load, **kwargs)


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "tiny.gguf"
    return path, make_blob(path, SIZE)


async def test_builtin_install_writes_gguf_and_sidecar(
    server: RangeServer, source: tuple[Path, str], pendra_home: Path
) -> None:
    path, sha = source
    server.add("tiny-1m.Q4_K_M.gguf", path)
    bus = EventBus()
    events = bus.subscribe(kinds={"install"})
    model_events = bus.subscribe(kinds={"models"})
    manager = manager_for(catalogue_for(server, sha), events=bus)
    job = await manager.install("tiny:1m")
    assert job.ok, job.error
    changed = await asyncio.wait_for(model_events.get(), 1)  # dashboards and the link re-read
    assert (changed["backend"], changed["ref"]) == ("pendra", "tiny:1m")
    installed = pendra_home / "models" / "tiny-1m.Q4_K_M.gguf"
    assert installed.read_bytes() == path.read_bytes()
    sidecar = read_sidecar(sidecar_path(installed))
    assert (sidecar.ref, sidecar.sha256, sidecar.context_length) == ("tiny:1m", sha, 512)
    assert sidecar.task and sidecar.task.value == "chat" and sidecar.installed_at
    assert sidecar.source_url == f"{server.url}/files/tiny-1m.Q4_K_M.gguf"
    raw = json.loads(sidecar_path(installed).read_text())
    assert set(raw) >= {"ref", "task", "sha256", "source_url", "context_length", "installed_at"}
    phases = []
    while not events._queue.empty():
        event = await events.get()
        assert event["ref"] == "tiny:1m" and event["backend"] == "pendra"
        phases.append(event["phase"])
    assert phases[0] == "queued" and phases[-1] == "done" and "downloading" in phases
    snap = manager.snapshot()
    assert snap[0]["phase"] == "done" and snap[0]["bytes_done"] == SIZE
    assert {"ref", "backend", "phase", "bytes_done", "bytes_total"} <= set(snap[0])

    again = await manager.install("tiny:1m")  # already there: trusted sidecar, no download
    assert again.ok and again.detail == "already installed"
    assert len(server.requests) == 1


async def test_same_ref_shares_one_job_and_cancel_keeps_the_partial(
    server: RangeServer, source: tuple[Path, str], pendra_home: Path
) -> None:
    path, sha = source
    server.add("tiny-1m.Q4_K_M.gguf", path, delay_per_chunk_s=0.05)
    manager = manager_for(catalogue_for(server, sha))
    first, second = await asyncio.gather(manager.start("tiny:1m"), manager.start("tiny:1m"))
    assert first is second
    while first.bytes_done < 300_000:
        await asyncio.sleep(0.02)
    await manager.cancel(first.id)
    assert first.phase == "cancelled"
    dest = pendra_home / "models" / "tiny-1m.Q4_K_M.gguf"
    have = partial_path(dest).stat().st_size
    assert have > 0 and not dest.exists()

    server.files["tiny-1m.Q4_K_M.gguf"].delay_per_chunk_s = 0
    resumed = await manager.install("tiny:1m")
    assert resumed is not first and resumed.ok
    assert server.requests[-1]["Range"] == f"bytes={have}-"
    assert dest.read_bytes() == path.read_bytes()


async def test_wrong_hash_fails_the_job_and_leaves_the_store_empty(
    server: RangeServer, source: tuple[Path, str], pendra_home: Path
) -> None:
    path, _ = source
    server.add("tiny-1m.Q4_K_M.gguf", path)
    manager = manager_for(catalogue_for(server, "e" * 64))
    job = await manager.install("tiny:1m")
    assert job.phase == "failed" and "SHA-256" in (job.error or "")
    assert list((pendra_home / "models").iterdir()) == []


async def test_not_enough_disk_is_refused_before_downloading(
    server: RangeServer, source: tuple[Path, str]
) -> None:
    path, sha = source
    server.add("tiny-1m.Q4_K_M.gguf", path)
    manager = manager_for(catalogue_for(server, sha, size=10**16))  # 10 PB: no disk has that
    job = await manager.install("tiny:1m")
    assert job.phase == "failed"
    assert "Not enough disk space" in (job.error or "") and "free" in (job.error or "")
    assert server.requests == []


async def test_uninstall_removes_gguf_and_sidecar(
    server: RangeServer, source: tuple[Path, str], pendra_home: Path
) -> None:
    path, sha = source
    server.add("tiny-1m.Q4_K_M.gguf", path)
    manager = manager_for(catalogue_for(server, sha))
    assert (await manager.install("tiny:1m")).ok
    result = await manager.uninstall("tiny:1m")
    assert result["backend"] == "pendra"
    assert list((pendra_home / "models").iterdir()) == []
    with pytest.raises(ModelNotFound):
        await manager.uninstall("tiny:1m")


async def test_bad_requests_are_clear(server: RangeServer, source: tuple[Path, str]) -> None:
    manager = manager_for(catalogue_for(server, source[1]))
    with pytest.raises(BadRequest):
        await manager.start("../../etc:passwd")
    with pytest.raises(ModelNotFound):
        await manager.start("tiny:9b")
    with pytest.raises(BadRequest) as caught:
        await manager.start("tiny:1m", backend="speaches")
    assert "pendra, ollama" in (caught.value.hint or "")
    with pytest.raises(InstallError) as not_running:
        await manager.start("tiny:remote")  # only Ollama installs it, and none runs here
    assert "ollama" in (not_running.value.hint or "")


def test_choose_backend_prefers_builtin_then_catalogue_order() -> None:
    catalogue = parse_catalogue(
        {
            "version": 1,
            "models": [
                {
                    "id": "m",
                    "task": "chat",
                    "variants": [
                        {
                            "tag": "a",
                            "backends": ["lmstudio", "pendra", "ollama"],
                            "gguf_url": "/x.gguf",
                            "gguf_sha256": "a" * 64,
                            "ollama_tag": "m:a",
                            "lmstudio_id": "org/m",
                        }
                    ],
                }
            ],
        }
    )
    variant = catalogue.models[0].variants[0]
    assert choose_backend(variant, ["pendra", "ollama", "lmstudio"], None) == "lmstudio"
    assert choose_backend(variant, ["ollama"], None) == "ollama"
    assert choose_backend(variant, ["pendra", "ollama"], "ollama") == "ollama"
    with pytest.raises(InstallError):
        choose_backend(variant, ["pendra"], "ollama")


async def test_install_and_uninstall_through_ollama(
    server: RangeServer, source: tuple[Path, str]
) -> None:
    new = OllamaModel("tiny:remote", context_length=4096)
    async with OllamaEmulator(pullable={"tiny:remote": new}) as emu:
        backend = OllamaBackend(emu.url)
        await backend.refresh()
        bus = EventBus()
        events = bus.subscribe(kinds={"install"})
        manager = manager_for(
            catalogue_for(server, source[1]), registry=BackendRegistry([backend]), events=bus
        )
        try:
            job = await manager.install("tiny:remote")
            assert job.ok and job.backend == "ollama" and job.target == "tiny:remote", job.error
            assert backend.serves("tiny:remote")
            seen = []
            while not events._queue.empty():
                seen.append((await events.get())["phase"])
            assert seen[0] == "queued" and seen[-1] == "done" and "downloading" in seen
            result = await manager.uninstall("tiny:remote")
            assert result == {"ref": "tiny:remote", "backend": "ollama", "removed": "tiny:remote"}
            assert not backend.serves("tiny:remote")
        finally:
            await backend.close()

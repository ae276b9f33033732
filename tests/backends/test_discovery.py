"""Discovery against real emulated servers: order, disable words, explicit URLs, look-alikes,
re-discovery. ``host.docker.internal`` is mapped to 127.0.0.2 in the test (no /etc/hosts edits)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.emulators import (
    EMULATORS,
    LlamaCppEmulator,
    LmStudioEmulator,
    OllamaEmulator,
    SpeachesEmulator,
    VllmEmulator,
)
from worker.backends.base import BackendStatus
from worker.backends.discovery import (
    Discovery,
    DiscoveryOptions,
    candidate_urls,
    describe_all,
    discover_backends,
)
from worker.backends.kinds import KINDS
from worker.backends.lmstudio import LmStudioBackend
from worker.backends.ollama import OllamaBackend
from worker.backends.speaches import SpeachesBackend
from worker.backends.vllm import VllmBackend
from worker.events import EventBus
from worker.settings import BACKEND_KINDS, DISABLE_WORDS, load_settings

DOCKER = "host.docker.internal"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_for(home: Path, **endpoints: str):
    env = {"PENDRA_HOME": str(home)}
    env.update({f"{k.upper()}_ENDPOINT": v for k, v in endpoints.items()})
    return load_settings(env)


def only(kind: str, port: int) -> DiscoveryOptions:
    """Probe just ``kind`` on ``port``; every other kind on an unused port."""
    unused = free_port()
    ports = {k: (unused,) for k in BACKEND_KINDS}
    ports[kind] = (port,)
    return DiscoveryOptions(host_map={DOCKER: "127.0.0.2"}, ports=ports)


def test_candidates_are_localhost_first_then_docker_for_each_default_port() -> None:
    urls = candidate_urls(KINDS["llamacpp"], DiscoveryOptions())
    assert urls == [
        "http://localhost:8080",
        "http://localhost:9931",
        f"http://{DOCKER}:8080",
        f"http://{DOCKER}:9931",
    ]
    assert candidate_urls(KINDS["openai"], DiscoveryOptions()) == []


async def test_localhost_wins_over_host_docker_internal(pendra_home: Path) -> None:
    local = OllamaEmulator()
    port = free_port()
    await local.start(port=port, host="127.0.0.1")
    docker = OllamaEmulator(version="0.33.0")
    await docker.start(port=port, host="127.0.0.2")
    try:
        options = only("ollama", port)
        options = DiscoveryOptions(
            hosts=("127.0.0.1", DOCKER), host_map=options.host_map, ports=options.ports
        )
        registry = await discover_backends(settings_for(pendra_home), options=options)
        ollama = registry.get("ollama")
        assert ollama is not None and ollama.endpoint == f"http://127.0.0.1:{port}"
        await ollama.close()
        await local.stop()  # gone from localhost: the docker host is found instead
        registry = await discover_backends(settings_for(pendra_home), options=options)
        ollama = registry.get("ollama")
        assert ollama.endpoint == f"http://{DOCKER}:{port}" and ollama.version == "0.33.0"
        assert ollama.status is BackendStatus.READY
        await ollama.close()
    finally:
        await local.stop()
        await docker.stop()


@pytest.mark.parametrize("word", sorted(DISABLE_WORDS | {"OFF", "No"}))
async def test_a_disabled_kind_is_never_probed(pendra_home: Path, word: str) -> None:
    async with OllamaEmulator() as emu:
        registry = await discover_backends(
            settings_for(pendra_home, ollama=word), options=only("ollama", emu.port)
        )
        assert registry.get("ollama") is None
        assert emu.requests == []
        rows = {
            r["name"]: r for r in describe_all(registry, settings_for(pendra_home, ollama=word))
        }
        assert rows["ollama"]["status"] == "disabled"


async def test_an_explicit_url_is_used_and_verified(pendra_home: Path) -> None:
    async with OllamaEmulator() as emu, LmStudioEmulator() as lm:
        settings = settings_for(pendra_home, ollama=emu.url, lmstudio=emu.url)
        registry = await discover_backends(settings, options=only("vllm", free_port()))
        try:
            assert registry.get("ollama").status is BackendStatus.READY
            wrong = registry.get("lmstudio")  # an Ollama where LM Studio was promised
            assert wrong.status is BackendStatus.ERROR and "not LM Studio" in wrong.detail
        finally:
            for backend in registry:
                await backend.close()
        gone = settings_for(pendra_home, lmstudio=f"http://127.0.0.1:{free_port()}")
        registry = await discover_backends(gone, options=only("vllm", free_port()))
        assert registry.get("lmstudio").status is BackendStatus.UNREACHABLE
        await registry.get("lmstudio").close()
        assert lm.requests == []


async def test_look_alikes_are_rejected_by_api_shape() -> None:
    import aiohttp

    async with (
        LmStudioEmulator() as lm,
        LlamaCppEmulator() as llama,
        SpeachesEmulator() as speaches,
        VllmEmulator() as vllm,
        OllamaEmulator() as ollama,
        aiohttp.ClientSession() as session,
    ):
        # LM Studio answers /api/version with 200 + error; llama-server answers /api/tags.
        assert not (await OllamaBackend.verify(session, lm.url)).ok
        assert "/api/version" in lm.paths()
        assert not (await OllamaBackend.verify(session, llama.url)).ok
        # Speaches has /api/ps and vLLM has /health: neither is Ollama.
        assert not (await OllamaBackend.verify(session, speaches.url)).ok
        assert not (await OllamaBackend.verify(session, vllm.url)).ok
        # vLLM and Speaches share port 8000: each verifier accepts only its own.
        assert (await VllmBackend.verify(session, vllm.url)).ok
        assert not (await VllmBackend.verify(session, speaches.url)).ok
        assert (await SpeachesBackend.verify(session, speaches.url)).ok
        assert not (await SpeachesBackend.verify(session, vllm.url)).ok
        # LM Studio's verifier must not accept Ollama's or vLLM's answers.
        assert not (await LmStudioBackend.verify(session, ollama.url)).ok
        assert not (await LmStudioBackend.verify(session, vllm.url)).ok
        # Every kind accepts its own emulator and rejects every other.
        emus = {
            "lmstudio": lm,
            "llamacpp": llama,
            "speaches": speaches,
            "vllm": vllm,
            "ollama": ollama,
        }
        for kind, emu in emus.items():
            for other_kind, cls in KINDS.items():
                if other_kind == "openai":
                    continue
                verdict = await cls.verify(session, emu.url)
                assert verdict.ok is (kind == other_kind), (kind, other_kind, verdict)


async def test_speaches_old_text_health_is_accepted() -> None:
    import aiohttp

    async with SpeachesEmulator(health_style="text") as old, aiohttp.ClientSession() as session:
        assert (await SpeachesBackend.verify(session, old.url)).ok


async def test_nothing_running_ends_without_waiting_for_probe_timeouts(
    pendra_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused connection ends its probe at once. With every probe timeout raised to ten
    minutes, a discovery that waited on one would run into the one-minute bound below; the real
    pass takes a fraction of a second, so the bound does not depend on how busy the machine is."""
    import aiohttp

    patient = aiohttp.ClientTimeout(total=600, connect=600, sock_connect=600)
    for module in ("discovery", "external"):
        monkeypatch.setattr(f"worker.backends.{module}.PROBE_TIMEOUT", patient)
    monkeypatch.setattr("worker.backends.http.PROBE_TIMEOUT", patient)
    ports = (free_port(), free_port())
    options = DiscoveryOptions(
        host_map={DOCKER: "127.0.0.2"}, ports=dict.fromkeys(BACKEND_KINDS, ports)
    )
    registry = await asyncio.wait_for(
        discover_backends(settings_for(pendra_home), options=options), 60
    )
    assert len(registry) == 0


async def test_every_kind_is_found_by_discovery(pendra_home: Path) -> None:
    emus = {kind: cls() for kind, cls in EMULATORS.items() if kind != "openai"}
    for emu in emus.values():
        await emu.start()
    try:
        options = DiscoveryOptions(
            hosts=("127.0.0.1",), ports={k: (e.port,) for k, e in emus.items()}
        )
        registry = await discover_backends(settings_for(pendra_home), options=options)
        found = {b.kind: b for b in registry}
        assert set(found) == set(emus)
        for kind, backend in found.items():
            assert backend.status is BackendStatus.READY, (kind, backend.detail)
            assert backend.endpoint == emus[kind].url
            await backend.close()
    finally:
        for emu in emus.values():
            await emu.stop()


async def test_periodic_discovery_adds_marks_unreachable_and_publishes(pendra_home: Path) -> None:
    port = free_port()
    options = only("ollama", port)
    events = EventBus()
    seen = events.subscribe(kinds={"backends"})
    registry = await discover_backends(settings_for(pendra_home), options=options)
    discovery = Discovery(
        settings_for(pendra_home), registry, events, options=options, interval_s=3600
    )
    await discovery.start()
    assert registry.get("ollama") is None
    first = await seen.get()
    emu = OllamaEmulator()
    await emu.start(port=port)
    try:
        rows = await discovery.refresh_now()  # appears without a restart
        assert registry.get("ollama").status is BackendStatus.READY
        assert {r["name"]: r["status"] for r in rows}["ollama"] == "ready"
        added = await seen.get()
        assert added["backends"] != first["backends"]
        await emu.stop()
        await discovery.refresh_now()  # goes away: kept, marked unreachable
        assert registry.get("ollama").status is BackendStatus.UNREACHABLE
        gone = await seen.get()
        assert {r["name"]: r["status"] for r in gone["backends"]}["ollama"] == "unreachable"
        await discovery.refresh_now()  # no change, no event
        assert seen._queue.empty()
        await emu.start(port=port)
        await discovery.refresh_now()  # comes back
        assert registry.get("ollama").status is BackendStatus.READY
    finally:
        await discovery.stop()
        await emu.stop()
        for backend in registry:
            await backend.close()


async def test_periodic_discovery_lists_explicit_endpoints_reachable_or_not(
    pendra_home: Path,
) -> None:
    async with VllmEmulator() as emu:
        dead = f"http://127.0.0.1:{free_port()}"
        settings = settings_for(pendra_home, vllm=emu.url, ollama=dead)
        registry = await discover_backends(settings, options=only("tgi", free_port()))
        for backend in list(registry):
            registry.remove(backend.kind)
            await backend.close()
        discovery = Discovery(settings, registry, options=only("tgi", free_port()), interval_s=3600)
        await discovery.start()
        try:
            assert registry.get("vllm").status is BackendStatus.READY
            assert registry.get("ollama").status is BackendStatus.UNREACHABLE
            assert registry.get("ollama").endpoint == dead
        finally:
            await discovery.stop()
            for backend in registry:
                await backend.close()

"""End to end with the real Gemma 3 270M: the sample catalogue's gemma3:270m entry (relative URL,
real size and pinned SHA-256) is installed from a loopback server, then the built-in backend loads
it and answers a chat completion."""

from __future__ import annotations

from pathlib import Path

import pytest
from install_rangeserver import RangeServer

from worker.backends.pendra import PendraBackend
from worker.catalogue import CatalogueClient, sample_catalogue_bytes
from worker.installs import InstallManager
from worker.modelstore import read_sidecar, sidecar_path
from worker.settings import load_settings


@pytest.mark.slow
async def test_install_gemma_from_the_sample_catalogue_then_chat(
    gemma_gguf: Path, pendra_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await RangeServer(catalogue=sample_catalogue_bytes()).start()
    server.add("gemma-3-270m-q4_k_m.gguf", gemma_gguf)
    monkeypatch.setenv("PENDRA_API_URL", server.url)
    settings = load_settings()
    backend = PendraBackend(settings, watch=False, batched=False)
    try:
        manager = InstallManager(settings, catalogue_loader=CatalogueClient(settings).load)
        job = await manager.install("gemma3:270m")
        assert job.ok, job.error
        installed = pendra_home / "models" / "gemma-3-270m-q4_k_m.gguf"
        assert installed.stat().st_size == 253113024
        assert read_sidecar(sidecar_path(installed)).ref == "gemma3:270m"

        await backend.refresh()
        assert backend.serves("gemma3:270m")
        reply = await backend.chat(
            {
                "model": "gemma3:270m",
                "messages": [{"role": "user", "content": "The capital of France is"}],
                "max_tokens": 8,
                "temperature": 0,
            }
        )
        assert reply["choices"][0]["message"]["content"] is not None
        assert reply["usage"]["completion_tokens"] > 0
    finally:
        await backend.close()
        await server.stop()

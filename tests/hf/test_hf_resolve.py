"""Resolving refs with the real ``huggingface_hub`` client against the Hub emulator on 127.0.0.1.

Nothing is mocked at the Python level: ``HfApi.model_info`` and ``get_hf_file_metadata`` make their
real HTTP requests to the emulator, which answers as the Hub does (see tests/emulators/hf_hub.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hub_fixtures import (
    GATED,
    SPLIT,
    TINY,
    TOKEN_GRANTED,
    TOKEN_OTHER,
    add_gated_repo,
    add_split_repo,
    add_tiny_repo,
    blob,
)

from tests.emulators.hf_hub import HubEmulator
from worker.errors import InstallError, ModelNotFound
from worker.hf.refs import HFRef, parse_hf_ref
from worker.hf.resolve import ResolvedHF, resolve


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[HubEmulator]:
    emulator = HubEmulator()
    add_tiny_repo(emulator, blob(tmp_path / "a.gguf", 5000, 1), blob(tmp_path / "b.gguf", 7000, 2))
    parts = [blob(tmp_path / f"S-Q4_K_M-0000{i}-of-00002.gguf", 3000, 10 + i) for i in (1, 2)]
    add_split_repo(emulator, parts, blob(tmp_path / "mmproj.gguf", 900, 20))
    add_gated_repo(emulator, blob(tmp_path / "g.gguf", 4000, 30))
    await emulator.start()
    yield emulator
    await emulator.stop()


async def resolved(hub: HubEmulator, text: str, **kwargs: object) -> ResolvedHF:
    return await asyncio.to_thread(resolve, parse_hf_ref(text), endpoint=hub.url, **kwargs)


async def test_single_file_pinned_to_its_commit_and_lfs_hash(hub: HubEmulator) -> None:
    repo = hub.repos[TINY]
    result = await resolved(hub, f"hf.co/{TINY}")
    assert result.ref == f"hf.co/{TINY}:Q4_K_M" and result.quant == "Q4_K_M"
    assert result.revision == repo.sha and result.note is None
    (part,) = result.parts
    source = repo.files["Tiny-Chat-Q4_K_M.gguf"]
    assert (part.sha256, part.size) == (source.sha256, source.size)
    assert part.url == f"{hub.url}/{TINY}/resolve/{repo.sha}/Tiny-Chat-Q4_K_M.gguf"
    assert (result.task, result.context_length, result.has_chat_template) == ("chat", 512, True)
    assert (result.architecture, result.parameters, result.licence) == (
        "llama",
        123456,
        "apache-2.0",
    )
    # The listing with LFS metadata, then a HEAD of the file (access and agreement check).
    assert [(r.method, r.path) for r in hub.requests] == [
        ("GET", f"/api/models/{TINY}"),
        ("HEAD", f"/{TINY}/resolve/{repo.sha}/Tiny-Chat-Q4_K_M.gguf"),
    ]
    # Nothing downloaded while resolving (huggingface_hub 1.x also HEADs the CDN; 2.x stops at
    # the redirect, which carries the metadata).
    assert [r for r in hub.cdn.requests if r.method == "GET"] == []


async def test_split_gguf_with_projector(hub: HubEmulator) -> None:
    result = await resolved(hub, f"https://huggingface.co/{SPLIT}")
    assert [p.path for p in result.parts] == [
        "Q4_K_M/S-Q4_K_M-00001-of-00002.gguf",
        "Q4_K_M/S-Q4_K_M-00002-of-00002.gguf",
    ]
    assert result.mmproj is not None and result.mmproj.name == "mmproj-F16.gguf"
    assert result.size == 3000 + 3000 + 900 and len(result.files) == 3
    assert result.task == "chat"  # image-text-to-text: a vision chat model


async def test_missing_quantisation_and_repository(hub: HubEmulator) -> None:
    with pytest.raises(ModelNotFound) as caught:
        await resolved(hub, f"hf.co/{TINY}:Q5_K_M")
    assert "no Q5_K_M" in caught.value.message and "Q4_K_M, Q8_0" in (caught.value.hint or "")
    with pytest.raises(ModelNotFound, match="not a repository"):
        await resolved(hub, "hf.co/nobody/Nothing-GGUF")
    with pytest.raises(ModelNotFound, match="no revision"):
        await asyncio.to_thread(resolve, HFRef(TINY, revision="no-such-branch"), endpoint=hub.url)


async def test_gated_repository_needs_a_granted_token(hub: HubEmulator) -> None:
    page = f"{hub.url}/{GATED}"
    with pytest.raises(InstallError) as caught:
        await resolved(hub, f"hf.co/{GATED}")
    assert (
        caught.value.message
        == f"hf.co/{GATED} is a gated repository: accept its licence at {page}."
    )
    assert "HF_TOKEN" in (caught.value.hint or "")
    with pytest.raises(InstallError) as caught:
        await resolved(hub, f"hf.co/{GATED}", token=TOKEN_OTHER)
    assert "has no access yet" in (caught.value.hint or "")
    result = await resolved(hub, f"hf.co/{GATED}", token=TOKEN_GRANTED)
    assert result.gated and result.licence == "llama3.2"
    assert hub.requests[-1].headers["Authorization"] == f"Bearer {TOKEN_GRANTED}"


async def test_a_token_the_hub_refuses(hub: HubEmulator) -> None:
    with pytest.raises(InstallError, match="refused the token"):
        await resolved(hub, f"hf.co/{TINY}", token="hf_not_a_real_token")


async def test_catalogue_pin_is_checked_against_the_lfs_hash(hub: HubEmulator) -> None:
    ref = HFRef(TINY, file="Tiny-Chat-Q8_0.gguf")
    good = hub.repos[TINY].files["Tiny-Chat-Q8_0.gguf"].sha256
    result = await asyncio.to_thread(resolve, ref, endpoint=hub.url, pin_sha256=good)
    assert result.parts[0].path == "Tiny-Chat-Q8_0.gguf"
    with pytest.raises(InstallError, match="but the Hub's LFS hash is"):
        await asyncio.to_thread(resolve, ref, endpoint=hub.url, pin_sha256="0" * 64)


async def test_offline_and_unreachable(hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(hub.requests)
    with pytest.raises(InstallError, match="HF_HUB_OFFLINE is set"):
        await resolved(hub, f"hf.co/{TINY}")
    assert len(hub.requests) == before
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(
        InstallError, match=r"Cannot reach the Hugging Face Hub at http://127\.0\.0\.1:9"
    ):
        await asyncio.to_thread(
            resolve, parse_hf_ref(f"hf.co/{TINY}"), endpoint="http://127.0.0.1:9"
        )

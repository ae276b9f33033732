"""Repositories for the Hub emulator: made of real files under a test's tmp dir."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.emulators.hf_hub import HubEmulator, HubRepo

TOKEN_GRANTED = "hf_granted_token_1234567890"
TOKEN_OTHER = "hf_other_account_token_0987654321"
TINY = "bartowski/Tiny-Chat-GGUF"
SPLIT = "unsloth/Tiny-Split-GGUF"
GATED = "meta-llama/Tiny-Gated-GGUF"
GGUF_INFO = {
    "total": 123456,
    "architecture": "llama",
    "context_length": 512,
    "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
}


def blob(path: Path, size: int, seed: int) -> Path:
    """``size`` deterministic bytes (not a model: for tests that never load the file)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048
    data = (block * (size // len(block) + 1))[:size]
    path.write_bytes(b"GGUF" + data[4:])
    return path


def add_tiny_repo(hub: HubEmulator, model: Path, other: Path) -> HubRepo:
    """A repo with Q4_K_M (``model``), Q8_0 (``other``) and a README kept in git."""
    repo = hub.repo(TINY, gguf=GGUF_INFO)
    repo.add("Tiny-Chat-Q4_K_M.gguf", model)
    repo.add("Tiny-Chat-Q8_0.gguf", other)
    readme = model.with_name("README.md")
    readme.write_text("# Tiny\n")
    repo.add("README.md", readme, lfs=False)
    return repo


def add_split_repo(hub: HubEmulator, parts: list[Path], mmproj: Path) -> HubRepo:
    """A split Q4_K_M in a folder, as unsloth publishes them, with a projector beside it."""
    repo = hub.repo(SPLIT, gguf=GGUF_INFO, pipeline_tag="image-text-to-text")
    for part in parts:
        repo.add(f"Q4_K_M/{part.name}", part)
    repo.add("mmproj-F16.gguf", mmproj)
    return repo


def add_gated_repo(hub: HubEmulator, model: Path) -> HubRepo:
    hub.users |= {TOKEN_GRANTED, TOKEN_OTHER}
    repo = hub.repo(GATED, gated="manual", granted={TOKEN_GRANTED}, licence="llama3.2")
    repo.add("Tiny-Gated-Q4_K_M.gguf", model)
    return repo

"""Fixtures for the built-in backend tests: a modelstore of real tiny GGUFs, a backend on it."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from worker.backends.pendra import PendraBackend
from worker.settings import load_settings

MakeBackend = Callable[..., Awaitable[PendraBackend]]


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture
async def make_backend(
    models_dir: Path, pendra_home: Path, tiny_chat_gguf: Path, tiny_embed_gguf: Path
) -> AsyncIterator[MakeBackend]:
    """Build a started backend over ``models_dir`` holding ``tiny`` (chat) and ``emb`` (embedding).

    Keyword arguments become settings (env var names without the PENDRA_ prefix, e.g.
    ``MAX_LOADED_MODELS=1``); ``batched`` picks the engine.
    """
    made: list[PendraBackend] = []
    shutil.copy(tiny_chat_gguf, models_dir / "tiny.gguf")
    shutil.copy(tiny_embed_gguf, models_dir / "emb.gguf")

    async def build(*, batched: bool = False, watch: bool = False, **env: object) -> PendraBackend:
        environ = {"PENDRA_HOME": str(pendra_home), "PENDRA_MODELS_DIR": str(models_dir)}
        environ.update({f"PENDRA_{k}": str(v) for k, v in env.items()})
        backend = PendraBackend(load_settings(environ), watch=watch, batched=batched)
        await backend.refresh()
        made.append(backend)
        return backend

    yield build
    for backend in made:
        await backend.close()


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def warm(backend: PendraBackend, body: dict) -> None:
    """Run ``body`` once before outputs are compared.

    llama.cpp promises the same greedy answer for the same input *computed the same way*, not
    across batch shapes. Both engines keep the previous prompts' KV cache (prompt caching), so a
    prompt's first answer is computed from a full prefill and later ones from a one-token step:
    comparing answers is only meaningful after this warm-up.
    """
    await backend.chat({**body, "max_tokens": 1})


def loaded(backend: PendraBackend, model_id: str) -> dict:
    """The model's entry in ``loaded`` of the status document."""
    entries = {e["id"]: e for e in backend.describe()["loaded"]}
    return entries[model_id]

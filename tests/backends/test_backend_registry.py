"""The routing rule: built-in first, then kind order; ``kind/model`` picks one explicitly."""

from __future__ import annotations

import pytest

from worker.backends.base import BackendStatus, ModelInfo
from worker.backends.lmstudio import LmStudioBackend
from worker.backends.ollama import OllamaBackend
from worker.backends.registry import BackendRegistry
from worker.backends.vllm import VllmBackend
from worker.errors import ModelNotFound


def ready(backend, *ids: str):
    backend.models = [ModelInfo(i) for i in ids]
    backend.mark(BackendStatus.READY)
    return backend


def test_kind_order_decides_and_an_explicit_kind_overrides() -> None:
    vllm = ready(VllmBackend("http://v"), "shared", "Qwen/Qwen2.5-1.5B")
    ollama = ready(OllamaBackend("http://o"), "shared", "llama3.2:latest")
    registry = BackendRegistry([vllm, ollama])
    assert registry.resolve("shared") == (ollama, "shared")  # ollama precedes vllm
    assert registry.resolve("vllm/shared") == (vllm, "shared")
    assert registry.resolve("Qwen/Qwen2.5-1.5B") == (vllm, "Qwen/Qwen2.5-1.5B")
    assert registry.resolve("llama3.2") == (ollama, "llama3.2")  # Ollama's :latest alias
    advertised = {name for _, _, name in registry.advertised_models()}
    assert {"shared", "ollama/shared", "vllm/shared", "Qwen/Qwen2.5-1.5B"} <= advertised


def test_an_unreachable_backend_serves_nothing() -> None:
    ollama = ready(OllamaBackend("http://o"), "m")
    lm = ready(LmStudioBackend("http://l"), "m")
    registry = BackendRegistry([ollama, lm])
    ollama.mark(BackendStatus.UNREACHABLE, "gone")
    assert registry.resolve("m") == (lm, "m")
    lm.mark(BackendStatus.UNREACHABLE, "gone")
    with pytest.raises(ModelNotFound) as caught:
        registry.resolve("m")
    assert caught.value.http_status == 404
    assert "pendra models install" in str(caught.value)

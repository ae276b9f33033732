"""The Ollama backend against a real emulated Ollama on 127.0.0.1 (reference/backends.md §1)."""

from __future__ import annotations

import json

import pytest

from tests.emulators import Faults, OllamaEmulator, OllamaModel
from worker.backends.base import BackendStatus, InstallProgress
from worker.backends.ollama import OllamaBackend
from worker.errors import BackendFailed, BackendUnavailable, InstallError, NotSupported

USER = [{"role": "user", "content": "hello there"}]


async def ready_backend(emulator: OllamaEmulator) -> OllamaBackend:
    backend = OllamaBackend(emulator.url)
    await backend.refresh()
    assert backend.status is BackendStatus.READY, backend.detail
    return backend


async def test_listing_enriches_every_model_with_at_most_five_shows_at_once() -> None:
    models = [OllamaModel(f"m{i}:latest", context_length=1000 + i) for i in range(12)]
    models.append(
        OllamaModel(
            "nomic-embed-text:latest",
            capabilities=["embedding"],
            family="nomic-bert",
            parameter_size="137M",
            quantization="F16",
        )
    )
    async with OllamaEmulator(models, hold_shows_until=5) as emu:
        backend = await ready_backend(emu)
        try:
            assert len(backend.models) == 13
            assert emu.show_max_in_flight == 5  # concurrent, and never more than five
            first = backend.models[0]
            assert first.context_length == 1000
            assert first.size_bytes == 4_683_075_271
            assert first.details["parameter_size"] == "8.0B"
            assert first.details["quantization"] == "Q4_K_M"
            assert first.details["format"] == "gguf"
            assert first.details["family"] == "llama"
            assert first.details["capabilities"] == ["completion"]
            embed = backend.models[-1]
            assert embed.task.value == "embedding" and embed.details["family"] == "nomic-bert"
            shows = len(emu.paths("POST"))
            await backend.refresh()  # unchanged digests: nothing asked again
            assert len(emu.paths("POST")) == shows
        finally:
            await backend.close()


async def test_chat_injects_num_ctx_from_the_model_context() -> None:
    async with OllamaEmulator([OllamaModel("qwen3.6:27b", context_length=262144)]) as emu:
        backend = await ready_backend(emu)
        try:
            answer = await backend.chat({"model": "qwen3.6:27b", "messages": USER})
            assert answer["choices"][0]["message"]["content"] == "Echo: hello there"
            assert answer["usage"]["completion_tokens"] == 3
            chunks = [
                c async for c in backend.chat_stream({"model": "qwen3.6:27b", "messages": USER})
            ]
            sent = emu.bodies("/api/chat")
            assert [b["options"]["num_ctx"] for b in sent] == [262144, 262144]
            assert "/v1/chat/completions" not in emu.paths()
            text = "".join(
                json.loads(c.json)["choices"][0]["delta"].get("content", "") for c in chunks
            )
            assert text == "Echo: hello there"
            assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 3
        finally:
            await backend.close()


async def test_client_num_ctx_wins_and_embeddings_are_forwarded_unchanged() -> None:
    models = [
        OllamaModel("llama3.2:latest", context_length=131072),
        OllamaModel("nomic-embed-text:latest", capabilities=["embedding"]),
    ]
    async with OllamaEmulator(models) as emu:
        backend = await ready_backend(emu)
        try:
            await backend.chat(
                {"model": "llama3.2", "messages": USER, "options": {"num_ctx": 2048}}
            )
            assert emu.bodies("/api/chat")[-1]["options"]["num_ctx"] == 2048
            await backend.chat({"model": "llama3.2", "messages": USER})  # ":latest" alias
            assert emu.bodies("/api/chat")[-1]["options"]["num_ctx"] == 131072
            body = {"model": "nomic-embed-text:latest", "input": ["a b", "c"]}
            result = await backend.embeddings(body)
            assert len(result["data"]) == 2
            assert emu.bodies("/v1/embeddings") == [body]  # exactly what the client sent
        finally:
            await backend.close()


async def test_stream_asks_for_usage_chunk_only_when_requested() -> None:
    async with OllamaEmulator() as emu:
        backend = await ready_backend(emu)
        try:
            body = {
                "model": "llama3.2:latest",
                "messages": USER,
                "stream_options": {"include_usage": True},
            }
            chunks = [json.loads(c.json) async for c in backend.chat_stream(body)]
            assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 5
            assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        finally:
            await backend.close()


async def test_backend_dying_mid_stream_raises_unavailable_and_the_next_request_works() -> None:
    async with OllamaEmulator(faults=Faults(die_after_chunks=2)) as emu:
        backend = await ready_backend(emu)
        try:
            received = []
            with pytest.raises(BackendUnavailable, match="not reachable"):
                async for chunk in backend.chat_stream(
                    {"model": "llama3.2:latest", "messages": USER}
                ):
                    received.append(chunk)
            assert len(received) == 2
            emu.faults.die_after_chunks = None
            chunks = [
                c async for c in backend.chat_stream({"model": "llama3.2:latest", "messages": USER})
            ]
            assert chunks[-1].finish_reason == "stop"
        finally:
            await backend.close()


async def test_errors_carry_ollamas_message_and_status() -> None:
    async with OllamaEmulator() as emu:
        backend = await ready_backend(emu)
        try:
            with pytest.raises(BackendFailed, match="model 'nope' not found") as caught:
                await backend.chat({"model": "nope", "messages": USER})
            assert caught.value.http_status == 404
            emu.faults.invalid_json = True
            with pytest.raises(BackendFailed, match="not JSON"):
                await backend.chat({"model": "llama3.2:latest", "messages": USER})
            with pytest.raises(BackendFailed, match="not JSON"):
                async for _ in backend.chat_stream({"model": "llama3.2:latest", "messages": USER}):
                    pass
        finally:
            await backend.close()


async def test_images_without_the_endpoint_are_not_supported_and_with_it_forwarded() -> None:
    async with OllamaEmulator() as emu:
        backend = await ready_backend(emu)
        try:
            with pytest.raises(NotSupported, match="no image generation"):
                await backend.images({"model": "llama3.2:latest", "prompt": "cat"})
        finally:
            await backend.close()
    async with OllamaEmulator(
        [OllamaModel("flux:latest", capabilities=["image"])], images=True
    ) as emu:
        backend = await ready_backend(emu)
        try:
            result = await backend.images({"model": "flux:latest", "prompt": "cat"})
            assert result["data"][0]["b64_json"]
            assert backend.models[0].task.value == "image"
        finally:
            await backend.close()


async def test_pull_reports_progress_and_adds_the_model() -> None:
    new = OllamaModel("gemma3:270m", context_length=32768)
    async with OllamaEmulator(pullable={"gemma3:270m": new}) as emu:
        backend = await ready_backend(emu)
        events: list[InstallProgress] = []
        try:
            await backend.install("gemma3:270m", events.append)
            phases = [e.phase for e in events]
            assert phases[0] == "starting" and phases[-1] == "done"
            assert "downloading" in phases and "verifying" in phases
            downloads = [e for e in events if e.phase == "downloading"]
            assert downloads[-1].bytes_done == downloads[-1].bytes_total == 2_019_377_376 + 1234
            assert [e.bytes_done for e in downloads] == sorted(e.bytes_done for e in downloads)
            assert backend.serves("gemma3:270m")
            assert backend.context_of("gemma3:270m") == 32768
        finally:
            await backend.close()


async def test_pull_error_lines_with_http_200_fail_the_install() -> None:
    new = OllamaModel("gemma3:270m")
    async with OllamaEmulator(
        pullable={"gemma3:270m": new}, faults=Faults(pull_error_after=2)
    ) as emu:
        backend = await ready_backend(emu)
        events: list[InstallProgress] = []
        try:
            with pytest.raises(InstallError, match="max retries exceeded"):
                await backend.install("gemma3:270m", events.append)
            assert any(e.phase == "downloading" for e in events)
            with pytest.raises(InstallError, match="file does not exist"):
                await backend.install("no-such-model:1b", events.append)
            assert not backend.serves("gemma3:270m")
        finally:
            await backend.close()


async def test_delete_removes_the_model_and_a_missing_one_is_a_clear_error() -> None:
    async with OllamaEmulator() as emu:
        backend = await ready_backend(emu)
        try:
            await backend.uninstall("llama3.2")
            assert emu.bodies("/api/delete") == [{"model": "llama3.2:latest"}]
            assert backend.models == []
            with pytest.raises(InstallError, match="not found"):
                await backend.uninstall("llama3.2:latest")
        finally:
            await backend.close()


async def test_closing_a_stream_early_closes_the_connection() -> None:
    async with OllamaEmulator(faults=Faults(endless=True)) as emu:
        backend = await ready_backend(emu)
        try:
            stream = backend.chat_stream({"model": "llama3.2:latest", "messages": USER})
            got = [await stream.__anext__() for _ in range(5)]
            await stream.aclose()
            assert len(got) == 5
            import asyncio

            for _ in range(50):
                if emu.disconnects:
                    break
                await asyncio.sleep(0.02)
            assert emu.disconnects == 1
        finally:
            await backend.close()

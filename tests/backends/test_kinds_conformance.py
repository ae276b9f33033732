"""Each OpenAI-surface kind against its emulator: listing, chat, the lean stream relay, error
envelopes, a backend dying mid-stream, capabilities a kind lacks (structured 501), and the
install/uninstall of LM Studio and Speaches."""

from __future__ import annotations

import json

import pytest

from tests.emulators import (
    EMULATORS,
    Faults,
    LmStudioEmulator,
    OpenAIGenericEmulator,
    SpeachesEmulator,
    VllmEmulator,
)
from worker.backends.base import BackendStatus, InstallProgress, TranscriptionRequest
from worker.backends.kinds import KINDS
from worker.errors import BackendFailed, BackendUnavailable, InstallError, NotSupported

USER = [{"role": "user", "content": "hello there"}]
CHAT_KINDS = ["lmstudio", "vllm", "llamacpp", "tgi", "sglang", "localai", "openai"]


async def started(kind: str, **kwargs):
    emu = EMULATORS[kind](**kwargs)
    await emu.start()
    backend = KINDS[kind](emu.url)
    await backend.refresh()
    assert backend.status is BackendStatus.READY, backend.detail
    return emu, backend


@pytest.mark.parametrize("kind", CHAT_KINDS)
async def test_chat_and_stream_relay_chunks_untouched(kind: str) -> None:
    emu, backend = await started(kind)
    try:
        model = backend.models[0].id
        assert model == "emu-model"
        answer = await backend.chat({"model": model, "messages": USER})
        assert answer["choices"][0]["message"]["content"] == "Echo: hello there"
        body = {"model": model, "messages": USER, "stream_options": {"include_usage": True}}
        chunks = [c async for c in backend.chat_stream(body)]
        sent = emu.bodies("/v1/chat/completions")[-1]
        assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
        for chunk in chunks:  # exactly the bytes of each data payload the backend sent
            assert json.loads(chunk.json)["object"] == "chat.completion.chunk"
        text = "".join(
            (json.loads(c.json)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
            for c in chunks
        )
        assert text == "Echo: hello there"
        assert any(c.finish_reason == "stop" for c in chunks)
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    finally:
        await backend.close()
        await emu.stop()


@pytest.mark.parametrize("kind", CHAT_KINDS)
async def test_dying_mid_stream_is_unavailable_and_the_next_request_works(kind: str) -> None:
    emu, backend = await started(kind, faults=Faults(die_after_chunks=2))
    try:
        with pytest.raises(BackendUnavailable, match=kind):
            async for _ in backend.chat_stream({"model": "emu-model", "messages": USER}):
                pass
        emu.faults.die_after_chunks = None
        chunks = [c async for c in backend.chat_stream({"model": "emu-model", "messages": USER})]
        assert any(c.finish_reason for c in chunks)
    finally:
        await backend.close()
        await emu.stop()


@pytest.mark.parametrize(
    ("kind", "embeds"),
    [
        ("lmstudio", True),
        ("vllm", True),
        ("llamacpp", True),
        ("tgi", False),
        ("sglang", True),
        ("localai", True),
        ("openai", True),
        ("speaches", False),
    ],
)
async def test_embeddings_or_a_structured_501(kind: str, embeds: bool) -> None:
    emu, backend = await started(kind)
    try:
        body = {"model": backend.models[0].id, "input": "a b c"}
        if embeds:
            result = await backend.embeddings(body)
            assert len(result["data"][0]["embedding"]) == 8
        else:
            with pytest.raises(NotSupported) as caught:
                await backend.embeddings(body)
            assert caught.value.http_status == 501
            assert caught.value.to_openai()["error"]["type"] == "not_supported"
    finally:
        await backend.close()
        await emu.stop()


async def test_vllm_nested_and_flat_errors_keep_status_and_message() -> None:
    for flat in (False, True):
        emu, backend = await started("vllm", flat_errors=flat)
        try:
            with pytest.raises(BackendFailed, match="The model `nope` does not exist") as caught:
                await backend.chat({"model": "nope", "messages": USER})
            assert caught.value.http_status == 404
            with pytest.raises(BackendFailed, match="does not exist"):
                async for _ in backend.chat_stream({"model": "nope", "messages": USER}):
                    pass
        finally:
            await backend.close()
            await emu.stop()


async def test_in_stream_error_frame_and_invalid_json_and_huge_lines() -> None:
    emu, backend = await started("vllm")
    try:
        emu.faults.chat_error = (200, {"error": "Unexpected endpoint or method. (POST /x)"})
        with pytest.raises(BackendFailed, match="Unexpected endpoint"):
            await backend.chat({"model": "emu-model", "messages": USER})
        with pytest.raises(BackendFailed, match="Unexpected endpoint"):
            async for _ in backend.chat_stream({"model": "emu-model", "messages": USER}):
                pass
        emu.faults.chat_error = None
        emu.faults.invalid_json = True
        with pytest.raises(BackendFailed, match="not JSON"):
            await backend.chat({"model": "emu-model", "messages": USER})
        emu.faults.invalid_json = False
        emu.faults.huge_line_bytes = 2 * 1024 * 1024  # a big but legitimate chunk relays
        chunks = [c async for c in backend.chat_stream({"model": "emu-model", "messages": USER})]
        assert max(len(c.json) for c in chunks) > 2 * 1024 * 1024
        type(backend).max_line = 1024 * 1024  # above the limit: a clear error, not a hang
        try:
            with pytest.raises(BackendFailed, match="exceeded"):
                async for _ in backend.chat_stream({"model": "emu-model", "messages": USER}):
                    pass
        finally:
            del type(backend).max_line
    finally:
        await backend.close()
        await emu.stop()


async def test_error_frame_inside_a_stream_is_raised() -> None:
    emu, backend = await started("llamacpp")
    try:
        original = emu.sse_chunks

        def with_error(model, messages, body):
            yield next(original(model, messages, body))
            yield json.dumps(
                {"error": {"code": 500, "message": "KV cache full", "type": "server_error"}}
            )

        emu.sse_chunks = with_error
        got = []
        with pytest.raises(BackendFailed, match="KV cache full"):
            async for chunk in backend.chat_stream({"model": "emu-model", "messages": USER}):
                got.append(chunk)
        assert len(got) == 1
    finally:
        await backend.close()
        await emu.stop()


async def test_context_lengths_come_from_each_kinds_own_field() -> None:
    expected = {"vllm": 32768, "llamacpp": 4096, "tgi": 32768, "sglang": 65536, "lmstudio": 131072}
    for kind, ctx in expected.items():
        emu, backend = await started(kind)
        try:
            assert backend.models[0].context_length == ctx, kind
        finally:
            await backend.close()
            await emu.stop()


async def test_llama_server_loading_is_reported_not_ready() -> None:
    emu = EMULATORS["llamacpp"](loading=True)
    await emu.start()
    backend = KINDS["llamacpp"](emu.url)
    try:
        await backend.refresh()
        assert backend.status is BackendStatus.ERROR and "Loading model" in backend.detail
    finally:
        await backend.close()
        await emu.stop()


async def test_images_and_transcription_pass_through_where_the_kind_has_them() -> None:
    audio = TranscriptionRequest(
        "emu-model", "a.wav", b"RIFF....", "audio/wav", {"response_format": "text"}
    )
    emu, backend = await started("localai")
    try:
        images = await backend.images({"model": "emu-model", "prompt": "a cat"})
        assert images["data"][0]["b64_json"]
        assert await backend.transcription(audio) == "transcribed 8 bytes of a.wav"
    finally:
        await backend.close()
        await emu.stop()
    emu, backend = await started("vllm")
    try:
        with pytest.raises(NotSupported):
            await backend.images({"model": "emu-model", "prompt": "a cat"})
        with pytest.raises(NotSupported):
            await backend.transcription(audio)
    finally:
        await backend.close()
        await emu.stop()


async def test_openai_kind_sends_the_key_and_reports_a_refused_one() -> None:
    async with OpenAIGenericEmulator(api_key="sk-test-123") as emu:
        good = KINDS["openai"](emu.url + "/v1", api_key="sk-test-123")
        bad = KINDS["openai"](emu.url, api_key="wrong")
        try:
            await good.refresh()
            assert good.status is BackendStatus.READY
            await bad.refresh()
            assert bad.status is BackendStatus.ERROR and "OPENAI_API_KEY" in bad.detail
            assert "sk-test-123" not in (bad.detail or "")
        finally:
            await good.close()
            await bad.close()


async def test_lm_studio_v1_listing_download_and_no_uninstall() -> None:
    async with LmStudioEmulator(api_versions=("v1",), download_steps=3) as emu:
        backend = KINDS["lmstudio"](emu.url)
        backend.poll_interval_s = 0.01
        try:
            await backend.refresh()
            assert backend.status is BackendStatus.READY
            assert backend.models[0].details["quantization"] == "Q4_K_M"
            events: list[InstallProgress] = []
            await backend.install("ibm/granite-4-micro", events.append)
            assert [e.phase for e in events] == [
                "starting",
                "downloading",
                "downloading",
                "downloading",
                "done",
            ]
            assert events[-1].bytes_done == events[-1].bytes_total == 3000
            assert backend.serves("ibm/granite-4-micro")
            events.clear()
            await backend.install("ibm/granite-4-micro", events.append)
            assert events[-1].detail == "already_downloaded"
            with pytest.raises(NotSupported, match="LM Studio app") as caught:
                await backend.uninstall("ibm/granite-4-micro")
            assert caught.value.http_status == 501
            emu.download_fails = True
            with pytest.raises(InstallError, match="failed"):
                await backend.install("other/model", events.append)
        finally:
            await backend.close()


async def test_speaches_install_codes_delete_and_transcription() -> None:
    async with SpeachesEmulator() as emu:
        backend = KINDS["speaches"](emu.url)
        try:
            await backend.refresh()
            assert backend.models[0].task.value == "transcription"
            events: list[InstallProgress] = []
            await backend.install("Systran/faster-whisper-large-v3", events.append)  # 200
            assert events[-1].phase == "done" and "downloaded" in events[-1].detail
            await backend.install("Systran/faster-whisper-large-v3", events.append)  # 201
            assert "already exists" in events[-1].detail
            assert backend.serves("Systran/faster-whisper-large-v3")
            with pytest.raises(InstallError, match="not found"):
                await backend.install("nobody/nothing", events.append)
            with pytest.raises(InstallError, match="gated"):
                await backend.install("pyannote/speaker-diarization-3.1", events.append)
            audio = TranscriptionRequest("Systran/faster-whisper-large-v3", "a.wav", b"1234")
            assert (await backend.transcription(audio))["text"].startswith("transcribed 4 bytes")
            verbose = TranscriptionRequest(
                "Systran/faster-whisper-small",
                "a.wav",
                b"1",
                fields={"response_format": "verbose_json"},
            )
            assert "segments" in await backend.transcription(verbose)
            await backend.uninstall("Systran/faster-whisper-large-v3")
            assert not backend.serves("Systran/faster-whisper-large-v3")
            with pytest.raises(InstallError, match="not found"):
                await backend.uninstall("Systran/faster-whisper-large-v3")
            with pytest.raises(BackendFailed, match="not installed"):
                await backend.transcription(audio)
            with pytest.raises(NotSupported):
                await backend.chat({"model": "x", "messages": USER})
        finally:
            await backend.close()


async def test_vllm_emulator_default_includes_usage_for_empty_stream_options() -> None:
    async with VllmEmulator() as emu:
        backend = KINDS["vllm"](emu.url)
        try:
            await backend.refresh()
            body = {"model": "emu-model", "messages": USER, "stream_options": {}}
            chunks = [c async for c in backend.chat_stream(body)]
            assert chunks[-1].usage is not None
            assert chunks[-2].finish_reason == "stop"  # on the last content chunk (vLLM style)
        finally:
            await backend.close()

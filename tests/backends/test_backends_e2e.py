"""End to end: the ``openai`` client → sandbox ingress → WSS link → a real Worker (discovery on,
explicit endpoints) → each emulated backend kind, and back. In process: real servers on
127.0.0.1 throughout; only the inference servers are emulators."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import openai
import pytest

from tests.emulators import EMULATORS, OllamaEmulator, OllamaModel, SpeachesEmulator
from worker.keys import generate_key
from worker.runtime import Worker
from worker.sandbox import SandboxConfig, build_app, serve
from worker.sandbox.app import HUB_KEY, bound_port
from worker.settings import BACKEND_KINDS, load_settings

pytestmark = pytest.mark.timeout(90)
CHAT_KINDS = ["lmstudio", "vllm", "llamacpp", "tgi", "sglang", "localai", "openai"]


async def wait_for(predicate: Any, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_openai_client_reaches_every_kind_through_the_sandbox() -> None:
    emus: dict[str, Any] = {k: EMULATORS[k](models=[f"{k}-model"]) for k in CHAT_KINDS}
    emus["ollama"] = OllamaEmulator([OllamaModel("llama3.2:latest", context_length=65536)])
    emus["speaches"] = SpeachesEmulator()
    for emu in emus.values():
        await emu.start()
    key = generate_key()
    config = SandboxConfig(
        api_key="sk-e2e",
        accepted_keys={key.public_key},
        catalogue={"version": 1, "models": []},
        versions=(1,),
        extra_files={},
    )
    app = build_app(config)
    runner = await serve(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{bound_port(runner)}"
    env = {
        **os.environ,
        "PENDRA_API_URL": base,
        "PENDRA_BUILTIN": "false",
        "PENDRA_HEARTBEAT_INTERVAL": "1",
    }
    env.update({f"{k.upper()}_ENDPOINT": emus[k].url for k in BACKEND_KINDS})
    worker = Worker(load_settings(env), key)
    task = asyncio.create_task(worker.run())
    api = openai.AsyncOpenAI(base_url=base + "/v1", api_key="sk-e2e", max_retries=0)
    try:
        await wait_for(lambda: bool(app[HUB_KEY].workers) or task.done(), "the worker")
        assert not task.done(), task
        listed: set[str] = set()
        for _ in range(100):  # models are advertised once the link is up
            listed = {m.id for m in (await api.models.list()).data}
            if "lmstudio-model" in listed:
                break
            await asyncio.sleep(0.05)
        for kind in CHAT_KINDS:
            rows = [(b["name"], b["status"], b["detail"]) for b in worker.status()["backends"]]
            assert f"{kind}-model" in listed, rows
            reply = await api.chat.completions.create(
                model=f"{kind}-model", messages=[{"role": "user", "content": "hi you"}]
            )
            assert reply.choices[0].message.content == "Echo: hi you", kind
            stream = await api.chat.completions.create(
                model=f"{kind}-model", messages=[{"role": "user", "content": "hi you"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text == "Echo: hi you", kind
        reply = await api.chat.completions.create(
            model="llama3.2:latest", messages=[{"role": "user", "content": "hi you"}]
        )
        assert reply.choices[0].message.content == "Echo: hi you"
        assert emus["ollama"].bodies("/api/chat")[-1]["options"]["num_ctx"] == 65536
        emb = await api.embeddings.create(model="vllm-model", input="a b")
        assert len(emb.data[0].embedding) == 8
        with pytest.raises(openai.APIStatusError) as caught:
            await api.embeddings.create(model="tgi-model", input="a b")
        assert caught.value.status_code == 501
        text = await api.audio.transcriptions.create(
            model="Systran/faster-whisper-small", file=("a.wav", b"RIFF1234")
        )
        assert text.text == "transcribed 8 bytes of a.wav"
    finally:
        await api.close()
        worker.request_stop()
        await asyncio.wait_for(task, 30)
        await runner.cleanup()
        for emu in emus.values():
            await emu.stop()

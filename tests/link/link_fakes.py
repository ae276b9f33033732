"""A fast, deterministic backend and the in-process sandbox + worker plumbing the link tests share.

The fake backend stands in for a model only where the test is about the link (64 concurrent
streams, cancellation, drain timing): the sandbox, the WebSocket link, the router and the worker
runtime around it are all the real ones, on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from worker.backends.base import (
    Backend,
    BackendStatus,
    Capabilities,
    InstallProgress,
    ModelInfo,
    StreamChunk,
    Task,
    Usage,
)
from worker.errors import InstallError
from worker.keys import WorkerKey, generate_key
from worker.runtime import Worker
from worker.sandbox import SandboxConfig, build_app, serve
from worker.sandbox.app import HUB_KEY, bound_port
from worker.sandbox.hub import WorkerHub
from worker.settings import BACKEND_KINDS, load_settings

FAKE_MODEL = "fake-chat"
FAKE_EMBED = "fake-embed"


def expected_words(prompt: str, n: int) -> list[str]:
    return [f"{prompt}-{i}" for i in range(n)]


class FakeBackend(Backend):
    """Echo backend: streams ``n`` words derived from the prompt, ``delay_s`` apart."""

    kind: ClassVar[str] = "fake"
    capabilities: ClassVar[Capabilities] = Capabilities(
        chat=True, embeddings=True, install=True, uninstall=True
    )

    def __init__(
        self, *, words: int = 5, delay_s: float = 0.0, gate: asyncio.Event | None = None
    ) -> None:
        super().__init__(None)
        self.words = words
        self.delay_s = delay_s
        self.gate = gate
        """When given, every stream waits for it before its first word (all stay in flight)."""
        self.started = 0
        self.closed_early = 0
        self.finished = 0
        self.installed: list[str] = []

    async def refresh(self) -> None:
        self.models = [
            ModelInfo(FAKE_MODEL, Task.CHAT, 4096),
            ModelInfo(FAKE_EMBED, Task.EMBEDDING, 512),
            *(ModelInfo(ref, Task.CHAT, 2048) for ref in self.installed),
        ]
        self.mark(BackendStatus.READY)

    @staticmethod
    def _prompt(body: dict[str, Any]) -> str:
        return str(body["messages"][-1]["content"])

    def _count(self, body: dict[str, Any]) -> int:
        return int(body.get("max_tokens") or self.words)

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        words = expected_words(self._prompt(body), self._count(body))
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(words)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 1,
                "completion_tokens": len(words),
                "total_tokens": 1 + len(words),
            },
        }

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        self.started += 1
        words = expected_words(self._prompt(body), self._count(body))
        done = False
        try:
            if self.gate is not None:
                await self.gate.wait()
            for i, word in enumerate(words):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                content = word if i == 0 else " " + word
                yield StreamChunk(json.dumps(_chunk(body["model"], {"content": content}, None)))
            yield StreamChunk(
                json.dumps(_chunk(body["model"], {}, "stop")),
                usage=Usage(1, len(words)),
                finish_reason="stop",
            )
            done = True
            self.finished += 1
        finally:
            if not done:
                self.closed_early += 1

    async def install(self, model_ref: str, progress: Any) -> None:
        for done in (0, 50, 100):
            result = progress(InstallProgress("downloading", done, 100))
            if asyncio.iscoroutine(result):
                await result
        self.installed.append(model_ref)

    async def uninstall(self, model_ref: str) -> None:
        if model_ref not in self.installed:
            raise InstallError(f"{model_ref} is not installed")
        self.installed.remove(model_ref)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return {
            "object": "list",
            "model": body["model"],
            "data": [
                {"object": "embedding", "index": i, "embedding": [float(len(text)), 1.0, 0.5]}
                for i, text in enumerate(inputs)
            ],
            "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
        }


def _chunk(model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


@dataclass
class Sandbox:
    runner: web.AppRunner
    app: web.Application
    key: WorkerKey
    api_key: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hub(self) -> WorkerHub:
        return self.app[HUB_KEY]

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_sandbox(
    key: WorkerKey | None = None,
    *,
    port: int = 0,
    versions: tuple[int, ...] = (1,),
    catalogue: dict[str, Any] | None = None,
) -> Sandbox:
    key = key if key is not None else generate_key()
    config = SandboxConfig(
        api_key="sk-test-sandbox",
        accepted_keys={key.public_key},
        catalogue=catalogue or {"version": 1, "models": [{"id": "known-model", "variants": []}]},
        versions=versions,
        extra_files={},
    )
    app = build_app(config)
    runner = await serve(app, "127.0.0.1", port)
    return Sandbox(runner, app, key, config.api_key, bound_port(runner))


def worker_settings(api_url: str, **env: str):  # type: ignore[no-untyped-def]
    environ = {
        "PENDRA_API_URL": api_url,
        "PENDRA_HEARTBEAT_INTERVAL": "1",
        **{f"{kind.upper()}_ENDPOINT": "off" for kind in BACKEND_KINDS},
        **env,
    }
    import os

    return load_settings({**os.environ, **environ})


async def wait_for(predicate: Any, timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class RunningWorker:
    worker: Worker
    task: asyncio.Task[int]

    async def stop(self) -> int:
        self.worker.request_stop()
        return await asyncio.wait_for(self.task, 30)


async def start_worker(
    sandbox: Sandbox, backend: Backend, key: WorkerKey | None = None, **kwargs: Any
) -> RunningWorker:
    settings = worker_settings(sandbox.url, **kwargs.pop("env", {}))
    worker = Worker(settings, key or sandbox.key, backends=[backend], **kwargs)
    task = asyncio.create_task(worker.run())
    await wait_for(
        lambda: (sandbox.hub.workers and worker.state == "connected") or task.done(),
        what="the worker to connect",
    )
    if task.done():
        task.result()
    return RunningWorker(worker, task)


async def send_command(sandbox: Sandbox, frame: Any, timeout_s: float = 10.0) -> list[Any]:
    """Send an install/uninstall command to the first connected worker; every frame it answers
    with, up to and including the first that is not a progress frame."""
    from worker.protocol import InstallProgressFrame
    from worker.sandbox.hub import Channel

    connection = next(iter(sandbox.hub.workers.values()))
    channel = Channel(connection, frame.id)
    connection.channels[frame.id] = channel
    await connection.send(frame.dump())
    frames: list[Any] = []
    while True:
        got = await channel.next(timeout_s)
        frames.append(got)
        if not isinstance(got, InstallProgressFrame):
            return frames

"""Plumbing the reliability battery shares: a real sandbox, a real Worker, SSE clients, counters.

Everything here is the product's own parts on 127.0.0.1 — the sandbox's WebSocket hub and OpenAI
ingress, ``worker.runtime.Worker`` with discovery of explicitly configured backends, the router and
the link. Only the inference servers are the project's emulators (``tests.emulators``), because no
real vLLM/Ollama can run here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from aiohttp import web

from worker.keys import WorkerKey, generate_key
from worker.runtime import Worker
from worker.sandbox import SandboxConfig, build_app, serve
from worker.sandbox.app import HUB_KEY, bound_port
from worker.sandbox.hub import WorkerHub
from worker.settings import BACKEND_KINDS, Settings, load_settings

API_KEY = "sk-reliability"
"""The sandbox ingress key the battery's clients send (not the worker key)."""


async def wait_for(
    predicate: Callable[[], bool], what: str, timeout_s: float = 15.0, step_s: float = 0.02
) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(step_s)


def open_fds(pid: int | None = None) -> int:
    """File descriptors a process holds now (Linux /proc)."""
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))


def tcp_fds_on_port(port: int, pid: int | None = None) -> int:
    """Descriptors of a process's connected TCP sockets with ``port`` at either end (not listeners).

    Pooled keep-alive HTTP connections come and go with the pool's own policy; leak checks count
    them apart from every other descriptor.
    """
    process = psutil.Process(pid or os.getpid())
    return sum(
        1
        for conn in process.net_connections(kind="tcp")
        if conn.fd != -1
        and conn.status != psutil.CONN_LISTEN
        and (conn.laddr.port == port or (conn.raddr and conn.raddr.port == port))
    )


def live_tasks() -> int:
    return len(asyncio.all_tasks())


@dataclass
class Sandbox:
    runner: web.AppRunner
    app: web.Application
    key: WorkerKey
    url: str

    @property
    def hub(self) -> WorkerHub:
        return self.app[HUB_KEY]

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_sandbox(key: WorkerKey | None = None, port: int = 0) -> Sandbox:
    key = key if key is not None else generate_key()
    config = SandboxConfig(
        api_key=API_KEY,
        accepted_keys={key.public_key},
        catalogue={"version": 1, "models": []},
        versions=(1,),
        extra_files={},
    )
    app = build_app(config)
    runner = await serve(app, "127.0.0.1", port)
    return Sandbox(runner, app, key, f"http://127.0.0.1:{bound_port(runner)}")


def worker_environ(api_url: str, endpoints: Mapping[str, str], **extra: str) -> dict[str, str]:
    """An environment for a worker: these backend endpoints, every other kind off, no built-in."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_ENDPOINT")}
    env.update({f"{kind.upper()}_ENDPOINT": "off" for kind in BACKEND_KINDS})
    env.update({f"{kind.upper()}_ENDPOINT": url for kind, url in endpoints.items()})
    env.update(
        {
            "PENDRA_API_URL": api_url,
            "PENDRA_BUILTIN": "false",
            "PENDRA_HEARTBEAT_INTERVAL": "1",
            **extra,
        }
    )
    return env


@dataclass
class RunningWorker:
    worker: Worker
    task: asyncio.Task[int]

    async def stop(self) -> int:
        self.worker.request_stop()
        return await asyncio.wait_for(self.task, 30)


async def start_worker(
    sandbox: Sandbox, endpoints: Mapping[str, str], wanted: set[str], **extra: str
) -> RunningWorker:
    """A real Worker linked to ``sandbox``; returns once the sandbox routes ``wanted`` models."""
    settings: Settings = load_settings(worker_environ(sandbox.url, endpoints, **extra))
    worker = Worker(settings, sandbox.key)
    task = asyncio.create_task(worker.run(), name="worker-under-test")

    def ready() -> bool:
        if task.done():
            return True
        served = {m["id"] for m in sandbox.hub.models()}
        return wanted <= served

    await wait_for(ready, f"the worker to serve {sorted(wanted)}", timeout_s=30)
    if task.done():
        task.result()
    return RunningWorker(worker, task)


def chat_body(model: str, text: str, stream: bool = True) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}


@dataclass
class StreamResult:
    """What a client saw of one streamed completion."""

    status: int
    text: str = ""
    chunks: int = 0
    error: dict[str, Any] | None = None
    done: bool = False
    raw_error: str = ""
    models: set[str] = field(default_factory=set)


async def stream_chat(
    client: httpx.AsyncClient,
    base: str,
    body: dict[str, Any],
    *,
    on_chunk: Callable[[int], Any] | None = None,
    max_chunks: int | None = None,
) -> StreamResult:
    """POST a streamed chat to the sandbox ingress and parse its SSE like an OpenAI client."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with client.stream(
        "POST", f"{base}/v1/chat/completions", json=body, headers=headers
    ) as response:
        result = StreamResult(response.status_code)
        if response.status_code != 200:
            raw = (await response.aread()).decode(errors="replace")
            result.raw_error = raw
            with contextlib.suppress(ValueError):
                result.error = json.loads(raw).get("error")
            return result
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                result.done = True
                break
            payload = json.loads(data)
            if "error" in payload:
                result.error = payload["error"]
                break
            result.chunks += 1
            if payload.get("model"):
                result.models.add(payload["model"])
            for choice in payload.get("choices") or []:
                result.text += (choice.get("delta") or {}).get("content") or ""
            if on_chunk is not None:
                outcome = on_chunk(result.chunks)
                if asyncio.iscoroutine(outcome):
                    await outcome
            if max_chunks is not None and result.chunks >= max_chunks:
                break
        return result


async def unary_chat(client: httpx.AsyncClient, base: str, model: str, text: str) -> httpx.Response:
    return await client.post(
        f"{base}/v1/chat/completions",
        json=chat_body(model, text, stream=False),
        headers={"Authorization": f"Bearer {API_KEY}"},
    )


def echo_of(text: str) -> str:
    """What the emulators answer to a user message ``text`` (tests/emulators/openai_surface.py)."""
    return f"Echo: {text}"


def rss_bytes(pid: int | None = None) -> int:
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0

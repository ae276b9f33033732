"""In-process plumbing for the private-inference tests: a real sandbox accepting several workers,
real workers (each with its own PENDRA_HOME, so its own workload key), and the official SDK.

The model behind the worker is the link tests' echo backend where a test is about the relay (it
answers with words derived from the prompt, which makes leaks easy to look for); the tests with
the real Gemma model run the processes a user runs (test_pi_processes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pendra

from tests.link.link_fakes import RunningWorker, wait_for, worker_settings
from worker.backends.base import Backend
from worker.keys import WorkerKey, generate_key
from worker.runtime import Worker
from worker.sandbox import SandboxConfig, build_app, serve
from worker.sandbox.app import HUB_KEY, bound_port
from worker.sandbox.hub import WorkerHub

API_KEY = "sk-private-tests"


@dataclass
class Sandbox:
    runner: Any
    app: Any
    keys: list[WorkerKey]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hub(self) -> WorkerHub:
        return self.app[HUB_KEY]

    def registered_kids(self) -> set[str]:
        return {kid for w in self.hub.workers.values() for kid in w.workload_keys}

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_sandbox(workers: int = 1, *, port: int = 0) -> Sandbox:
    keys = [generate_key() for _ in range(workers)]
    config = SandboxConfig(
        api_key=API_KEY,
        accepted_keys={k.public_key for k in keys},
        catalogue={"version": 1, "models": []},
        extra_files={},
    )
    app = build_app(config)
    runner = await serve(app, "127.0.0.1", port)
    return Sandbox(runner, app, keys, bound_port(runner))


async def start_worker(
    sandbox: Sandbox, backend: Backend, home: Path, *, index: int = 0, **env: str
) -> RunningWorker:
    """A worker linked to ``sandbox`` once its workload key is registered there."""
    import asyncio

    home.mkdir(parents=True, exist_ok=True)
    settings = worker_settings(sandbox.url, PENDRA_HOME=str(home), **env)
    worker = Worker(settings, sandbox.keys[index], backends=[backend])
    task = asyncio.create_task(worker.run())

    def ready() -> bool:
        if task.done():
            return True
        current = worker.private.current
        connection = sandbox.hub.workers.get(sandbox.keys[index].worker_id)
        if current is None or connection is None:
            return settings.private_inference is False and connection is not None
        return current.kid in connection.workload_keys

    await wait_for(ready, what="the worker to register its workload key")
    if task.done():
        task.result()
    return RunningWorker(worker, task)


def sdk(sandbox: Sandbox, tmp_path: Path, **private: Any) -> pendra.AsyncPendra:
    """The official async SDK with private inference on (its trust store under ``tmp_path``)."""
    options: dict[str, Any] = {"tofu_path": str(tmp_path / "known_org_keys.json"), **private}
    return pendra.AsyncPendra(
        api_key=API_KEY, base_url=sandbox.url, timeout=30, private_inference=options
    )

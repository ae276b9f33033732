"""A real AdminTarget for the admin API tests: an in-memory worker with a real EventBus and a real
log handler, whose installs progress in steps and publish "install" events as the real install
manager does. It stands in for worker.runtime.Worker, which composes the real parts."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

from worker import __version__
from worker.admin.log_events import EventLogHandler
from worker.errors import BadRequest, InstallError
from worker.events import EventBus

log = logging.getLogger("pendra.test.worker")


class TestWorker:
    __test__ = False  # not a test class, despite the name

    def __init__(self, *, install_steps: int = 4, step_s: float = 0.01) -> None:
        self.events = EventBus()
        self.log_handler = EventLogHandler(self.events, tail_lines=100)
        self.state = "connected"
        self.started = time.monotonic()
        self.models: dict[str, list[dict[str, Any]]] = {
            "pendra": [{"id": "gemma3:270m", "context_length": 32768, "task": "chat"}],
        }
        self.installs: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.install_steps = install_steps
        self.step_s = step_s
        self.refreshes = 0
        self._ids = itertools.count(1)
        self.requests = {"in_flight": 1, "served": 1234, "failed": 2, "tokens_per_s": 41.5}

    def status(self) -> dict[str, Any]:
        return {
            "worker": {
                "state": self.state,
                "version": __version__,
                "uptime_s": time.monotonic() - self.started,
            },
            "backends": [
                {
                    "name": "pendra",
                    "endpoint": None,
                    "status": "ready",
                    "capabilities": {
                        "chat": True,
                        "embeddings": True,
                        "images": False,
                        "transcription": False,
                        "install": True,
                        "uninstall": True,
                    },
                    "models": self.models["pendra"],
                },
                {
                    "name": "ollama",
                    "endpoint": "http://localhost:11434",
                    "status": "unreachable",
                    "capabilities": {
                        "chat": True,
                        "embeddings": True,
                        "images": True,
                        "transcription": False,
                        "install": True,
                        "uninstall": True,
                    },
                    "models": [],
                },
            ],
            "gpus": [
                {
                    "index": 0,
                    "name": "NVIDIA H100 80GB HBM3",
                    "utilization": 37.0,
                    "memory_used": 2574 * 1024**2,
                    "memory_total": 81559 * 1024**2,
                    "temperature": 37.0,
                    "power_w": 80.1,
                }
            ],
            "installs": [
                {k: job[k] for k in ("id", "ref", "backend", "phase", "bytes_done", "bytes_total")}
                for job in self.installs.values()
            ],
            "requests": dict(self.requests),
        }

    async def install(self, ref: str, backend: str | None) -> dict[str, Any]:
        if ":" not in ref:
            raise BadRequest(f"{ref!r} is not a model reference", hint="use <id>:<tag>")
        backend = backend or "pendra"
        for job in self.installs.values():
            if job["ref"] == ref and job["backend"] == backend and job["phase"] != "done":
                return dict(job)
        job_id = f"job-{next(self._ids)}"
        job = {
            "id": job_id,
            "ref": ref,
            "backend": backend,
            "phase": "queued",
            "bytes_done": 0,
            "bytes_total": 1000 * self.install_steps,
        }
        self.installs[job_id] = job
        self.tasks[job_id] = asyncio.create_task(self._progress(job))
        log.info("install of %s on %s started", ref, backend)
        return dict(job)

    async def _progress(self, job: dict[str, Any]) -> None:
        try:
            for step in range(1, self.install_steps + 1):
                await asyncio.sleep(self.step_s)
                job.update(phase="downloading", bytes_done=1000 * step)
                self._publish(job)
            job["phase"] = "done"
            self.models[job["backend"]].append({"id": job["ref"], "context_length": 4096})
            self._publish(job)
        except asyncio.CancelledError:
            job["phase"] = "cancelled"
            self._publish(job)
            raise

    def _publish(self, job: dict[str, Any]) -> None:
        self.events.publish(
            "install",
            ref=job["ref"],
            backend=job["backend"],
            phase=job["phase"],
            bytes_done=job["bytes_done"],
            bytes_total=job["bytes_total"],
            rate_bps=None,
            eta_s=None,
            error=None,
        )

    async def cancel_install(self, job_id: str) -> dict[str, Any]:
        task = self.tasks.get(job_id)
        if task is None:
            raise InstallError(f"No install job {job_id!r}.", hint="see `pendra status`")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return dict(self.installs[job_id])

    def uninstall(self, ref: str, backend: str | None) -> dict[str, Any]:
        models = self.models.get(backend or "pendra", [])
        for model in models:
            if model["id"] == ref:
                models.remove(model)
                return {"ref": ref, "backend": backend or "pendra", "removed": True}
        raise InstallError(f"{ref} is not installed.", hint="see `pendra models`")

    async def refresh_backends(self) -> dict[str, Any]:
        self.refreshes += 1
        self.events.publish("backends", count=2)
        return {"backends": self.status()["backends"]}

    def drain(self) -> dict[str, Any]:
        self.state = "draining"
        self.events.publish("state", state="draining")
        return {"state": self.state}

    def log_tail(self, n: int) -> list[str]:
        return self.log_handler.tail(n)

"""Deterministic fakes of the app's services, for tests and the screenshot script.

Only what cannot run here is faked: the worker process behind the admin socket (its own engineer's
tests cover it; one pilot test runs the real one when available), the installer's host checks
(they read this CI box, so their output would differ between machines), the public control plane
(no internet) and the NVIDIA driver. The key store, the settings store and the config writer are
the real ones, on the test's own PENDRA_HOME.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from pendra_tui.backend_config import save_backend_choices
from pendra_tui.catalogue_rows import rows_from_catalogue
from pendra_tui.services import (
    BackendCandidate,
    CatalogueData,
    Check,
    ConfigFileSettings,
    KeyVerdict,
    Services,
    SettingsKeyStore,
)
from worker.errors import NoWorkerRunning, PendraError
from worker.settings import BACKEND_KINDS, load_settings

DATA = Path(__file__).parent / "data"
FAKE_KEY = (
    "Xb8JMjo6PAcYlVo+LA33j+yo0iMkvobV0EduTXjS65Fh2UvyRatfuc5xjk1cuEfWOTioMcpDRtxzuW7og74hcA=="
)
"""A real key in the console's form (fixed seed) that the fake control plane accepts; snapshot
tests assert it never shows."""
REJECTED_KEY = (
    "4Qyc8a6IyDP0k1EQr+W+ib6oA+reed3oCgBtp/oP/0X71LXp2xo2OJsJwK53dwFhSJn+TEQwlrf898pWDugpCA=="
)
"""Well-formed, but the fake control plane refuses it."""
OFFLINE_KEY = (
    "nd3hn+ksWgECaBWJm7Ze4GskM+wy78n0vRC+MW+V+BZXIMe9QrCadbDCVB6IxwBr6pilgDOlcUhT7EROUqTIDA=="
)
"""Well-formed; the fake control plane is unreachable for it."""


FAKE_WORKER_NAME = "gpu-box-01"


WALL_NOW = 1_767_225_600.0
"""The fake wall clock (2026-01-01 00:00 UTC): request ages and history times hang off it."""


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0, wall: float = WALL_NOW) -> None:
        self.now = now
        self.wall = wall

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += seconds


class FakeWorker:
    """The admin API of a worker: a status document, then scripted events, then silence."""

    def __init__(
        self,
        status: dict[str, Any] | None,
        events: list[dict[str, Any]] | None = None,
        logs: list[str] | None = None,
        history: dict[str, Any] | None = None,
        recent: list[dict[str, Any]] | None = None,
    ) -> None:
        self.doc = status
        self.scripted = list(events or [])
        self.log_lines = list(logs or [])
        self.history_doc = history
        """``None``: an older worker without the route (answers "not found")."""
        self.recent = list(recent or [])
        self.calls: list[tuple[Any, ...]] = []
        self.live: asyncio.Queue[dict[str, Any]] | None = None
        """Events a test pushes while the app runs (``push``)."""

    def _need(self) -> None:
        if self.doc is None:
            raise NoWorkerRunning()

    async def status(self) -> dict[str, Any]:
        self._need()
        return json.loads(json.dumps(self.doc))

    async def events(self, kinds: set[str] | None = None) -> AsyncIterator[dict[str, Any]]:
        self._need()
        self.live = asyncio.Queue()
        for event in self.scripted:
            yield event
        while True:
            event = await self.live.get()
            if event.get("kind") == "__close__":
                return
            yield event

    @contextlib.asynccontextmanager
    async def event_stream(
        self, kinds: set[str] | None = None
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        self._need()
        events = self.events(kinds)
        try:
            yield events
        finally:
            await events.aclose()

    def push(self, event: dict[str, Any]) -> None:
        assert self.live is not None, "the app is not following events yet"
        self.live.put_nowait(event)

    async def install(self, ref: str, backend: str | None = None) -> dict[str, Any]:
        self._need()
        self.calls.append(("install", ref, backend))
        return {"id": f"job-{len(self.calls)}", "ref": ref, "backend": backend or "pendra"}

    async def cancel_install(self, job_id: str) -> dict[str, Any]:
        self.calls.append(("cancel", job_id))
        return {}

    async def uninstall(self, ref: str, backend: str | None = None) -> dict[str, Any]:
        self._need()
        self.calls.append(("uninstall", ref, backend))
        return {}

    async def refresh_backends(self) -> dict[str, Any]:
        self._need()
        self.calls.append(("refresh",))
        return {}

    async def drain(self) -> dict[str, Any]:
        self._need()
        self.calls.append(("drain",))
        return {}

    async def logs(self, tail: int = 200) -> list[str]:
        self._need()
        return self.log_lines[-tail:]

    async def history(self) -> dict[str, Any]:
        self._need()
        if self.history_doc is None:
            raise PendraError("GET /v1/history: Not Found")
        return json.loads(json.dumps(self.history_doc))

    async def recent_requests(self, limit: int = 200) -> list[dict[str, Any]]:
        self._need()
        return json.loads(json.dumps(self.recent[:limit]))

    async def retry_link(self) -> dict[str, Any]:
        self._need()
        self.calls.append(("retry_link",))
        return {"retrying": True, "state": "connecting"}


VERDICTS = {
    "qwen3:8b": "gpu",
    "qwen3:32b": "partial",
    "gemma3:270m": "gpu",
    "gemma3:27b": "partial",
    "nomic-embed-text:v1.5": "gpu",
    "flux-schnell:12b": "cpu",
    "whisper:large-v3-turbo": "gpu",
}


class FakeCatalogue:
    def __init__(
        self,
        cached: bool = False,
        fail: bool = False,
        source: str = "control plane",
        stale_reason: str | None = None,
    ) -> None:
        self.cached = cached
        self.fail = fail
        self.source = source
        self.stale_reason = stale_reason

    async def load(self) -> CatalogueData:
        if self.fail:
            raise OSError("api.pendra.ai: network unreachable")
        return self.data()

    def data(self) -> CatalogueData:
        doc = json.loads((DATA / "catalogue.json").read_text())

        def judge(model: Any, variant: Any) -> str | None:
            return VERDICTS.get(f"{model['id']}:{variant['tag']}")

        return CatalogueData(
            rows_from_catalogue(doc["models"], judge),
            cached=self.cached,
            age_s=3 * 3600 + 120 if self.cached else None,
            source=self.source,
            stale_reason=self.stale_reason,
        )


PASSING_CHECKS = [
    Check("python", "Python 3.10 or newer", "ok", True, "Python 3.11.9"),
    Check("disk", "Free disk for models", "ok", True, "412.3 GB free in ~/.pendra/models"),
    Check("memory", "System memory", "ok", True, "64.0 GB"),
    Check("gpu", "NVIDIA driver", "ok", False, "driver 550.54, CUDA 12.4, 1 GPU"),
    Check(
        "llama",
        "llama-cpp-python build",
        "warn",
        False,
        "CPU build: models run slower",
        "re-run get.sh with a CUDA toolkit present to build the CUDA variant",
    ),
    Check("systemd", "systemd user services", "ok", False, "linger enabled"),
]
FAILING_CHECKS = [
    Check("python", "Python 3.10 or newer", "ok", True, "Python 3.11.9"),
    Check(
        "disk",
        "Free disk for models",
        "fail",
        True,
        "1.2 GB free in ~/.pendra/models",
        "free at least 10 GB or set PENDRA_MODELS_DIR to a bigger disk",
    ),
    Check("memory", "System memory", "ok", True, "64.0 GB"),
    Check(
        "gpu",
        "NVIDIA driver",
        "warn",
        False,
        "no NVIDIA driver found: models run on the CPU",
        "install the NVIDIA driver (e.g. `sudo apt install nvidia-driver-550`)",
    ),
]


MANY_CHECKS = [
    Check("os", "Operating system", "ok", True, "Debian GNU/Linux 12 (bookworm), x86_64"),
    Check("python", "Python", "ok", True, "Python 3.11.7"),
    Check(
        "config", "Configuration", "ok", True, "defaults (~/.pendra/config.yaml not created yet)"
    ),
    Check(
        "worker_key",
        "Worker key",
        "warn",
        False,
        "no worker key at ~/.pendra/worker.key yet: the worker cannot connect until it has one.",
        "paste it on the next step (or `pendra key set`)",
    ),
    Check(
        "llama_cpp", "Built-in backend (llama.cpp)", "ok", False, "llama-cpp-python 0.3.36, CUDA"
    ),
    Check("gpu", "GPU", "ok", False, "NVIDIA H100 80GB HBM3, driver 550.54, CUDA 12.4"),
    Check("docker_engine", "Docker Engine", "ok", False, "docker client 28.2.2"),
    Check(
        "docker_daemon",
        "Docker daemon",
        "warn",
        False,
        "the daemon is not running (only needed for backends in containers; the built-in "
        "backend works without it).",
        "sudo systemctl start docker",
    ),
    Check("docker_compose", "Docker Compose v2", "ok", False, "Docker Compose version v2.29.1"),
    Check("nvidia_container_toolkit", "NVIDIA Container Toolkit", "ok", False, "1.16.1"),
    Check(
        "disk",
        "Disk space for models",
        "fail",
        True,
        "3.1 GiB free for ~/.pendra/models (measured at /home): at least 10 GiB is needed for "
        "the smallest useful models.",
        "free some space, or set PENDRA_MODELS_DIR to a bigger disk (for example "
        "PENDRA_MODELS_DIR=/data/pendra-models) and press r",
    ),
    Check("service_manager", "Service manager", "ok", False, "systemd 252, user lingering on"),
    Check(
        "control_plane", "Control plane reachable", "ok", False, "api.pendra.ai answered in 84 ms"
    ),
]
"""Thirteen checks like this installer runs, the failing one among the last."""


class FakeChecks:
    def __init__(self, checks: list[Check]) -> None:
        self.checks = list(checks)
        self.runs = 0

    def run(self) -> list[Check]:
        self.runs += 1
        return list(self.checks)


class FakeVerifier:
    """Format: the worker's own parser. Live: refuses REJECTED_KEY, offline for OFFLINE_KEY."""

    def __init__(self) -> None:
        self.verified: list[str] = []
        self.servers: list[str | None] = []

    def check_format(self, key: str) -> str | None:
        from worker.keys import KeyProblem, parse_key

        try:
            parse_key(key)
        except KeyProblem as exc:
            return exc.one_line()
        return None

    async def verify(self, key: str, server_url: str | None = None) -> KeyVerdict:
        self.verified.append(key)
        self.servers.append(server_url)
        if key == REJECTED_KEY:
            return KeyVerdict(False, "unknown or revoked key")
        if key == OFFLINE_KEY:
            return KeyVerdict(None, "api.pendra.ai not reachable")
        return KeyVerdict(True, "accepted")


class FakeBackendProbe:
    """Discovery result scripted; saving is the real config writer."""

    def __init__(self, found: list[BackendCandidate], config_file: Path) -> None:
        self.found = found
        self.config_file = config_file
        self.verified: list[tuple[str, str]] = []

    async def discover(self) -> list[BackendCandidate]:
        return list(self.found)

    async def verify(self, kind: str, endpoint: str) -> BackendCandidate:
        self.verified.append((kind, endpoint))
        if endpoint == "http://gpu-box.lan:11434":
            return BackendCandidate(kind, endpoint, "ready", None, 4)
        return BackendCandidate(kind, endpoint, "unreachable", "connection refused")

    def save(self, endpoints: Mapping[str, str], builtin_enabled: bool) -> Path:
        save_backend_choices(self.config_file, endpoints, builtin_enabled)
        return self.config_file


class FakeLauncher:
    def __init__(self, worker: FakeWorker, status_after_start: dict[str, Any]) -> None:
        self.worker = worker
        self.after = status_after_start
        self.started = 0

    def plan(self) -> list[str]:
        return [
            "install and start the `pendra --no-ui` service (it survives logout and reboots)",
            "open the live dashboard once the worker answers",
        ]

    async def start(self) -> str:
        self.started += 1
        self.worker.doc = self.after
        return "service pendra-worker.service enabled and started"

    def restart_plan(self) -> str:
        return "start the installed systemd service again"

    async def restart(self) -> str:
        self.restarted = getattr(self, "restarted", 0) + 1
        self.worker.doc = self.after
        return "service started again (~/.config/systemd/user/pendra.service)"


class FakeDockerLauncher:
    """The "in Docker" choice: available (or not, with the daemon's reason), records its start."""

    def __init__(
        self, worker: FakeWorker, status_after_start: dict[str, Any], reason: str | None = None
    ) -> None:
        self.worker = worker
        self.after = status_after_start
        self.reason = reason
        self.started = 0
        self.progress_lines = ["building pendra-worker:0.1.0", "started pendra-worker-1"]

    def unavailable(self) -> str | None:
        return self.reason

    def has_worker_container(self) -> bool:
        return self.started > 0

    def restart_plan(self) -> str:
        return "start the worker's container again (`pendra stack up`)"

    async def restart(self) -> str:
        return await self.start()

    def plan(self) -> list[str]:
        return [
            "build the worker image from this installation and start its container "
            "(`pendra stack up`)",
            "open the live dashboard once the worker answers",
        ]

    async def start(self) -> str:
        return await self.start_with_progress(lambda _line: None)

    async def start_with_progress(self, progress: Callable[[str], None]) -> str:
        def run() -> None:
            for line in self.progress_lines:
                progress(line)

        await asyncio.to_thread(run)
        self.started += 1
        self.worker.doc = self.after
        return "the worker runs in Docker (container pendra-worker-1, connected)"


FOUND_BACKENDS = [
    BackendCandidate("ollama", "http://localhost:11434", "ready", None, 3),
    BackendCandidate("lmstudio", None, "unreachable", "nothing on :1234"),
    BackendCandidate("speaches", "http://localhost:8000", "ready", None, 1),
    BackendCandidate("vllm", None, "unreachable", None),
]


def make_services(
    *,
    worker: FakeWorker | None = None,
    checks: list[Check] | None = None,
    found: list[BackendCandidate] | None = None,
    catalogue: FakeCatalogue | None = None,
    clock: FakeClock | None = None,
    control_plane: str | None = None,
    docker_unavailable: str | None = None,
) -> Services:
    """Services for one scenario; PENDRA_HOME comes from the environment (the test's own). The
    worker name defaults to a fixed one instead of this machine's host name (snapshots);
    ``control_plane`` is the one configured (a local sandbox, say), unless the test set one."""
    from pendra_tui.setup_progress import FileSetupProgress
    from worker.settings import parse_control_plane_url

    settings = load_settings()
    if "worker_name" not in settings.sources:  # the host name: not the same on every machine
        settings = dataclasses.replace(settings, worker_name=FAKE_WORKER_NAME)
    if control_plane is not None and "api_url" not in settings.sources:
        settings = dataclasses.replace(settings, api_url=parse_control_plane_url(control_plane))
    worker = worker or FakeWorker(None)
    return Services(
        worker=worker,
        catalogue=catalogue or FakeCatalogue(),
        checks=FakeChecks(PASSING_CHECKS if checks is None else checks),
        keys=SettingsKeyStore(settings),
        verifier=FakeVerifier(),
        backends=FakeBackendProbe(FOUND_BACKENDS if found is None else found, settings.config_file),
        launcher=FakeLauncher(worker, running_status()),
        config=ConfigFileSettings(settings),
        clock=clock or FakeClock(),
        backend_kinds=BACKEND_KINDS,
        progress=FileSetupProgress(settings.home, settings.admin_socket),
        docker=FakeDockerLauncher(worker, running_status(), docker_unavailable),
    )


GIB = 2**30


def gpu_reading(index: int, util: float, mem_gib: float, total_gib: float = 80.0) -> dict[str, Any]:
    return {
        "index": index,
        "name": "NVIDIA H100 80GB HBM3",
        "utilization": util,
        "memory_used": int(mem_gib * GIB),
        "memory_total": int(total_gib * GIB),
        "temperature": 41.0 + util / 3,
        "power_w": 70.0 + util * 4,
    }


def running_status(
    gpus: int = 1, installs: bool = False, state: str = "connected"
) -> dict[str, Any]:
    """A DESIGN §6 status document of a busy worker."""
    doc: dict[str, Any] = {
        "worker": {
            "state": state,
            "version": "0.1.0",
            "uptime_s": 8040.0,
            "worker_id": "wrk-5f3a9c21d7e4",
            "worker_name": FAKE_WORKER_NAME,
            "private_inference": {
                "enabled": True,
                "fingerprint": "3f9a1c2b7d4e5f60" + "0" * 48,
                "in_flight": 0,
                "served": 1204,
                "failed": 0,
            },
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
                "models": [
                    {"id": "gemma3:270m", "context_length": 32768, "size_bytes": 253_114_624},
                    {"id": "qwen3:8b", "context_length": 32768, "size_bytes": 5_027_783_488},
                    {"id": "phi4-mini:3.8b", "context_length": 131072, "size_bytes": 2_491_874_688},
                ],
                "loaded": LOADED,
                "unusable": [
                    {
                        "file": "llama-2-7b.Q4_0.bin",
                        "id": "llama-2-7b.Q4_0",
                        "error": "not a GGUF file (GGML .bin from before 2023): convert it or "
                        "download the GGUF",
                    }
                ],
            },
            {
                "name": "ollama",
                "endpoint": "http://localhost:11434",
                "status": "ready",
                "capabilities": {
                    "chat": True,
                    "embeddings": True,
                    "images": True,
                    "transcription": False,
                    "install": True,
                    "uninstall": True,
                },
                "models": [
                    {"id": "llama3.2:3b"},
                    {"id": "nomic-embed-text:v1.5"},
                    {"id": "flux-schnell:12b"},
                ],
            },
            {
                "name": "speaches",
                "endpoint": "http://localhost:8000",
                "status": "unreachable",
                "capabilities": {
                    "chat": False,
                    "embeddings": False,
                    "images": False,
                    "transcription": True,
                    "install": True,
                    "uninstall": True,
                },
                "models": [],
            },
        ],
        "gpus": [gpu_reading(i, 35.0 + 20 * i, 22.5 + 10 * i) for i in range(gpus)],
        "installs": [],
        "requests": {
            "in_flight": 2,
            "served": 12873,
            "failed": 14,
            "cancelled": 3,
            "tokens_total": 2_310_400,
            "tokens_per_s": 184.6,
        },
        "host": HOST,
    }
    if installs:
        doc["installs"] = [
            {
                "ref": "qwen3:32b",
                "backend": "pendra",
                "phase": "downloading",
                "id": "job-1",
                "bytes_done": 7_905_000_000,
                "bytes_total": 19_762_149_376,
                "rate_bps": 48_200_000.0,
                "eta_s": 246.0,
            },
            {
                "ref": "gemma3:27b",
                "backend": "ollama",
                "phase": "queued",
                "id": "job-2",
                "bytes_done": 0,
                "bytes_total": None,
            },
        ]
    return doc


LOADED: list[dict[str, Any]] = [
    {
        "id": "qwen3:8b",
        "pid": None,
        "state": "ready",
        "weights_bytes": 5_027_783_488,
        "kv_type": "f16",
        "kv_tokens": 32768,
        "kv_bytes": 4_831_838_208,
        "kv_tokens_in_use": 9216,
        "context_length": 32768,
        "slots": 4,
        "slots_in_use": 2,
        "queued": 1,
        "idle_unload_in_s": None,
    },
    {
        "id": "gemma3:270m",
        "pid": None,
        "state": "ready",
        "weights_bytes": 253_114_624,
        "kv_type": "q8_0",
        "kv_tokens": 32768,
        "kv_bytes": 100_663_296,
        "kv_tokens_in_use": 0,
        "context_length": 32768,
        "slots": 4,
        "slots_in_use": 0,
        "queued": 0,
        "idle_unload_in_s": 252.0,
    },
]
"""The built-in backend's loaded models, in the shape its status entry has."""

HOST: dict[str, Any] = {
    "cpu_percent": 23.5,
    "cpu_count": 16,
    "load_1m": 3.2,
    "memory_used": 19 * GIB,
    "memory_total": 64 * GIB,
    "process_rss": int(1.4 * GIB),
    "process_cpu_percent": 11.0,
    "process_threads": 23,
    "pid": 4242,
}

HISTORY_SAMPLES = 150
"""Five minutes at the worker's 2 s interval."""


def _wave(step: int, period: int, phase: float = 0.0) -> float:
    """A deterministic 0..1 triangle wave."""
    x = ((step + phase * period) % period) / period
    return 1 - abs(2 * x - 1)


def history_doc(gpus: int, samples: int = HISTORY_SAMPLES) -> dict[str, Any]:
    """A worker's metrics history with a recognisable shape in every plot (deterministic):
    traffic that rises and falls, an idle gap with the rate at 0, GPUs following it."""
    out = []
    for step in range(samples):
        ts = WALL_NOW - 2.0 * (samples - 1 - step)
        idle = 95 <= step < 115
        busy = 0.0 if idle else _wave(step, 60)
        rate = round(40 + 300 * busy, 1) if not idle else 0.0
        in_flight = 0 if idle else 1 + round(5 * _wave(step, 36, 0.3))
        out.append(
            {
                "ts": ts,
                "tokens_per_s": rate if step < samples - 1 else 184.6,
                "in_flight": in_flight if step < samples - 1 else 2,
                "served": 12_000 + step * 6,
                "failed": 14,
                "cancelled": 3,
                "tokens_total": 2_000_000 + step * 2000,
                "gpus": [
                    {
                        "index": i,
                        "utilization": round(min(100.0, 5 + 90 * busy * (1 - 0.25 * i)), 1),
                        "memory_used": int((22.5 + 10 * i + 8 * busy) * GIB),
                        "memory_total": 80 * GIB,
                    }
                    for i in range(gpus)
                ],
                "host": {
                    **HOST,
                    "cpu_percent": round(8 + 60 * busy, 1),
                    "memory_used": int((17 + 3 * busy) * GIB),
                },
            }
        )
    return {"interval_s": 2.0, "window_s": 900.0, "samples": out}


def recent_requests() -> list[dict[str, Any]]:
    """Request records, newest first, as the worker sends them (metadata only)."""
    rows = [
        ("r9", "qwen3:8b", "pendra", "running", None, 812, None, 0.21, None, None, 3),
        ("r8", "qwen3:8b", "pendra", "running", None, 96, None, 0.18, None, None, 5),
        ("r7", "llama3.2:3b", "ollama", "ok", None, 233, 512, 0.094, 71.2, 7.29, 12),
        ("r6", "gemma3:270m", "pendra", "ok", None, 18, 48, 0.041, 61.3, 0.825, 31),
        ("r5", "nomic-embed-text:v1.5", "ollama", "ok", None, 64, 0, None, None, 0.032, 44),
        ("r4", "qwen3:8b", "pendra", "cancelled", None, 1210, 87, 0.33, 38.1, 2.61, 70),
        ("r3", "qwen3:32b", None, "failed", "model_not_found", None, None, None, None, 0.002, 95),
        ("r2", "qwen3:8b", "pendra", "ok", None, 402, 1024, 0.27, 44.9, 23.07, 160),
        ("r1", "gemma3:270m", "pendra", "ok", None, 22, 64, 0.052, 58.8, 1.14, 240),
    ]
    return [
        {
            "id": rid,
            "kind": "embeddings" if "embed" in model else "chat",
            "model": model,
            "backend": backend,
            "stream": "embed" not in model,
            "status": status,
            "error": error,
            "started_at": WALL_NOW - age,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "ttft_s": ttft,
            "tokens_per_s": rate,
            "duration_s": duration,
        }
        for (
            rid,
            model,
            backend,
            status,
            error,
            tokens_in,
            tokens_out,
            ttft,
            rate,
            duration,
            age,
        ) in rows
    ]


LOG_LINES = [
    "2026-01-01 00:00:00 INFO    pendra.link: connected to wss://api.pendra.ai/ws/gpu",
    "2026-01-01 00:00:01 INFO    pendra.backends: found ollama at http://localhost:11434 "
    "(3 models)",
    "2026-01-01 00:00:02 DEBUG   pendra.gpu: GPU telemetry from nvml",
    "2026-01-01 00:00:09 WARNING pendra.backends: speaches at http://localhost:8000 stopped "
    "answering: connection refused",
    "2026-01-01 00:01:12 INFO    worker.backends.pendra: loaded qwen3:8b in 2.1 s (4 slots)",
    "2026-01-01 00:03:40 ERROR   worker.installs: gemma3:27b on ollama failed: disk full",
    "2026-01-01 00:04:58 INFO    worker.backends.pendra: loaded gemma3:270m in 0.3 s (4 slots)",
]


def dashboard_worker(
    gpus: int = 1,
    installs: bool = False,
    state: str = "connected",
    *,
    history: bool = True,
    logs: list[str] | None = None,
) -> FakeWorker:
    return FakeWorker(
        running_status(gpus=gpus, installs=installs, state=state),
        logs=LOG_LINES if logs is None else logs,
        history=history_doc(gpus) if history else None,
        recent=recent_requests(),
    )

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
from worker.errors import NoWorkerRunning
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


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


class FakeWorker:
    """The admin API of a worker: a status document, then scripted events, then silence."""

    def __init__(
        self,
        status: dict[str, Any] | None,
        events: list[dict[str, Any]] | None = None,
        logs: list[str] | None = None,
    ) -> None:
        self.doc = status
        self.scripted = list(events or [])
        self.log_lines = list(logs or [])
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
    def __init__(self, cached: bool = False, fail: bool = False) -> None:
        self.cached = cached
        self.fail = fail

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
    docker_unavailable: str | None = None,
) -> Services:
    """Services for one scenario; PENDRA_HOME comes from the environment (the test's own). The
    worker name defaults to a fixed one instead of this machine's host name (snapshots)."""
    settings = load_settings()
    if "worker_name" not in settings.sources:  # the host name: not the same on every machine
        settings = dataclasses.replace(settings, worker_name=FAKE_WORKER_NAME)
    worker = worker if worker is not None else FakeWorker(None)
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


UNUSABLE_FILES = [
    {
        "file": "llama-3-8b-instruct.Q4_K_M.gguf",
        "id": "llama-3-8b-instruct",
        "task": "chat",
        "size_bytes": 1_073_741_824,
        "error": "truncated: the tensors need 4.92 GB, the file has 1.07 GB",
    },
    {
        "file": "notes.gguf",
        "id": "notes",
        "task": None,
        "size_bytes": 1024,
        "error": "not a GGUF file (bad magic)",
    },
]
"""Modelstore files the built-in backend does not serve (status ``backends[].unusable``)."""


def running_status(
    gpus: int = 1, installs: bool = False, state: str = "connected", unusable: bool = False
) -> dict[str, Any]:
    """A docs/status.md status document of a busy worker."""
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
                    {"id": "gemma3:270m", "context_length": 32768},
                    {"id": "qwen3:8b", "context_length": 32768},
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
        "requests": {"in_flight": 2, "served": 12873, "failed": 14, "tokens_per_s": 184.6},
    }
    if unusable:
        doc["backends"][0]["unusable"] = UNUSABLE_FILES
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


def gpu_history_events(gpus: int, samples: int = 40) -> list[dict[str, Any]]:
    """GPU events that draw a recognisable shape in the sparklines (deterministic)."""
    events = []
    for step in range(samples):
        wave = (step % 20) / 19
        events.append(
            {
                "kind": "gpu",
                "gpus": [
                    gpu_reading(
                        i,
                        round(10 + 80 * abs(wave - 0.5) * 2 * (1 - i * 0.3), 1),
                        20 + 30 * wave + 8 * i,
                    )
                    for i in range(gpus)
                ],
            }
        )
    return events


LOG_LINES = [
    "INFO    pendra.link: connected to wss://api.pendra.ai/ws/gpu",
    "INFO    pendra.backends: found ollama at http://localhost:11434 (3 models)",
    "WARNING pendra.backends: speaches at http://localhost:8000 stopped answering",
    "INFO    pendra.router: chat qwen3:8b → pendra 212 tokens in 1.1 s",
]


def dashboard_worker(
    gpus: int = 1, installs: bool = False, state: str = "connected", unusable: bool = False
) -> FakeWorker:
    return FakeWorker(
        running_status(gpus=gpus, installs=installs, state=state, unusable=unusable),
        events=gpu_history_events(gpus) if gpus else [],
        logs=LOG_LINES,
    )

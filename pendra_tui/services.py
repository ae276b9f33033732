"""What the app needs from the outside world, as Protocols, and the real implementations.

The app never reaches past these: the worker only through the admin API client, the host checks
through ``installer.checks``, the catalogue through the running worker (or ``worker.catalogue``
when none runs). Tests inject fakes (they live in ``tests/tui/``); :func:`real_services` builds
the real ones for ``pendra``.

Real adapters import their modules inside methods: the app starts fast, and a module that is
missing or broken in an install shows up as a clear message on the screen that needs it, not as a
crash at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pendra_tui.catalogue_rows import CatalogueRow, rows_from_catalogue

if TYPE_CHECKING:
    from worker.settings import Settings


# -- data the services hand to the app ---------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One prerequisite check (mirror of ``installer.checks.CheckResult``)."""

    id: str
    title: str
    status: str
    """"ok", "warn" or "fail"."""
    required: bool
    detail: str = ""
    fix: str | None = None

    @property
    def blocks(self) -> bool:
        """A required check that failed: setup cannot continue."""
        return self.required and self.status == "fail"


@dataclass(frozen=True)
class KeyVerdict:
    """Result of the live key check: ``accepted`` is None when the control plane was unreachable."""

    accepted: bool | None
    message: str


@dataclass(frozen=True)
class SavedKey:
    """Where the key step stored the key, where the key it replaced went, and notes for the user
    (``worker.keys.store_key``'s: which setting wins, which file is no longer read)."""

    path: Path
    backup: Path | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BackendCandidate:
    """A backend as the Backends screen shows it."""

    kind: str
    endpoint: str | None
    status: str
    """"ready", "unreachable", "disabled" or "error"."""
    detail: str | None = None
    models: int = 0


@dataclass(frozen=True)
class CatalogueData:
    """The catalogue as rows, where it came from, and whether it is a cached copy (offline)."""

    rows: list[CatalogueRow]
    cached: bool = False
    age_s: float | None = None
    source: str = "control plane"
    """``"worker"`` (through the running worker) or ``"control plane"`` (no worker answered:
    fetched by the app, or this home's cached copy); ``pendra_tui.catalogue_source``."""
    stale_reason: str | None = None
    """Why a cached copy is shown instead of a fresh one."""


# -- protocols ---------------------------------------------------------------------------------


@runtime_checkable
class Clock(Protocol):
    """Time, injectable so snapshots and uptimes are deterministic."""

    def monotonic(self) -> float: ...

    def time(self) -> float:
        """Unix time: the ages of request records."""
        ...


class WorkerClient(Protocol):
    """The admin API of the running worker (``worker.admin.client.AdminClient``).

    Every method raises ``worker.errors.NoWorkerRunning`` when no worker listens.
    """

    async def status(self) -> dict[str, Any]: ...

    def events(self, kinds: set[str] | None = None) -> AsyncIterator[dict[str, Any]]: ...

    def event_stream(
        self, kinds: set[str] | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]:
        """Subscribed on entry: every event published after that is in the stream. The dashboard
        enters it *before* asking for the status document, so nothing falls between the two."""
        ...

    async def install(self, ref: str, backend: str | None = None) -> dict[str, Any]: ...

    async def cancel_install(self, job_id: str) -> Any: ...

    async def uninstall(self, ref: str, backend: str | None = None) -> dict[str, Any]: ...

    async def refresh_backends(self) -> dict[str, Any]: ...

    async def drain(self) -> dict[str, Any]: ...

    async def logs(self, tail: int = 200) -> list[str]: ...

    async def history(self) -> dict[str, Any]:
        """The metrics history: ``{"interval_s", "window_s", "samples"}``."""
        ...

    async def recent_requests(self, limit: int = 200) -> list[dict[str, Any]]:
        """Request records, newest first (metadata only)."""
        ...

    async def retry_link(self) -> dict[str, Any]:
        """Reconnect to the control plane now instead of at the end of the backoff wait."""
        ...


class CatalogueSource(Protocol):
    async def load(self) -> CatalogueData: ...


class PrerequisiteChecker(Protocol):
    def run(self) -> list[Check]:
        """Blocking (runs subprocesses): the app calls it in a thread worker."""
        ...


class KeyStore(Protocol):
    def has_key(self) -> bool: ...

    def where(self) -> str | None:
        """Where the configured key comes from, for people (``None`` when there is none)."""
        ...

    @property
    def home(self) -> Path:
        """PENDRA_HOME, where the key and everything else of this worker lives."""
        ...

    def sandbox_key_file(self) -> Path:
        """Where a local ``pendra sandbox`` writes the worker key it accepts."""
        ...

    def read_key_file(self, path: Path) -> str:
        """A key file's content (raises OSError when it cannot be read)."""
        ...

    def store(self, key: str) -> SavedKey:
        """Write the key 0600, atomically, where the worker reads it; a different key already
        there is backed up first, never lost."""
        ...

    def keep_environment_key(self) -> Path | None:
        """A key that only the environment gives (``GPU_WORKER_PRIVATE_KEY``) is stored too, so
        the worker has it in a shell without the variable; returns where, or None."""
        ...


class KeyVerifier(Protocol):
    def control_plane(self) -> str:
        """The control plane URL the key is checked against."""
        ...

    def check_format(self, key: str) -> str | None:
        """``None`` when the format is right, else what is wrong with it."""
        ...

    async def verify(self, key: str, server_url: str | None = None) -> KeyVerdict:
        """Ask the control plane at ``server_url`` (default: the configured one)."""
        ...


@dataclass(frozen=True)
class Identity:
    """What the key step shows and saves besides the key."""

    server_url: str
    """``app_server_ws_url``."""
    worker_name: str
    worker_id: str | None = None


class SettingsStore(Protocol):
    """The settings the setup flow shows and saves (config.yaml)."""

    def identity(self) -> Identity: ...

    def save_identity(self, server_url: str, worker_name: str) -> Path:
        """Check and write ``app_server_ws_url`` and ``worker_name``; raises ``ConfigError``
        naming the setting that is wrong. The services use the new values from then on."""
        ...


class BackendProbe(Protocol):
    async def discover(self) -> list[BackendCandidate]: ...

    async def verify(self, kind: str, endpoint: str) -> BackendCandidate: ...

    def save(self, endpoints: Mapping[str, str], builtin_enabled: bool) -> Path: ...


class SetupProgressStore(Protocol):
    """Where an unfinished setup stopped (``pendra_tui.setup_progress``)."""

    def save(self, state: Any, step: str) -> None: ...

    def resumable(self) -> Any:
        """The saved ``Progress`` when there is an unfinished setup to resume, else ``None``."""
        ...

    def clear(self) -> None: ...


class WorkerLauncher(Protocol):
    def plan(self) -> list[str]:
        """What :meth:`start` will do, one line each, for the Review screen."""
        ...

    async def start(self) -> str:
        """Start the headless worker; returns a one-line summary of what was done."""
        ...

    def restart_plan(self) -> str:
        """What :meth:`restart` will do, as the end of "This will …"."""
        ...

    async def restart(self) -> str:
        """Start a worker that stopped (drained, crashed): its service when one is installed,
        else ``pendra --no-ui`` in the background; returns a one-line summary."""
        ...


class DockerWorkerLauncher(WorkerLauncher, Protocol):
    """Starts the worker in Docker instead (``pendra stack up``)."""

    def unavailable(self) -> str | None:
        """Why Docker cannot run the worker here (blocking: asks the daemon); None when it can."""
        ...

    def has_worker_container(self) -> bool:
        """Whether the worker was set up to run in Docker here (blocking: asks the daemon)."""
        ...

    async def start_with_progress(self, progress: Callable[[str], None]) -> str:
        """:meth:`start`, calling ``progress`` (from a worker thread) with each step's line."""
        ...


@dataclass
class Services:
    """Everything the app is given. Built by :func:`real_services` or by a test."""

    worker: WorkerClient
    catalogue: CatalogueSource
    checks: PrerequisiteChecker
    keys: KeyStore
    verifier: KeyVerifier
    backends: BackendProbe
    launcher: WorkerLauncher
    config: SettingsStore
    clock: Clock = field(default_factory=lambda: MonotonicClock())
    backend_kinds: Sequence[str] = ()
    """External kinds the Backends screen offers (``worker.settings.BACKEND_KINDS``)."""
    progress: SetupProgressStore | None = None
    """Where an unfinished setup stopped; ``None``: setup always starts at the beginning."""
    docker: DockerWorkerLauncher | None = None
    """The "run the worker in Docker" choice of the Review screen; None hides it."""


# -- real implementations ----------------------------------------------------------------------


class LiveSettings:
    """The settings the real adapters share; reloaded when the setup flow saves config.yaml, so
    the catalogue, the key check and the launcher use the control plane just chosen."""

    def __init__(self, settings: Settings) -> None:
        self.current = settings

    def reload(self) -> Settings:
        from worker.settings import load_settings

        self.current = load_settings()
        return self.current


class _Adapter:
    """Holds the shared :class:`LiveSettings` (or one fixed ``Settings``)."""

    def __init__(self, settings: Settings | LiveSettings) -> None:
        self._live = settings if isinstance(settings, LiveSettings) else LiveSettings(settings)

    @property
    def _settings(self) -> Settings:
        return self._live.current


class MonotonicClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class AdminWorkerClient(_Adapter):
    """The real admin client, created on first use (the module is imported only then)."""

    def __init__(self, settings: Settings | LiveSettings) -> None:
        super().__init__(settings)
        self._client: Any = None
        self._for: Settings | None = None

    def _get(self) -> Any:
        if self._client is None or self._for is not self._settings:
            from worker.admin.client import AdminClient

            self._client = AdminClient.for_settings(self._settings)
            self._for = self._settings
        return self._client

    async def status(self) -> dict[str, Any]:
        return await self._get().status()

    async def events(self, kinds: set[str] | None = None) -> AsyncIterator[dict[str, Any]]:
        async for event in self._get().events(kinds):
            yield event

    @contextlib.asynccontextmanager
    async def event_stream(
        self, kinds: set[str] | None = None
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        async with self._get().event_stream(kinds) as stream:
            yield stream.__aiter__()

    async def install(self, ref: str, backend: str | None = None) -> dict[str, Any]:
        return await self._get().install(ref, backend)

    async def cancel_install(self, job_id: str) -> Any:
        return await self._get().cancel_install(job_id)

    async def uninstall(self, ref: str, backend: str | None = None) -> dict[str, Any]:
        return await self._get().uninstall(ref, backend)

    async def refresh_backends(self) -> dict[str, Any]:
        return await self._get().refresh_backends()

    async def drain(self) -> dict[str, Any]:
        return await self._get().drain()

    async def logs(self, tail: int = 200) -> list[str]:
        return await self._get().logs(tail)

    async def history(self) -> dict[str, Any]:
        return await self._get().history()

    async def recent_requests(self, limit: int = 200) -> list[dict[str, Any]]:
        return await self._get().recent_requests(limit)

    async def retry_link(self) -> dict[str, Any]:
        return await self._get().retry_link()


CATALOGUE_WAIT_S = 30.0
"""How long the app waits for the worker's catalogue: the worker's own fetch gives up after 10 s
and then answers with its cached copy."""


class LiveCatalogue(_Adapter):
    """The catalogue through the running worker's admin API, else from the control plane
    (``worker.catalogue.CatalogueClient``, with its cached copy): see
    :mod:`pendra_tui.catalogue_source`. Fit verdicts are judged for this machine."""

    async def load(self) -> CatalogueData:
        from pendra_tui.catalogue_source import fetch_catalogue

        found = await fetch_catalogue(self._from_worker, self._from_control_plane)
        catalogue = found.catalogue
        verdict_for = await asyncio.to_thread(self._verdicts)
        rows = rows_from_catalogue(catalogue.models, verdict_for)
        return CatalogueData(
            rows=rows,
            cached=bool(catalogue.cached),
            age_s=catalogue.age_s,
            source=found.source,
            stale_reason=catalogue.stale_reason if catalogue.cached else None,
        )

    async def _from_worker(self) -> Any:
        from worker.admin.client import AdminClient
        from worker.catalogue import Catalogue, CatalogueError
        from worker.errors import PendraError

        client = AdminClient.for_settings(self._settings, timeout_s=CATALOGUE_WAIT_S)
        document = await client.catalogue()
        try:
            return Catalogue.from_document(document)
        except CatalogueError as exc:  # unreadable, not the control plane's failure
            raise PendraError(exc.message, hint=exc.hint) from None

    async def _from_control_plane(self) -> Any:
        from worker.catalogue import CatalogueClient

        return await CatalogueClient(self._settings).load()

    def _verdicts(self) -> Callable[[Any, Any], str | None] | None:
        """Detect the machine once (blocking: NVML, psutil) and return a per-variant judge."""
        try:
            from worker import fit
            from worker.hardware import MachineProfile

            profile = MachineProfile.detect(self._settings.models_dir)
        except Exception:  # a missing GPU stack must not hide the catalogue
            return None

        def judge(model: Any, variant: Any) -> str | None:
            try:
                verdict = fit.fit_verdict(
                    profile,
                    variant,
                    max_context=getattr(self._settings, "max_context", fit.DEFAULT_CONTEXT),
                    kv_type=getattr(self._settings, "kv_type", "f16"),
                )
            except Exception:
                return None
            value = getattr(verdict, "verdict", getattr(verdict, "value", verdict))
            return str(value) if value is not None else None

        return judge


class InstallerChecks(_Adapter):
    """``installer.checks.run_checks`` mapped onto :class:`Check`."""

    def run(self) -> list[Check]:
        from installer.checks import run_checks

        # serving=False: an offline box can still be set up (reachability only warns here).
        results = run_checks(self._settings, serving=False)
        return [
            Check(
                id=str(r.id),
                title=str(r.title),
                status=str(getattr(r.status, "value", r.status)),
                required=bool(r.required),
                detail=str(r.detail or ""),
                fix=r.fix or None,
            )
            for r in results
        ]


class SettingsKeyStore(_Adapter):
    """The worker key, where the worker reads it (``worker.keys.store_key``): config.yaml's
    ``gpu_worker_private_key`` on a new machine, or the key file already in use; 0600, atomic."""

    def has_key(self) -> bool:
        return self._settings.key_location().present

    def where(self) -> str | None:
        location = self._settings.key_location()
        return location.source if location.present else None

    @property
    def home(self) -> Path:
        return self._settings.home

    def sandbox_key_file(self) -> Path:
        return self._settings.home / "sandbox" / "worker.key"

    def read_key_file(self, path: Path) -> str:
        return path.read_text(encoding="utf-8").strip()

    def store(self, key: str) -> SavedKey:
        from worker.keys import parse_key, store_key

        stored, notes = store_key(self._settings, parse_key(key))
        self._live.reload()
        return SavedKey(stored.path, stored.backup, tuple(notes))

    def keep_environment_key(self) -> Path | None:
        from dataclasses import replace

        from worker.keys import parse_key, store_key

        settings = self._settings
        location = settings.key_location()
        if location.kind != "inline" or not location.from_environment or not settings.private_key:
            return None
        # Stored as if the variable were not set: where this home keeps its key.
        sources = {k: v for k, v in settings.sources.items() if k != "private_key"}
        stored, _notes = store_key(
            replace(settings, private_key=None, sources=sources), parse_key(settings.private_key)
        )
        self._live.reload()
        return stored.path


class ConfigFileSettings(_Adapter):
    """``app_server_ws_url`` and ``worker_name`` in config.yaml (``pendra_tui.backend_config``)."""

    def identity(self) -> Identity:
        settings = self._settings
        return Identity(settings.server_url, settings.worker_name, settings.worker_id)

    def save_identity(self, server_url: str, worker_name: str) -> Path:
        from pendra_tui.backend_config import identity_changes, save_changes

        path = self._settings.config_file
        save_changes(path, identity_changes(server_url, worker_name))
        self._live.reload()
        return path


class LinkKeyVerifier(_Adapter):
    """Format via ``worker.keys.validate_key_format``, live via ``worker.link.verify_key``."""

    def check_format(self, key: str) -> str | None:
        from worker.keys import KeyProblem, validate_key_format

        try:
            validate_key_format(key)
        except KeyProblem as exc:
            return exc.one_line()  # what is wrong and which forms a key has
        return None

    async def verify(self, key: str, server_url: str | None = None) -> KeyVerdict:
        from dataclasses import replace

        from worker.link.verify import verify_key
        from worker.settings import parse_control_plane_url

        settings = self._settings
        if server_url:
            try:
                settings = replace(settings, api_url=parse_control_plane_url(server_url))
            except ValueError as exc:
                return KeyVerdict(None, str(exc))
        try:
            result = await verify_key(settings, key)
        except (OSError, asyncio.TimeoutError) as exc:  # verify_key reports these itself; belt
            return KeyVerdict(None, f"control plane not reachable ({exc.__class__.__name__})")
        if result.status == "valid":
            return KeyVerdict(True, result.message or "accepted")
        if result.status == "unreachable":
            return KeyVerdict(None, result.message)
        return KeyVerdict(False, result.message)


class DiscoveryProbe(_Adapter):
    """Backend discovery and the per-kind verification of an explicit endpoint.

    Both use ``worker.backends.discovery`` exactly as the running worker does, so the Backends
    screen shows what the worker will find: each kind once, found (with its endpoint and models),
    disabled by the configuration, or not found (saying where it looked).
    """

    def __init__(self, settings: Settings | LiveSettings, *, options: Any = None) -> None:
        super().__init__(settings)
        self._options = options
        """``worker.backends.discovery.DiscoveryOptions`` (hosts, ports); tests point it at
        loopback servers they start."""

    async def discover(self) -> list[BackendCandidate]:
        from worker.backends.discovery import describe_all, discover_backends

        registry = await discover_backends(self._settings, options=self._options)
        try:
            return [
                _candidate(doc) for doc in describe_all(registry, self._settings, self._options)
            ]
        finally:
            for backend in registry:
                await backend.close()

    async def verify(self, kind: str, endpoint: str) -> BackendCandidate:
        from worker.backends.base import BackendStatus
        from worker.backends.discovery import DiscoveryOptions, make_backend
        from worker.backends.kinds import KINDS

        if kind not in KINDS:
            return BackendCandidate(kind, endpoint, "error", f"no {kind} backend in this install")
        options = self._options if self._options is not None else DiscoveryOptions()
        backend = make_backend(kind, endpoint, self._settings, options)
        try:
            await asyncio.wait_for(backend.refresh(), timeout=10)
            candidate = _candidate(backend.describe())
            if backend.status is not BackendStatus.READY and not candidate.detail:
                candidate = BackendCandidate(
                    kind, endpoint, candidate.status, f"it does not answer like {kind}"
                )
            return candidate
        except asyncio.TimeoutError:
            return BackendCandidate(kind, endpoint, "unreachable", "no answer within 10 s")
        finally:
            await backend.close()

    def save(self, endpoints: Mapping[str, str], builtin_enabled: bool) -> Path:
        from pendra_tui.backend_config import save_backend_choices

        path = self._settings.config_file
        save_backend_choices(path, endpoints, builtin_enabled)
        self._live.reload()
        return path


def _candidate(doc: Mapping[str, Any]) -> BackendCandidate:
    return BackendCandidate(
        kind=str(doc.get("name")),
        endpoint=doc.get("endpoint"),
        status=str(doc.get("status")),
        detail=doc.get("detail"),
        models=len(doc.get("models") or []),
    )


STARTUP_WAIT_S = 30.0
"""How long Start waits for a freshly spawned worker's admin socket before handing over to the
dashboard (which keeps retrying): long enough to catch a worker that dies at start-up."""

LOG_TAIL_ON_FAILURE = 5
"""Lines of the console file quoted when a spawned worker exits at once."""

CONSOLE_FILE_NAME = "worker-console.log"


class ProcessLauncher(_Adapter):
    """Starts the worker: as a service when the installer can, else ``pendra --no-ui`` detached.

    The detached process gets its own session (it outlives this terminal); it logs to
    ``$PENDRA_HOME/logs/worker.log`` itself (rotated), and what it prints before its logging is
    set up (a bad config, a missing key) goes to ``logs/worker-console.log``, which Start quotes
    when the worker exits at once. The key never goes on its command line. A service install
    that fails (no user manager after ``su``, a systemctl error) falls back to the detached
    process, so Start always ends with a running worker or a clear reason why not.
    """

    def __init__(
        self,
        settings: Settings | LiveSettings,
        *,
        prefer_service: bool = True,
        startup_wait_s: float = STARTUP_WAIT_S,
    ) -> None:
        super().__init__(settings)
        self._prefer_service = prefer_service
        self._startup_wait_s = startup_wait_s
        self._manager: Any = None
        self.process: subprocess.Popen[bytes] | None = None
        """The detached worker this launcher spawned (``None`` for a service or none)."""

    @property
    def log_file(self) -> Path:
        """The worker's own (rotating) log; ``pendra logs`` shows the same lines."""
        from worker.logs import LOG_FILE_NAME

        return self._settings.logs_dir / LOG_FILE_NAME

    @property
    def console_file(self) -> Path:
        """stdout/stderr of the detached worker: start-up errors, anything not logged."""
        return self._settings.logs_dir / CONSOLE_FILE_NAME

    def _service_manager(self) -> Any | None:
        """The user-level systemd/launchd manager, or ``None`` where there is none (containers,
        no systemd, Windows): then the worker runs as a detached process instead."""
        if not self._prefer_service:
            return None
        if self._manager is None:
            try:
                from installer.platform import detect_host
                from installer.service import manager_for

                self._manager = manager_for(detect_host(), system=False)
            except Exception:  # NoServiceManager, ServiceError, OSError: run detached instead
                self._manager = False
        return self._manager or None

    def plan(self) -> list[str]:
        if self._service_manager() is not None:
            return [
                "install and start the `pendra --no-ui` user service (it survives logout)",
                "open the live dashboard once the worker answers",
            ]
        return [
            f"start `pendra --no-ui` in the background, logging to {self.log_file}",
            "open the live dashboard once the worker answers",
        ]

    async def start(self) -> str:
        from worker.errors import PendraError

        running = await self._running_pid()
        if running is not None:
            return f"a worker is already running (pid {running}); restart it to use new settings"
        manager = self._service_manager()
        note = ""
        if manager is not None:
            from installer.service import current_spec

            try:
                spec = current_spec(self._settings.home, system=False)
                report = await asyncio.to_thread(manager.install, spec)
                return f"service installed and started ({report.unit_path})"
            except (PendraError, OSError) as exc:
                reason = getattr(exc, "message", None) or str(exc)
                note = f" (the service could not be installed: {reason})"
        process, offset = await asyncio.to_thread(self._spawn)
        self.process = process
        await self._wait_ready(process, offset)
        return (
            f"worker started in the background (pid {process.pid}), logging to "
            f"{self.log_file}{note}"
        )

    def _installed_service(self) -> Any | None:
        """The service manager when a ``pendra`` unit is installed, else ``None``."""
        manager = self._service_manager()
        if manager is None:
            return None
        try:
            return manager if Path(manager.unit_path).exists() else None
        except Exception:  # a manager without a unit path: treat as not installed
            return None

    def restart_plan(self) -> str:
        manager = self._installed_service()
        if manager is not None:
            return f"start the installed {getattr(manager, 'name', 'service')} service again"
        return f"start `pendra --no-ui` in the background, logging to {self.log_file}"

    async def restart(self) -> str:
        from worker.errors import PendraError

        running = await self._running_pid()
        if running is not None:
            return f"a worker is already running (pid {running})"
        manager = self._installed_service()
        if manager is not None:
            from installer.service import current_spec

            try:
                spec = current_spec(self._settings.home, system=False)
                report = await asyncio.to_thread(manager.install, spec)
                return f"service started again ({report.unit_path})"
            except (PendraError, OSError) as exc:
                reason = getattr(exc, "message", None) or str(exc)
                raise PendraError(
                    f"the service did not start: {reason}",
                    hint="see `pendra service status` and `pendra logs`",
                ) from None
        process, offset = await asyncio.to_thread(self._spawn)
        self.process = process
        await self._wait_ready(process, offset)
        return f"worker started in the background (pid {process.pid}), logging to {self.log_file}"

    async def _running_pid(self) -> int | None:
        """The pid of a worker already answering on this PENDRA_HOME's admin socket."""
        from worker.admin.client import AdminClient
        from worker.errors import PendraError

        try:
            answer = await AdminClient(self._settings.admin_socket, timeout_s=5).ping()
        except (PendraError, OSError):
            return None
        pid = answer.get("pid") if isinstance(answer, dict) else None
        return int(pid) if isinstance(pid, int) else -1

    def _spawn(self) -> tuple[subprocess.Popen[bytes], int]:
        """Start ``pendra --no-ui`` detached; returns it and where its output starts in the
        console file."""
        self.console_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.console_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log:
            offset = log.seek(0, os.SEEK_END)
            process = subprocess.Popen(
                [sys.executable, "-m", "worker", "--no-ui"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                # Not child_env(): this child is the worker itself, and in container mode its key
                # (PENDRA_WORKER_KEY) or a Hugging Face token may only exist in this environment.
                env={**os.environ, "PENDRA_HOME": str(self._settings.home)},
            )
        return process, offset

    async def _wait_ready(self, process: subprocess.Popen[bytes], offset: int) -> None:
        """Wait until the admin socket answers; a worker that exits instead is an error that
        quotes the end of its log (bad config, a second worker on this home, a broken install)."""
        from worker.errors import PendraError

        deadline = time.monotonic() + self._startup_wait_s
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                tail = self._log_tail(offset)
                raise PendraError(
                    f"the worker exited at start (exit code {code})"
                    + (f": {tail}" if tail else ""),
                    hint=f"see {self.console_file} and {self.log_file}; `pendra doctor` "
                    "checks the setup",
                )
            if await self._running_pid() is not None:
                return
            await asyncio.sleep(0.2)

    def _log_tail(self, offset: int) -> str:
        try:
            with self.console_file.open("rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return " | ".join(lines[-LOG_TAIL_ON_FAILURE:])


class DockerLauncher:
    """Runs the worker in Docker through ``installer.stack_run`` (what ``pendra stack up`` does):
    the image is assembled from this installation, the worker container started, and Start
    waits until it is connected. The dashboard then attaches through the socket the container
    shares with the host."""

    def __init__(self, settings: Settings, *, wait_s: float | None = None) -> None:
        self._settings = settings
        self._wait_s = wait_s

    def unavailable(self) -> str | None:
        from worker.errors import PendraError

        try:
            from installer.stack_docker import connect

            connect(timeout_s=5).close()
        except PendraError as exc:
            return exc.message
        except ModuleNotFoundError as exc:  # the `docker` extra is not installed
            return (
                f"this installation lacks the Python package {exc.name!r}: "
                f"{sys.executable} -m pip install 'pendra-worker[docker]'"
            )
        except Exception as exc:
            return f"Docker cannot be used here ({exc.__class__.__name__}: {exc})"
        return None

    def has_worker_container(self) -> bool:
        try:
            from installer.stack_docker import DockerStack, connect

            client = connect(timeout_s=3)
        except Exception:  # no daemon, no docker extra: not a Docker setup we can restart
            return False
        try:
            return DockerStack(client, progress=lambda _line: None).container("worker") is not None
        except Exception:
            return False
        finally:
            client.close()

    def restart_plan(self) -> str:
        return "start the worker's container again (`pendra stack up`)"

    async def restart(self) -> str:
        return await self.start()

    def plan(self) -> list[str]:
        return [
            "build the worker image from this installation (first time: a minute or two) and "
            "start its container (`pendra stack up`); it restarts with Docker",
            "open the live dashboard once the worker answers",
        ]

    async def start(self) -> str:
        return await self.start_with_progress(lambda _line: None)

    async def start_with_progress(self, progress: Callable[[str], None]) -> str:
        from installer.stack_run import DEFAULT_WAIT_S, stack_up

        wait_s = self._wait_s if self._wait_s is not None else DEFAULT_WAIT_S
        document = await asyncio.to_thread(
            stack_up, self._settings, {}, wait_s=wait_s, progress=progress
        )
        worker = (document.get("worker") or {}).get("worker") or {}
        state = worker.get("state") or "not answering yet"
        return f"the worker runs in Docker (container pendra-worker-1, {state})"


def real_services(settings: Settings) -> Services:
    """The services ``pendra`` runs with; they share one :class:`LiveSettings`."""
    from pendra_tui.setup_progress import FileSetupProgress
    from worker.settings import BACKEND_KINDS

    live = LiveSettings(settings)
    return Services(
        worker=AdminWorkerClient(live),
        catalogue=LiveCatalogue(live),
        checks=InstallerChecks(live),
        keys=SettingsKeyStore(live),
        verifier=LinkKeyVerifier(live),
        backends=DiscoveryProbe(live),
        launcher=ProcessLauncher(live),
        config=ConfigFileSettings(live),
        clock=MonotonicClock(),
        backend_kinds=BACKEND_KINDS,
        progress=FileSetupProgress(settings.home, settings.admin_socket),
        docker=DockerLauncher(settings),
    )

"""The running worker: composes settings, events, backends, router, link and other components.

``Worker`` owns the lifecycle. ``start()`` brings up the built-in backend (when enabled and
installed), discovery of external backends, every registered component, then the link. ``run()``
waits for a stop request (SIGTERM/SIGINT when the headless command asks for signal handling),
drains in-flight requests within ``settings.drain_timeout_s`` after telling the control plane it is
draining, and stops everything in reverse order.

More parts plug in as components — anything with async ``start()`` and ``stop()`` (the admin
server, the GPU sampler, the install manager) — through :meth:`Worker.add_component`; the status
document takes GPU readings and install jobs from the ``gpus`` and ``installs`` providers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from worker import __version__
from worker.backends.base import Backend, InstallProgress
from worker.backends.registry import BackendRegistry
from worker.errors import BadRequest, InstallError, PendraError
from worker.events import EventBus
from worker.keys import WorkerKey
from worker.link.client import LinkClient, LinkState
from worker.private_inference.service import PrivateInference
from worker.protocol import SUPPORTED_VERSIONS
from worker.router import Router
from worker.settings import Settings

log = logging.getLogger(__name__)


class Component(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def make_builtin(settings: Settings, events: EventBus | None = None) -> Backend | None:
    """The built-in llama.cpp backend, or None when disabled or not installed in this build."""
    if not settings.builtin_enabled:
        return None
    try:
        from worker.backends.pendra import PendraBackend
    except ImportError as exc:
        log.warning("the built-in backend is not available in this installation: %s", exc)
        return None
    return PendraBackend(settings, events=events)


class BackendCommands:
    """Install/uninstall commands from the control plane, run directly on the backends.

    ``Worker.enable_operations()`` replaces it with :class:`ManagedCommands` (shared jobs, progress
    in the dashboard); this default keeps the link's commands working in a bare worker.
    """

    def __init__(self, registry: BackendRegistry, events: EventBus) -> None:
        self.registry = registry
        self.events = events

    def _backend(self, kind: str | None) -> Backend:
        backend = self.registry.get(kind or "pendra")
        if backend is None:
            raise BadRequest(
                f"No {kind or 'pendra'} backend on this worker.",
                hint="see `pendra backends` for the backends this worker has",
            )
        return backend

    async def install(
        self,
        ref: str,
        backend: str | None,
        progress: Callable[[InstallProgress], Any],
    ) -> str | None:
        target = self._backend(backend)

        async def report(update: InstallProgress) -> None:
            self.events.publish(
                "install",
                ref=ref,
                backend=target.kind,
                phase=update.phase,
                bytes_done=update.bytes_done,
                bytes_total=update.bytes_total,
            )
            result = progress(update)
            if asyncio.iscoroutine(result):
                await result

        await target.install(ref, report)
        await target.refresh()
        self.events.publish("models", backend=target.kind)
        return target.kind

    async def uninstall(self, ref: str, backend: str | None) -> str | None:
        target = self._backend(backend)
        await target.uninstall(ref)
        await target.refresh()
        self.events.publish("models", backend=target.kind)
        return target.kind


class ManagedCommands:
    """Install/uninstall commands from the control plane, run as install-manager jobs.

    Jobs are shared with the CLI and the dashboard (the same ref joins the running job) and their
    progress appears in ``pendra status`` and the TUI as well as on the link.
    """

    def __init__(self, manager: Any, events: EventBus) -> None:
        self.manager = manager
        self.events = events

    async def install(
        self,
        ref: str,
        backend: str | None,
        progress: Callable[[InstallProgress], Any],
    ) -> str | None:
        with self.events.subscribe(kinds={"install"}) as updates:
            job = await self.manager.start(ref, backend)
            while not job.finished:
                try:
                    event = await asyncio.wait_for(updates.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    continue
                if event.get("job_id") != job.id:
                    continue
                result = progress(
                    InstallProgress(
                        phase=str(event.get("phase", job.phase)),
                        bytes_done=int(event.get("bytes_done") or 0),
                        bytes_total=event.get("bytes_total"),
                        detail=event.get("detail"),
                    )
                )
                if asyncio.iscoroutine(result):
                    await result
            await job.wait()
        if not job.ok:
            raise InstallError(job.error or f"installing {ref} failed ({job.phase})", hint=job.hint)
        return job.backend

    async def uninstall(self, ref: str, backend: str | None) -> str | None:
        result = await self.manager.uninstall(ref, backend)
        return result.get("backend")


class Worker:
    def __init__(
        self,
        settings: Settings,
        key: WorkerKey | None = None,
        *,
        backends: Sequence[Backend] | None = None,
        discover: bool = True,
        supported_versions: Sequence[int] = SUPPORTED_VERSIONS,
    ) -> None:
        self.settings = settings
        self.key = key
        self.events = EventBus()
        self.registry = BackendRegistry(backends or (), models_filter=settings.models_filter)
        self._own_backends = backends is None
        self._discover = discover and backends is None
        self.router = Router(self.registry, self.events, max_in_flight=settings.max_concurrent)
        self.private = PrivateInference.for_home(
            settings.home, enabled=settings.private_inference, events=self.events
        )
        self.commands: Any = BackendCommands(self.registry, self.events)
        self.components: list[Component] = []
        self.discovery: Any = None
        self.gpus: Callable[[], list[dict[str, Any]]] = list
        self.installs: Callable[[], list[dict[str, Any]]] = list
        self.link: LinkClient | None = None
        self._supported = tuple(supported_versions)
        self._started_at: float | None = None
        self._started_components: list[Component] = []
        self._link_task: asyncio.Task[None] | None = None
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()
        self._draining = False
        self.admin_server: Component | None = None
        self.install_manager: Any = None
        self.gpu_sampler: Any = None
        self.history: Any = None
        self._log_handler: Any = None

    # -- composition -----------------------------------------------------------------------------
    def add_component(self, component: Component) -> None:
        """Register a part with async ``start()``/``stop()``; started in order, stopped reversed."""
        self.components.append(component)

    def enable_operations(self, *, admin: bool = True, gpu: bool = True) -> None:
        """Wire in what an operated worker has: install manager, GPU sampler, admin socket.

        The admin server starts before anything else, so a second worker on the same
        PENDRA_HOME is refused before it opens a link or touches the modelstore.
        """
        from worker.installs import InstallManager

        self.install_manager = InstallManager(self.settings, self.registry, self.events)
        self.commands = ManagedCommands(self.install_manager, self.events)
        self.installs = self.install_manager.snapshot
        self.add_component(_InstallsComponent(self.install_manager))
        if gpu:
            from worker.gpu import GpuSampler

            sampler = GpuSampler(self.settings.gpu_interval_s, self.events)
            self.gpu_sampler = sampler
            self.gpus = lambda: [reading.as_dict() for reading in sampler.latest()]
            self.add_component(sampler)
        from worker.history import MetricsHistory, loaded_models
        from worker.host_metrics import HostProbe

        host = HostProbe()
        self.history = MetricsHistory(
            counters=lambda: self.router.counters().as_dict(),
            gpus=lambda: self.gpus(),
            host=lambda: host.read().as_dict(),
            loaded=lambda: loaded_models(self.registry),
            events=self.events,
        )
        self.add_component(self.history)
        if admin:
            from worker.admin.server import AdminServer

            self.admin_server = AdminServer(self, self.settings.admin_socket)

    # -- the admin API (worker.admin.target.AdminTarget) -----------------------------------------
    def _manager(self) -> Any:
        if self.install_manager is None:
            raise BadRequest("This worker runs without an install manager.")
        return self.install_manager

    async def install(self, ref: str, backend: str | None) -> dict[str, Any]:
        job = await self._manager().start(ref, backend)
        return job.as_dict()

    async def cancel_install(self, job_id: str) -> dict[str, Any]:
        return await self._manager().cancel(job_id)

    async def uninstall(self, ref: str, backend: str | None) -> dict[str, Any]:
        result = await self._manager().uninstall(ref, backend)
        await self.refresh_backends()
        return result

    async def refresh_backends(self) -> list[dict[str, Any]]:
        if self.discovery is not None:
            await self.discovery.refresh_now()
        for backend in list(self.registry):
            if backend.kind == "pendra":
                await backend.refresh()
        backends = self.status()["backends"]
        self.events.publish("backends", backends=backends)
        return backends

    def drain(self) -> dict[str, Any]:
        """Admin command: drain (finish in-flight requests, take no new ones), then stop."""
        self.request_stop()
        return {"state": LinkState.DRAINING.value}

    async def catalogue(self) -> dict[str, Any]:
        """The catalogue from this worker's control plane, or its cached copy when offline."""
        return (await self._manager().load_catalogue()).as_document()

    async def rotate_workload_key(self) -> dict[str, Any]:
        """Admin command: a new workload key; the old one is kept while requests still need it."""
        return await self.private.rotate()

    def log_tail(self, n: int) -> list[str]:
        return self._log_handler.tail(n) if self._log_handler is not None else []

    def history_doc(self) -> dict[str, Any]:
        """The bounded metrics history (``GET /v1/history``)."""
        if self.history is None:
            return {"interval_s": None, "window_s": None, "samples": []}
        return self.history.as_dict()

    def recent_requests(self, limit: int) -> list[dict[str, Any]]:
        """Running and recently finished requests, metadata only (``GET /v1/requests``)."""
        return self.router.request_log.recent(limit)

    def retry_link(self) -> dict[str, Any]:
        """Reconnect to the control plane now instead of at the end of the backoff wait."""
        if self.link is None:
            raise BadRequest("This worker has no link to a control plane (no worker key).")
        return {"retrying": self.link.retry_now(), "state": self.state}

    # -- status ----------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        if self._draining:
            return LinkState.DRAINING.value
        return self.link.state.value if self.link is not None else LinkState.OFFLINE.value

    def status(self) -> dict[str, Any]:
        """The status document (docs/status.md). Never contains the worker key."""
        if self.discovery is not None and hasattr(self.discovery, "describe"):
            backends = self.discovery.describe()
        else:
            backends = [b.describe() for b in self.registry]
        uptime = time.monotonic() - self._started_at if self._started_at is not None else 0.0
        return {
            "worker": {
                "state": self.state,
                "version": __version__,
                "uptime_s": round(uptime, 1),
                "worker_id": self.settings.worker_id,
                "worker_name": self.settings.worker_name,
                "key_id": self.key.key_id if self.key is not None else None,
                "control_plane": self.settings.server_url,
                "link": self.link.describe() if self.link is not None else None,
                "max_concurrent": self.settings.max_concurrent,
                "models_filter": (
                    list(self.settings.models_filter) if self.settings.models_filter else None
                ),
                "private_inference": self.private.status(),
            },
            "backends": backends,
            "gpus": self.gpus(),
            "installs": self.installs(),
            "requests": self.router.counters().as_dict(),
            "host": (self.history.latest() or {}).get("host") if self.history else None,
        }

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._started_at = time.monotonic()
        if self.admin_server is not None:
            from worker.admin.log_events import install_log_handler

            await self.admin_server.start()
            self._started_components.append(self.admin_server)
            self._log_handler = install_log_handler(self.events)
        # Before anything can connect: a workload key the worker cannot read stops it here.
        self.private.load()
        if self._own_backends:
            builtin = make_builtin(self.settings, self.events)
            if builtin is not None:
                self.registry.add(builtin)
        for backend in list(self.registry):
            if hasattr(backend, "start"):
                await backend.start()
            await backend.refresh()
        if self._discover:
            self._add_discovery()
        for component in self.components:
            await component.start()
            self._started_components.append(component)
        self.events.publish("backends", backends=[b.describe() for b in self.registry])
        if self.key is not None:
            self.link = LinkClient(
                key=self.key,
                router=self.router,
                url=self.settings.ws_url,
                events=self.events,
                commands=self.commands,
                heartbeat_interval_s=self.settings.heartbeat_interval_s,
                ca_file=self.settings.ca_file,
                gpus=lambda: self.gpus(),  # late-bound: enable_operations() may add a sampler
                supported=self._supported,
                max_concurrency=self.settings.max_concurrent,
                worker_id=self.settings.worker_id,
                worker_name=self.settings.worker_name,
                private=self.private,
            )
            self.link.on_drain_requested = self.request_stop
            self._link_task = asyncio.create_task(self.link.run(), name="link")

    def _add_discovery(self) -> None:
        try:
            from worker.backends.discovery import Discovery
        except ImportError as exc:  # a trimmed build without external backends
            log.warning("backend discovery is not available: %s", exc)
            return
        self.discovery = Discovery(self.settings, self.registry, self.events)
        # First in the list: its first tick has found the external backends before the other
        # components (admin server, installs) start answering questions about them.
        self.components.insert(0, self.discovery)

    def request_stop(self) -> None:
        """Begin a graceful stop (drain); a second request skips the rest of the drain."""
        if self._stop_requested.is_set():
            self._force.set()
        self._stop_requested.set()

    async def run(self, *, handle_signals: bool = False) -> int:
        """Start, serve until asked to stop, drain, stop. Re-raises a final link error."""
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._stop_requested.wait())}
            if self._link_task is not None:
                waiters.add(self._link_task)
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                if waiter is not self._link_task:
                    waiter.cancel()
            if self._link_task is not None and self._link_task.done():
                self._link_task.result()  # a final link error (bad key, upgrade) ends the worker
            await self._drain_link()
            return 0
        finally:
            await self.stop()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def _drain_link(self) -> int:
        """Tell the control plane, let in-flight requests finish within the bound."""
        self._draining = True
        self.events.publish("state", state=LinkState.DRAINING.value)
        if self.link is None:
            return 0
        timeout = self.settings.drain_timeout_s
        log.info(
            "draining: %d request(s) in flight, waiting up to %.0f s",
            self.router.in_flight,
            timeout,
        )
        drain = asyncio.ensure_future(self.link.drain(timeout))
        force = asyncio.ensure_future(self._force.wait())
        await asyncio.wait({drain, force}, return_when=asyncio.FIRST_COMPLETED)
        force.cancel()
        if not drain.done():
            log.warning("drain cut short by a second signal")
            drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            cut = await drain
            if cut:
                log.warning("drain deadline reached: %d request(s) cancelled", cut)
            return cut
        return 0

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.stop()
        if self._link_task is not None:
            with contextlib.suppress(asyncio.CancelledError, PendraError):
                await self._link_task
        for component in reversed(self._started_components):
            try:
                await component.stop()
            except Exception:  # one failing part must not keep the others running
                log.exception("stopping %s failed", type(component).__name__)
        self._started_components.clear()
        for backend in list(self.registry):
            with contextlib.suppress(Exception):
                await backend.close()


class _InstallsComponent:
    """The install manager as a component: nothing to start, running jobs cancelled on stop."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.manager.close()

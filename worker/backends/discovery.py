"""Finding backends: once (:func:`discover_backends`) and on each tick (:class:`Discovery`).

The rule (README, Configuration): a disabled kind is never probed; a kind with an explicit
endpoint uses that URL, verified; any other kind is probed at ``http://localhost:<port>`` then
``http://host.docker.internal:<port>`` for each of its default ports, and the first candidate that
passes the kind's own verification wins. All candidates of all kinds are probed concurrently with
short timeouts, so a tick with nothing running takes about one connect timeout at most.

Hosts, name resolution and ports are injectable through :class:`DiscoveryOptions` so tests can point
``host.docker.internal`` at a loopback address without touching ``/etc/hosts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.backends.base import Backend, BackendStatus
from worker.backends.external import HttpBackend, Verdict
from worker.backends.http import PROBE_TIMEOUT, create_session
from worker.backends.kinds import KINDS
from worker.backends.registry import BackendRegistry
from worker.events import EventBus
from worker.settings import BACKEND_KINDS, EndpointMode, Settings

log = logging.getLogger(__name__)

DEFAULT_HOSTS = ("localhost", "host.docker.internal")


@dataclass(frozen=True)
class DiscoveryOptions:
    """Where auto-discovery looks. Defaults are the product's; tests override them."""

    hosts: tuple[str, ...] = DEFAULT_HOSTS
    host_map: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    environ: Mapping[str, str] | None = None

    def ports_of(self, cls: type[HttpBackend]) -> tuple[int, ...]:
        return tuple(self.ports.get(cls.kind, cls.default_ports))


def candidate_urls(cls: type[HttpBackend], options: DiscoveryOptions) -> list[str]:
    """Auto-discovery candidates of one kind, in preference order: every port on a host first."""
    return [f"http://{host}:{port}" for host in options.hosts for port in options.ports_of(cls)]


def api_key_for(kind: str, settings: Settings, options: DiscoveryOptions) -> str | None:
    """The bearer key of a kind: only the generic ``openai`` kind has one (OPENAI_API_KEY)."""
    if kind != "openai":
        return None
    environ = os.environ if options.environ is None else options.environ
    return environ.get(settings.openai_api_key_env or "OPENAI_API_KEY") or None


async def find_endpoint(
    cls: type[HttpBackend], candidates: list[str], options: DiscoveryOptions
) -> tuple[str | None, list[Verdict]]:
    """The first candidate that verifies as ``cls`` (all probed at once), and every verdict."""
    if not candidates:
        return None, []
    async with create_session(host_map=options.host_map, timeout=PROBE_TIMEOUT) as session:
        verdicts = await asyncio.gather(*(cls.verify(session, url) for url in candidates))
    for url, verdict in zip(candidates, verdicts, strict=True):
        if verdict.ok:
            return url, list(verdicts)
    return None, list(verdicts)


def make_backend(
    kind: str, endpoint: str, settings: Settings, options: DiscoveryOptions
) -> HttpBackend:
    return KINDS[kind](
        endpoint, host_map=options.host_map, api_key=api_key_for(kind, settings, options)
    )


async def locate(kind: str, settings: Settings, options: DiscoveryOptions) -> HttpBackend | None:
    """A refreshed backend of ``kind`` per its setting; None when disabled or not found."""
    setting = settings.backend(kind)
    if setting.mode is EndpointMode.DISABLED:
        return None
    if setting.mode is EndpointMode.EXPLICIT:
        assert setting.url is not None
        backend = make_backend(kind, setting.url, settings, options)
        await backend.refresh()
        if backend.status is not BackendStatus.READY:
            log.warning("%s at %s (%s): %s", kind, setting.url, setting.source, backend.detail)
        return backend
    cls = KINDS[kind]
    url, _ = await find_endpoint(cls, candidate_urls(cls, options), options)
    if url is None:
        return None
    backend = make_backend(kind, url, settings, options)
    await backend.refresh()
    return backend


async def discover_backends(
    settings: Settings,
    *,
    builtin: Backend | None = None,
    options: DiscoveryOptions | None = None,
) -> BackendRegistry:
    """One-shot discovery: the built-in backend plus every enabled external kind found."""
    options = options if options is not None else DiscoveryOptions()
    registry = BackendRegistry()
    if builtin is not None:
        registry.add(builtin)
    found = await asyncio.gather(*(locate(kind, settings, options) for kind in BACKEND_KINDS))
    for backend in found:
        if backend is not None:
            registry.add(backend)
    return registry


def not_found_entry(kind: str, settings: Settings, options: DiscoveryOptions) -> dict[str, Any]:
    """The status-document entry of a kind that is disabled or was not found."""
    cls = KINDS[kind]
    setting = settings.backend(kind)
    if setting.mode is EndpointMode.DISABLED:
        status, detail = BackendStatus.DISABLED, f"disabled by {setting.source}"
    elif setting.mode is EndpointMode.EXPLICIT:
        status, detail = BackendStatus.UNREACHABLE, f"{setting.url} not checked yet"
    elif not cls.default_ports:
        status, detail = BackendStatus.DISABLED, f"not configured (set {kind.upper()}_ENDPOINT)"
    else:
        ports = ", ".join(str(p) for p in options.ports_of(cls))
        where = " or ".join(options.hosts)
        status, detail = BackendStatus.UNREACHABLE, f"not found on {where} (port {ports})"
    return {
        "name": kind,
        "endpoint": None,
        "status": status.value,
        "detail": detail,
        "capabilities": cls.capabilities.as_dict(),
        "models": [],
        "version": None,
    }


def describe_all(
    registry: BackendRegistry, settings: Settings, options: DiscoveryOptions | None = None
) -> list[dict[str, Any]]:
    """Every backend kind: found ones as they describe themselves, the rest disabled/not found."""
    options = options if options is not None else DiscoveryOptions()
    rows = [backend.describe() for backend in registry]
    present = {row["name"] for row in rows}
    rows.extend(not_found_entry(k, settings, options) for k in BACKEND_KINDS if k not in present)
    return rows


def _signature(registry: BackendRegistry) -> tuple[Any, ...]:
    return tuple(
        (b.kind, b.endpoint, b.status.value, b.detail, tuple(m.id for m in b.models))
        for b in registry
    )


class Discovery:
    """Keeps ``registry`` in step with the external backends that are actually there.

    Each tick re-verifies every known backend and reloads its models; a backend that stops
    answering is marked unreachable (kept, so the status shows it), an auto-discovered one that
    is gone is looked for again on every candidate (it may have moved to the other host), and a
    kind that was not there is probed again. Any change publishes a ``backends`` event.
    """

    def __init__(
        self,
        settings: Settings,
        registry: BackendRegistry,
        events: EventBus | None = None,
        *,
        options: DiscoveryOptions | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.events = events
        self.options = options if options is not None else DiscoveryOptions()
        self.interval_s = settings.discovery_interval_s if interval_s is None else interval_s
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._last: tuple[Any, ...] | None = None

    async def start(self) -> None:
        """Run a first tick now, then keep ticking in the background."""
        if self._task is not None:
            return
        await self.refresh_now()
        self._task = asyncio.create_task(self._loop(), name="backend-discovery")

    async def stop(self) -> None:
        """Stop ticking. Backends stay in the registry; closing them is the owner's job."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.refresh_now()
            except Exception:  # a bug in one tick must not end discovery for good
                log.exception("backend discovery tick failed")

    async def refresh_now(self) -> list[dict[str, Any]]:
        """One tick now (also what ``pendra backends`` / the admin refresh command run)."""
        async with self._lock:
            await asyncio.gather(*(self._tick_kind(kind) for kind in BACKEND_KINDS))
            signature = _signature(self.registry)
            if signature != self._last:
                self._last = signature
                if self.events is not None:
                    self.events.publish("backends", backends=self.describe())
        return self.describe()

    def describe(self) -> list[dict[str, Any]]:
        return describe_all(self.registry, self.settings, self.options)

    async def _tick_kind(self, kind: str) -> None:
        setting = self.settings.backend(kind)
        if setting.mode is EndpointMode.DISABLED:
            return
        current = self.registry.get(kind)
        if current is not None:
            await current.refresh()
            if current.status is BackendStatus.READY or setting.mode is EndpointMode.EXPLICIT:
                return
        elif setting.mode is EndpointMode.EXPLICIT:
            # A configured endpoint is always listed, reachable or not, so its status shows why.
            backend = await locate(kind, self.settings, self.options)
            if backend is not None:
                self.registry.add(backend)
            return
        cls = KINDS[kind]
        url, _ = await find_endpoint(cls, candidate_urls(cls, self.options), self.options)
        if url is None:
            return  # a known one stays, marked unreachable by its refresh above
        if current is not None and current.endpoint == url:
            await current.refresh()  # it came back between the two checks
            return
        backend = make_backend(kind, url, self.settings, self.options)
        await backend.refresh()
        if backend.status is not BackendStatus.READY:
            await backend.close()
            return
        log.info("found %s at %s", kind, url)
        self.registry.add(backend)
        if current is not None:
            await current.close()

"""The dashboard's state, built from the admin API's status document and its event stream.

Pure and Textual-free so it is tested as plain code: ``apply_status`` takes a DESIGN §6 document,
``apply_history`` the metrics history, ``apply_recent`` the request records, ``apply_event`` one
admin event; each returns the set of panels whose data changed, so the screen re-renders only
those. Unknown keys are ignored and missing ones keep their old value: the admin API may grow
(§6 says "keys may be added") and an older worker may send less.

Rates are never computed here: tokens/s is the worker's own sliding-window rate, from the latest
``metrics`` sample or ``requests`` event, so the dashboard and ``pendra status`` agree.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pendra_tui.metrics_view import MetricsView
from pendra_tui.model_rows import LoadedModel, parse_loaded_list
from pendra_tui.request_rows import RequestView, parse_request

LOG_LINES = 500
"""Log lines kept in memory (the log pane shows the tail)."""

RECENT_REQUESTS_KEPT = 200
"""Request records kept (the worker keeps as many finished ones)."""

FINISHED_INSTALLS_KEPT = 6
"""Finished/failed installs stay listed so the user sees the outcome; older ones drop off."""

FINISHED_PHASES = frozenset(
    {"done", "failed", "cancelled", "removed", "error", "complete", "completed"}
)
"""Install phases after which a job no longer changes (``worker.installs.manager`` ends jobs with
done/failed/cancelled and reports an uninstall as "removed")."""

MODELS_CHANGED_PHASES = frozenset({"done", "removed"})
"""Install phases after which a backend has a different list of models."""

Panel = str
"""One of "link", "backends", "gpus", "host", "installs", "requests" (the counters and the
throughput plots), "models", "recent" (the request records), "logs", "resync"."""


@dataclass
class BackendView:
    """One backend row."""

    name: str
    endpoint: str | None
    status: str
    capabilities: dict[str, bool]
    models: list[dict[str, Any]]
    loaded: list[LoadedModel] = field(default_factory=list)
    """Models in memory (the built-in backend reports them)."""
    unusable: list[dict[str, Any]] = field(default_factory=list)
    """Files the backend cannot serve: ``{"file", "id", "error"}``."""
    detail: str | None = None
    """Why the backend is not ready, as the worker says it."""

    @property
    def model_ids(self) -> list[str]:
        return [str(m.get("id")) for m in self.models if m.get("id") is not None]


@dataclass
class GpuView:
    """The latest reading of one GPU plus its bounded history."""

    index: int
    name: str
    utilization: float | None = None
    memory_used: int | None = None
    memory_total: int | None = None
    temperature: float | None = None
    power_w: float | None = None

    @property
    def memory_percent(self) -> float | None:
        if self.memory_used is None or not self.memory_total:
            return None
        return 100.0 * self.memory_used / self.memory_total


@dataclass
class InstallView:
    """One install job as the dashboard shows it."""

    ref: str
    backend: str
    phase: str
    bytes_done: int = 0
    bytes_total: int | None = None
    rate_bps: float | None = None
    eta_s: float | None = None
    error: str | None = None
    job_id: str | None = None
    """The install manager's job id: what cancelling the install needs."""
    hint: str | None = None
    """What to do about ``error`` (the worker's PendraError hint)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.ref, self.backend)

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES


@dataclass
class RequestsView:
    in_flight: int = 0
    served: int = 0
    failed: int = 0
    cancelled: int = 0
    tokens_total: int | None = None
    tokens_per_s: float | None = None
    max_concurrent: int | None = None
    """The worker's cap on requests in flight (``None``: no cap, or not reported)."""


@dataclass
class HostView:
    """The machine and the worker process (the latest ``host`` reading)."""

    cpu_percent: float | None = None
    cpu_count: int | None = None
    load_1m: float | None = None
    memory_used: int | None = None
    memory_total: int | None = None
    process_rss: int | None = None
    process_cpu_percent: float | None = None
    process_threads: int | None = None
    pid: int | None = None


@dataclass
class LinkView:
    """Why the link to the control plane is down and when it tries again."""

    reason: str | None = None
    retry_at: float | None = None
    """Clock reading (monotonic) of the next attempt, while the worker waits for it."""
    attempt: int = 0

    def retry_in(self, now: float) -> float | None:
        return None if self.retry_at is None else max(0.0, self.retry_at - now)


@dataclass
class PrivateInferenceView:
    """The worker's private inference: on or off, the workload key's fingerprint, requests."""

    enabled: bool = False
    fingerprint: str | None = None
    served: int = 0
    failed: int = 0


@dataclass
class DashboardModel:
    """Everything the dashboard shows. ``reachable`` is False while no worker answers."""

    reachable: bool = False
    state: str = "offline"
    version: str | None = None
    worker_name: str | None = None
    worker_id: str | None = None
    uptime_s: float | None = None
    uptime_at: float | None = None
    """Clock reading (monotonic) when ``uptime_s`` was received; uptime ticks from there."""
    backends: list[BackendView] = field(default_factory=list)
    gpus: dict[int, GpuView] = field(default_factory=dict)
    installs: dict[tuple[str, str], InstallView] = field(default_factory=dict)
    requests: RequestsView = field(default_factory=RequestsView)
    host: HostView | None = None
    link: LinkView = field(default_factory=LinkView)
    metrics: MetricsView = field(default_factory=MetricsView)
    recent: dict[str, RequestView] = field(default_factory=dict)
    """Request records by id, oldest first (newer ones are appended)."""
    loaded_at: dict[str, float] = field(default_factory=dict)
    """Clock reading when each backend's ``loaded`` list arrived (idle-unload countdowns)."""
    private: PrivateInferenceView | None = None
    """None until a worker that knows private inference has reported it."""
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    error: str | None = None
    """Why the worker is not reachable, for the "worker not running" banner."""
    drained: bool = False
    """The user drained the worker from here: it exits once drained, and that is expected."""
    _now: float = field(default=0.0, repr=False)
    """The clock reading of the event being applied."""

    def uptime(self, now: float) -> float | None:
        """Uptime at clock reading ``now``, extrapolated from the last status."""
        if self.uptime_s is None or self.uptime_at is None or not self.reachable:
            return None
        return self.uptime_s + max(0.0, now - self.uptime_at)

    # -- inputs ---------------------------------------------------------------------------------
    def apply_status(self, doc: Mapping[str, Any], now: float) -> set[Panel]:
        """Replace the state with a full status document (DESIGN §6)."""
        self.reachable = True
        self.error = None
        worker = doc.get("worker") or {}
        self.state = str(worker.get("state") or self.state)
        self.version = worker.get("version", self.version)
        self.worker_name = worker.get("worker_name", self.worker_name)
        self.worker_id = worker.get("worker_id", self.worker_id)
        if worker.get("uptime_s") is not None:
            self.uptime_s = float(worker["uptime_s"])
            self.uptime_at = now
        self._apply_link(worker.get("link"), now)
        self.backends = [parse_backend(b) for b in doc.get("backends") or [] if b]
        for view in self.backends:
            self.loaded_at[view.name] = now
        self._apply_gpus(doc.get("gpus") or [])
        self.installs = {}
        for item in doc.get("installs") or []:
            view = parse_install(item)
            self.installs[view.key] = view
        self._apply_requests(doc.get("requests") or {})
        self._apply_host(doc.get("host"))
        self.drained = False
        private = worker.get("private_inference")
        self.private = parse_private(private) if isinstance(private, Mapping) else None
        return {"link", "backends", "gpus", "host", "installs", "requests", "models"}

    def apply_history(self, doc: Mapping[str, Any]) -> set[Panel]:
        """The worker's metrics history (``GET /v1/history``): the plots' past."""
        self.metrics.load(doc)
        latest = self.metrics.latest
        if latest is not None:
            self._apply_host(latest.get("host"))
        return {"requests", "gpus", "host"}

    def apply_recent(self, records: Iterable[Any]) -> set[Panel]:
        """The worker's request records (``GET /v1/requests``, newest first)."""
        views = [v for v in (parse_request(r) for r in records) if v is not None]
        self.recent = {view.id: view for view in reversed(views)}
        return {"recent"}

    def apply_event(self, event: Mapping[str, Any], now: float) -> set[Panel]:
        """Fold one admin event into the state; returns the panels to redraw.

        An event carrying ``dropped_before`` follows events the worker dropped because this
        client read too slowly (docs/admin-api.md): the state may have missed changes, so the
        screen fetches the full status again as well.
        """
        self._now = now
        changed = self._apply_event(event)
        if event.get("dropped_before"):
            changed.add("resync")
        return changed

    def _apply_event(self, event: Mapping[str, Any]) -> set[Panel]:
        kind = event.get("kind")
        if kind == "state":
            new = event.get("state")
            if new:
                self.state = str(new)
            if "link" in event:
                self._apply_link(event.get("link"), self._now)
            return {"link"}
        if kind == "metrics":
            return self._apply_metrics(event)
        if kind == "request":
            view = parse_request(event.get("request"))
            if view is None:
                return set()
            self.recent.pop(view.id, None)
            self.recent[view.id] = view
            finished = [k for k, v in self.recent.items() if v.status != "running"]
            for key in finished[: max(0, len(finished) - RECENT_REQUESTS_KEPT)]:
                del self.recent[key]
            return {"recent"}
        if kind == "backends":
            if isinstance(event.get("backends"), list):
                self.backends = [parse_backend(b) for b in event["backends"] if b]
                for view in self.backends:
                    self.loaded_at[view.name] = self._now
                return {"backends", "models"}
            return {"resync"}
        if kind == "models":
            return self._apply_models(event)
        if kind == "install":
            return self._apply_install(event)
        if kind == "gpu":
            self._apply_gpus(event.get("gpus") or [])
            return {"gpus"}
        if kind == "requests":
            cap = self.requests.max_concurrent
            self._apply_requests(event)
            # the models tab says when the cap keeps a model's slots idle
            return {"requests"} if self.requests.max_concurrent == cap else {"requests", "models"}
        if kind == "log":
            self.logs.append(format_log_line(event))
            return {"logs"}
        if kind == "private_inference":
            self.private = parse_private(event)
            return {"link"}
        return set()

    def add_log_lines(self, lines: Iterable[str]) -> set[Panel]:
        for line in lines:
            self.logs.append(line.rstrip("\n"))
        return {"logs"}

    def mark_unreachable(self, reason: str) -> set[Panel]:
        """The worker went away: keep the last data visible but say it is stale."""
        self.reachable = False
        self.state = "not running"
        self.error = reason
        self.link = LinkView()
        return {"link", "backends", "gpus", "host", "installs", "requests", "models", "recent"}

    # -- helpers --------------------------------------------------------------------------------
    def _apply_link(self, raw: Any, now: float) -> None:
        if not isinstance(raw, Mapping):
            self.link = LinkView()
            return
        retry_in = _num(raw.get("retry_in_s"))
        self.link = LinkView(
            reason=str(raw["reason"]) if raw.get("reason") else None,
            retry_at=None if retry_in is None else now + retry_in,
            attempt=_int(raw.get("attempt")) or 0,
        )

    def _apply_metrics(self, event: Mapping[str, Any]) -> set[Panel]:
        changed: set[Panel] = set()
        sample = event.get("sample")
        if isinstance(sample, Mapping) and self.metrics.add(sample):
            self._apply_requests(sample)
            self._apply_host(sample.get("host"))
            changed |= {"requests", "gpus", "host"}
        loaded = event.get("loaded")
        if isinstance(loaded, Mapping):
            for view in self.backends:
                if view.name in loaded:
                    view.loaded = parse_loaded_list(loaded[view.name])
                    self.loaded_at[view.name] = self._now
                    changed.add("models")
        return changed

    def _apply_host(self, raw: Any) -> None:
        if not isinstance(raw, Mapping):
            return
        self.host = HostView(
            cpu_percent=_num(raw.get("cpu_percent")),
            cpu_count=_int(raw.get("cpu_count")),
            load_1m=_num(raw.get("load_1m")),
            memory_used=_int(raw.get("memory_used")),
            memory_total=_int(raw.get("memory_total")),
            process_rss=_int(raw.get("process_rss")),
            process_cpu_percent=_num(raw.get("process_cpu_percent")),
            process_threads=_int(raw.get("process_threads")),
            pid=_int(raw.get("pid")),
        )

    def _apply_models(self, event: Mapping[str, Any]) -> set[Panel]:
        backend = event.get("backend")
        models = event.get("models")
        if backend is None or not isinstance(models, list):
            return {"resync"}
        for view in self.backends:
            if view.name == backend:
                view.models = [m if isinstance(m, dict) else {"id": str(m)} for m in models]
                unusable = event.get("unusable")  # the modelstore watcher sends both lists
                if isinstance(unusable, list):
                    view.unusable = [u for u in unusable if isinstance(u, dict)]
                return {"backends", "models"}
        return {"resync"}

    def _apply_install(self, event: Mapping[str, Any]) -> set[Panel]:
        view = parse_install(event)
        before = self.installs.get(view.key)
        self.installs[view.key] = view
        finished = [k for k, v in self.installs.items() if v.finished]
        for key in finished[: max(0, len(finished) - FINISHED_INSTALLS_KEPT)]:
            del self.installs[key]
        if view.phase in MODELS_CHANGED_PHASES and (before is None or before.phase != view.phase):
            # The backend's model list changed; the worker does not always follow an install
            # with a "models" event (the store watcher may find nothing new after the install's
            # own rescan), so fetch the status once to show the model where it now is.
            return {"installs", "resync"}
        return {"installs"}

    def _apply_gpus(self, readings: Iterable[Mapping[str, Any]]) -> None:
        seen: set[int] = set()
        for reading in readings:
            try:
                index = int(reading.get("index", 0))
            except (TypeError, ValueError):
                continue
            seen.add(index)
            view = self.gpus.get(index) or GpuView(index=index, name="")
            view.name = str(reading.get("name") or view.name or f"GPU {index}")
            view.utilization = _num(reading.get("utilization"))
            view.memory_used = _int(reading.get("memory_used"))
            view.memory_total = _int(reading.get("memory_total"))
            view.temperature = _num(reading.get("temperature"))
            view.power_w = _num(reading.get("power_w"))
            self.gpus[index] = view
        for index in set(self.gpus) - seen:
            del self.gpus[index]

    def _apply_requests(self, data: Mapping[str, Any]) -> None:
        req = self.requests
        for name in ("in_flight", "served", "failed", "cancelled"):
            if name in data:
                setattr(req, name, _int(data.get(name)) or 0)
        if "tokens_total" in data:
            req.tokens_total = _int(data.get("tokens_total"))
        if "tokens_per_s" in data:
            req.tokens_per_s = _num(data.get("tokens_per_s"))
        if "max_concurrent" in data:
            req.max_concurrent = _int(data.get("max_concurrent"))


def parse_backend(raw: Mapping[str, Any]) -> BackendView:
    caps = raw.get("capabilities") or {}
    unusable = raw.get("unusable")
    return BackendView(
        name=str(raw.get("name") or "?"),
        endpoint=raw.get("endpoint"),
        status=str(raw.get("status") or "unknown"),
        capabilities={str(k): bool(v) for k, v in caps.items()},
        models=[m if isinstance(m, dict) else {"id": str(m)} for m in raw.get("models") or []],
        loaded=parse_loaded_list(raw.get("loaded")),
        unusable=[u for u in unusable if isinstance(u, dict)] if isinstance(unusable, list) else [],
        detail=str(raw["detail"]) if raw.get("detail") else None,
    )


def parse_private(raw: Mapping[str, Any]) -> PrivateInferenceView:
    fingerprint = raw.get("fingerprint")
    return PrivateInferenceView(
        enabled=bool(raw.get("enabled")),
        fingerprint=fingerprint if isinstance(fingerprint, str) and fingerprint else None,
        served=_int(raw.get("served")) or 0,
        failed=_int(raw.get("failed")) or 0,
    )


def parse_install(raw: Mapping[str, Any]) -> InstallView:
    job = raw.get("job_id", raw.get("id"))
    return InstallView(
        ref=str(raw.get("ref") or "?"),
        backend=str(raw.get("backend") or "pendra"),
        phase=str(raw.get("phase") or "queued"),
        bytes_done=_int(raw.get("bytes_done")) or 0,
        bytes_total=_int(raw.get("bytes_total")),
        rate_bps=_num(raw.get("rate_bps")),
        eta_s=_num(raw.get("eta_s")),
        error=raw.get("error") or None,
        job_id=None if job is None else str(job),
        hint=raw.get("hint") or None,
    )


def format_log_line(event: Mapping[str, Any]) -> str:
    """The worker's own formatted ``line`` (the shape ``pendra logs`` and the log tail have);
    ``LEVEL logger: message`` for an event without one."""
    line = event.get("line")
    if isinstance(line, str) and line:
        return line.rstrip("\n")
    level = str(event.get("level") or "info").upper()
    logger = event.get("logger") or "pendra"
    return f"{level:<7} {logger}: {event.get('message', '')}"


CAPABILITY_NAMES: dict[str, str] = {
    "chat": "chat",
    "embeddings": "embed",
    "images": "image",
    "transcription": "speech",
}
"""Serving capabilities in display order, with the short names the table has room for."""


def capability_summary(capabilities: Mapping[str, bool]) -> str:
    """``chat embed image`` — the serving capabilities a backend has, in a fixed order."""
    names = [short for name, short in CAPABILITY_NAMES.items() if capabilities.get(name)]
    return " ".join(names) if names else "—"


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    number = _num(value)
    return None if number is None else int(number)

"""The live dashboard of the running worker.

Layout: the link bar; an overview row (throughput plots and counters, and the GPUs — or, on a
machine without one, CPU, memory and the worker process); then one view at a time in tabs —
models, recent requests, backends, installs, log (keys 1–5). Every table sorts (``s``/``S``) and
filters (``/``); ``?`` lists every key and the command palette (ctrl+p) every action.

Data flow: one async worker (group "events") subscribes to the admin API's events, asks for the
status, the metrics history and the recent requests once, then reads the events; it posts
:mod:`pendra_tui.messages` and the handlers here fold them into a :class:`DashboardModel` and
redraw only the panels that changed. When the worker goes away the stream worker backs off and
retries (``r`` retries at once), the panels turn grey and say so, and ``R`` starts the worker.
The UI never polls the backends itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from pendra_tui.dashboard_model import DashboardModel, Panel
from pendra_tui.messages import (
    HistoryLoaded,
    LogLines,
    RecentLoaded,
    StatusLoaded,
    WorkerEvent,
    WorkerGone,
)
from pendra_tui.metrics_view import WINDOWS_S
from pendra_tui.model_rows import idle_slots_hint, model_rows, models_summary, row_detail
from pendra_tui.reconnect import backoff_delay
from pendra_tui.request_rows import requests_summary
from pendra_tui.widgets.backends_table import BackendsTable
from pendra_tui.widgets.gpu_panel import GpuPanel, host_summary
from pendra_tui.widgets.host_panel import HostPanel
from pendra_tui.widgets.installs_panel import InstallsPanel
from pendra_tui.widgets.link_bar import LinkBar, LinkInfo
from pendra_tui.widgets.log_view import LogView
from pendra_tui.widgets.models_table import ModelsTable
from pendra_tui.widgets.requests_table import RequestsTable
from pendra_tui.widgets.sortable_table import SortableTable
from pendra_tui.widgets.throughput_panel import ThroughputPanel

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, ConnectionError, EOFError)

TABS: tuple[tuple[str, str], ...] = (
    ("models", "Models"),
    ("requests", "Requests"),
    ("backends", "Backends"),
    ("installs", "Installs"),
    ("log", "Log"),
)
"""Tab ids and titles, in order: key 1 is the first."""

HELP: tuple[tuple[str, str], ...] = (
    ("1 … 5", "Show models, requests, backends, installs or the log"),
    ("tab / shift+tab", "Move between the panels"),
    ("/", "Filter the table, or search the log (esc clears)"),
    ("s / S", "Sort by the next column / reverse the order (or click a header)"),
    ("i", "Install models from the catalogue"),
    ("u", "Uninstall the model under the cursor (or pick one)"),
    ("c", "Cancel the running install"),
    (
        "r",
        "Refresh: reconnect now (to the worker, or the worker to the control plane), "
        "rediscover backends",
    ),
    (
        "d",
        "Drain: the worker stops taking requests, finishes those in flight, tells the "
        "control plane, and exits. Start it again with R (or its service)",
    ),
    ("R", "Start the worker (its service when one is installed)"),
    ("z", "Plots: last 5 or last 15 minutes"),
    ("f / end · w · l", "Log: follow the tail · wrap lines · minimum level"),
    ("f2", "Light/dark theme"),
    ("ctrl+p", "Command palette: every action by name"),
    ("q", "Quit (the worker keeps running)"),
)
"""What ``?`` shows: every key with what it does, in words."""

ACTION_HELP: dict[str, str] = {
    "install": "Install models from the catalogue",
    "uninstall": "Remove the model under the cursor, or pick one",
    "refresh": "Reconnect now and rediscover the backends",
    "start_worker": "Start the worker again (its service when one is installed)",
    "cancel_install": "Cancel the running install",
    "drain": "Stop taking requests, finish those in flight, then the worker exits",
    "filter": "Filter the table, or search the log",
    "zoom": "Plots: last 5 or last 15 minutes",
    "help": "Every key and what it does",
    "quit": "Leave the dashboard; the worker keeps running",
}
"""What the command palette says under each action's name."""


class DashboardScreen(Screen[None]):
    """Link state, throughput, GPUs or host, models, requests, backends, installs and logs."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "install", "Install"),
        Binding("u", "uninstall", "Uninstall", show=False),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("R", "start_worker", "Start worker"),
        Binding("c", "cancel_install", "Cancel install", show=False),
        Binding("d", "drain", "Drain", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("z", "zoom", "Plots 5m/15m", show=False),
        Binding("1", "tab('models')", "Models", show=False),
        Binding("2", "tab('requests')", "Requests", show=False),
        Binding("3", "tab('backends')", "Backends", show=False),
        Binding("4", "tab('installs')", "Installs", show=False),
        Binding("5", "tab('log')", "Log", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]
    """Dashboard keys; ``?`` explains them all. The footer keeps to what fits 80 columns next to
    the focused view's own keys: r and d are in the link bar's hints, ``?`` and the palette."""
    ACTION_HELP: ClassVar[dict[str, str]] = ACTION_HELP
    """What the command palette says under each action's name."""

    def __init__(self, pending_installs: list[tuple[str, str | None]] | None = None) -> None:
        super().__init__()
        self.model = DashboardModel()
        """The dashboard's state; only message handlers change it."""
        self.pending_installs = list(pending_installs or [])
        """Installs chosen in the setup flow, sent once the worker answers."""
        self.window_s = WINDOWS_S[0]
        """How far back the plots reach (``z`` switches)."""
        self._retry_now = asyncio.Event()
        self._next_attempt_at: float | None = None
        self._drawn_reachable: bool | None = None
        self._rows_by_key: dict[str, Any] = {}
        """The models table's rows by key (for the detail line and uninstall)."""

    def compose(self) -> ComposeResult:
        yield LinkBar(id="link-bar")
        with Horizontal(id="overview"):
            yield ThroughputPanel(id="throughput")
            yield GpuPanel(id="gpus")
            yield HostPanel(id="host")
        with TabbedContent(id="tabs", initial="tab-models"):
            with TabPane("1 Models", id="tab-models"):
                yield Input(placeholder="filter models…", id="filter-models", classes="filter")
                yield ModelsTable(id="models")
                yield Static(id="models-detail", classes="pane-status")
            with TabPane("2 Requests", id="tab-requests"):
                yield Input(placeholder="filter requests…", id="filter-requests", classes="filter")
                yield RequestsTable(id="recent")
                yield Static(id="requests-status", classes="pane-status")
            with TabPane("3 Backends", id="tab-backends"):
                yield Input(placeholder="filter backends…", id="filter-backends", classes="filter")
                yield BackendsTable(id="backends")
                yield Static(id="backends-status", classes="pane-status")
            with TabPane("4 Installs", id="tab-installs"):
                yield InstallsPanel(id="installs")
            with TabPane("5 Log", id="tab-log"):
                yield Input(placeholder="search the log…", id="filter-log", classes="filter")
                yield LogView(id="log")
                yield Static(id="log-status", classes="pane-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        for widget in self.query(".filter").results(Input):
            widget.display = False
            if getattr(self.app, "deterministic", False):
                widget.cursor_blink = False
        self.query_one("#host").display = False
        self._set_titles()
        self.query_one(ThroughputPanel).show(self.model.requests, self.model.metrics, self.window_s)
        self.set_interval(1.0, self._tick)
        self.follow_worker()

    # -- the event stream ----------------------------------------------------------------------
    @work(exclusive=True, group="events", exit_on_error=False)
    async def follow_worker(self) -> None:
        """Status, history and requests once, then events; on failure back off and try again."""
        from worker.errors import PendraError

        client = self.app.services.worker
        attempt = 0
        while True:
            try:
                # Subscribe first, then read the status: an event published in between (the link
                # coming up right after start) is in the stream instead of lost. Replaying it on
                # top of the status is harmless: events carry absolute values, in order.
                async with client.event_stream() as stream:
                    doc = await client.status()
                    attempt = 0
                    self.post_message(StatusLoaded(doc))
                    with contextlib.suppress(PendraError):  # an older worker: no history
                        self.post_message(HistoryLoaded(dict(await client.history())))
                    with contextlib.suppress(PendraError):
                        self.post_message(RecentLoaded(list(await client.recent_requests(200))))
                    with contextlib.suppress(PendraError):  # an old worker without logs: no tail
                        self.post_message(LogLines(list(await client.logs(500))))
                    await self._send_pending()
                    async for event in stream:
                        self.post_message(WorkerEvent(dict(event)))
                reason = "the worker closed the event stream"
            except PendraError as exc:
                reason = exc.message
            except CONNECTION_ERRORS as exc:
                reason = f"lost the worker ({exc.__class__.__name__})"
            except Exception as exc:  # a bug must not end following: the worker may recover
                reason = f"unexpected answer from the worker: {exc.__class__.__name__}: {exc}"
            delay = backoff_delay(attempt)
            attempt += 1
            self.post_message(WorkerGone(reason, delay))
            self._retry_now.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), delay)

    async def _send_pending(self) -> None:
        from worker.errors import PendraError

        while self.pending_installs:
            ref, backend = self.pending_installs.pop(0)
            try:
                await self.app.services.worker.install(ref, backend)
            except PendraError as exc:
                self.notify(exc.message, title=f"Install {ref} failed", severity="error")

    # -- handlers: the only place the model changes ----------------------------------------------
    @property
    def _now(self) -> float:
        return self.app.services.clock.monotonic()

    @on(StatusLoaded)
    async def _on_status(self, message: StatusLoaded) -> None:
        await self._redraw(self.model.apply_status(message.doc, self._now))
        self.app.setup_finished()  # a worker runs: an old unfinished setup is moot

    @on(HistoryLoaded)
    async def _on_history(self, message: HistoryLoaded) -> None:
        await self._redraw(self.model.apply_history(message.doc))

    @on(RecentLoaded)
    async def _on_recent(self, message: RecentLoaded) -> None:
        await self._redraw(self.model.apply_recent(message.records))

    @on(WorkerEvent)
    async def _on_event(self, message: WorkerEvent) -> None:
        before = self.model.state
        changed = self.model.apply_event(message.event, self._now)
        if "resync" in changed:
            self._resync()
        if "logs" in changed and self.model.logs:
            self.query_one(LogView).write_line(self.model.logs[-1])
            changed.discard("logs")
        if self.model.state == "draining" and before != "draining":
            self.model.drained = True
        await self._redraw(changed)

    @on(LogLines)
    def _on_log_lines(self, message: LogLines) -> None:
        self.model.logs.clear()
        self.model.add_log_lines(message.lines)
        self.query_one(LogView).set_lines(list(self.model.logs))

    @on(WorkerGone)
    async def _on_gone(self, message: WorkerGone) -> None:
        was_reachable = self.model.reachable
        if message.reason != self.model.error:  # say it once, not on every retry
            self.query_one(LogView).write_line(f"WARNING pendra.app: {message.reason}")
        self._next_attempt_at = self._now + message.retry_in
        drained = self.model.drained
        await self._redraw(self.model.mark_unreachable(message.reason))
        self.model.drained = drained
        if was_reachable and drained:
            self.notify(
                "The worker stopped after draining. Press R to start it again.",
                title="Worker stopped",
            )
        self._tick()

    @work(exclusive=True, group="resync", exit_on_error=False)
    async def _resync(self) -> None:
        """A "backends"/"models" event without the list: fetch the status document again."""
        from worker.errors import PendraError

        try:
            self.post_message(StatusLoaded(await self.app.services.worker.status()))
        except (PendraError, *CONNECTION_ERRORS):
            pass  # the event stream notices too and shows "not running"

    # -- drawing -----------------------------------------------------------------------------------
    async def _redraw(self, panels: set[Panel]) -> None:
        model = self.model
        if self._drawn_reachable is not model.reachable:
            self._drawn_reachable = model.reachable
            self.set_class(not model.reachable, "-unreachable")
            self.refresh_bindings()  # R (start) and d (drain) swap places
        with self.app.batch_update():
            if "link" in panels:
                self._draw_link()
            if "requests" in panels:
                self.query_one(ThroughputPanel).show(model.requests, model.metrics, self.window_s)
            if panels & {"gpus", "host"}:
                await self._draw_hardware()
            if "backends" in panels:
                self._draw_backends()
            if panels & {"models", "backends"}:
                self._draw_models()
            if "recent" in panels:
                self._draw_recent()
            if "installs" in panels:
                await self.query_one(InstallsPanel).show(list(model.installs.values()))
                running = sum(not v.finished for v in model.installs.values())
                label = "4 Installs" + (f" ({running})" if running else "")
                self.query_one(TabbedContent).get_tab("tab-installs").label = label
            if "link" in panels or "requests" in panels:
                self._set_titles()

    async def _draw_hardware(self) -> None:
        model = self.model
        gpus = list(model.gpus.values())
        gpu_panel = self.query_one(GpuPanel)
        host_panel = self.query_one(HostPanel)
        gpu_panel.display = bool(gpus)
        host_panel.display = not gpus
        if gpus:
            await gpu_panel.show(gpus, model.metrics, self.window_s)
            gpu_panel.border_subtitle = host_summary(model.host) or None
        else:
            host_panel.show(model.host, model.metrics, self.window_s)
        self._set_titles()

    def _draw_link(self) -> None:
        model = self.model
        retry_in = model.link.retry_in(self._now)
        reason = model.link.reason
        if not model.reachable:
            reason = model.error
            retry_in = None
        self.query_one(LinkBar).info = LinkInfo(
            state=model.state,
            uptime_s=model.uptime(self._now),
            version=model.version,
            reason=reason,
            retry_in_s=retry_in,
            drained=model.drained,
            in_flight=model.requests.in_flight,
            private=model.private,
            name=model.worker_name,
            worker_id=model.worker_id,
        )

    def _draw_models(self) -> None:
        rows = model_rows(self.model.backends, self.model.loaded_at, self._now)
        table = self.query_one(ModelsTable)
        table.show_models(rows, self._now)
        self._rows_by_key = {row.key: row for row in rows}
        self._model_detail()

    def _model_detail(self) -> None:
        table = self.query_one(ModelsTable)
        rows = self._rows_by_key
        key = table.current_key()
        if not rows:
            text = Text("No models yet. Press i to install one from the catalogue.", style="dim")
        elif key in rows:
            text = Text(row_detail(rows[key], self._now))
            if rows[key].state == "unusable":
                text.stylize("red")
        else:
            text = Text("")
        summary = models_summary(list(rows.values())) if rows else ""
        line = Text.assemble((summary, "dim"), "  " if summary else "", text)
        hint = idle_slots_hint(list(rows.values()), self.model.requests.max_concurrent)
        if hint:
            line.append("\n")
            line.append(hint, style="yellow")
        self.query_one("#models-detail", Static).update(line)

    def _draw_backends(self) -> None:
        note = self.query_one(BackendsTable).show_backends(self.model.backends)
        self._pane_status("backends", note)

    def _draw_recent(self) -> None:
        views = list(self.model.recent.values())
        table = self.query_one(RequestsTable)
        table.show_requests(views, self.app.services.clock.time())
        if views:
            note = f"{requests_summary(views)} · metadata only: prompts and replies stay private"
        else:
            note = "No requests yet. Requests served by this worker show here (metadata only)."
        self._pane_status("requests", note, table)

    def _pane_status(self, pane: str, note: str, table: SortableTable | None = None) -> None:
        table = table or self.query_one(f"#{pane}", SortableTable)
        parts = [note] if note else []
        if table.filter_text:
            parts.append(f"filter {table.filter_text!r}: {len(table.row_keys_shown)} shown")
        sort = table.sort_description()
        if sort:
            parts.append(sort)
        self.query_one(f"#{pane}-status", Static).update(Text(" · ".join(parts), style="dim"))

    def _set_titles(self) -> None:
        window = f"last {self.window_s / 60:.0f} min"
        stale = " · stale" if not self.model.reachable else ""
        self.query_one("#throughput").border_title = f"Throughput · {window}{stale}"
        self.query_one("#gpus").border_title = f"GPUs · {window}{stale}"
        self.query_one("#host").border_title = f"Host · no GPU · {window}{stale}"

    def _tick(self) -> None:
        """Every second: uptime, countdowns, ages."""
        self._draw_link()
        tabs = self.query_one(TabbedContent)
        if tabs.active == "tab-models" and self.model.backends:
            self._draw_models()
        elif tabs.active == "tab-requests" and self.model.recent:
            self._draw_recent()

    @on(SortableTable.CellHighlighted)
    @on(SortableTable.RowHighlighted)
    def _cursor_moved(self) -> None:
        if self.query_one(TabbedContent).active == "tab-models":
            self._model_detail()

    @on(SortableTable.Sorted)
    def _sorted(self, event: SortableTable.Sorted) -> None:
        if isinstance(event.table, RequestsTable):
            self._draw_recent()
        elif isinstance(event.table, BackendsTable):
            self._draw_backends()

    @on(LogView.Changed)
    def _log_changed(self) -> None:
        self.query_one("#log-status", Static).update(self.query_one(LogView).status_text())

    # -- filter ----------------------------------------------------------------------------------
    def _active_pane(self) -> str:
        return self.query_one(TabbedContent).active.removeprefix("tab-")

    def action_filter(self) -> None:
        pane = self._active_pane()
        if pane == "installs":
            self.notify("Nothing to filter in the installs.", severity="warning")
            return
        field = self.query_one(f"#filter-{pane}", Input)
        field.display = True
        field.focus()

    @on(Input.Changed, ".filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        pane = (event.input.id or "").removeprefix("filter-")
        if pane == "log":
            self.query_one(LogView).query = event.value
            return
        table = self.query_one(f"#{'recent' if pane == 'requests' else pane}", SortableTable)
        table.set_filter(event.value)
        if pane == "requests":
            self._draw_recent()
        elif pane == "backends":
            self._draw_backends()
        else:
            self._model_detail()

    @on(Input.Submitted, ".filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.display = False
        self._focus_pane()

    def key_escape(self) -> None:
        """Esc in a filter field clears it and gives the table back the keys."""
        focused = self.focused
        if isinstance(focused, Input) and focused.has_class("filter"):
            focused.value = ""
            focused.display = False
            self._focus_pane()

    def _focus_pane(self) -> None:
        pane = self._active_pane()
        target = {
            "models": "#models",
            "requests": "#recent",
            "backends": "#backends",
            "installs": "#installs",
            "log": "#log",
        }[pane]
        self.query_one(target).focus()

    def action_tab(self, pane: str) -> None:
        self.query_one(TabbedContent).active = f"tab-{pane}"
        self._focus_pane()
        self._tick()

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self.refresh_bindings()

    # -- actions -------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show only the keys that do something now."""
        reachable = self.model.reachable
        if action == "start_worker":
            return not reachable
        if action in ("drain", "install", "uninstall"):
            return reachable
        if action == "cancel_install":
            return any(not v.finished for v in self.model.installs.values())
        return True

    def action_help(self) -> None:
        from pendra_tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen(list(HELP)))

    def action_zoom(self) -> None:
        index = WINDOWS_S.index(self.window_s) if self.window_s in WINDOWS_S else 0
        self.window_s = WINDOWS_S[(index + 1) % len(WINDOWS_S)]
        self.run_worker(self._redraw({"requests", "gpus", "host"}), group="redraw")

    def action_install(self) -> None:
        from pendra_tui.screens.catalogue import CatalogueScreen

        def chosen(refs: list[str] | None) -> None:
            if refs:
                self.pending_installs.extend((ref, None) for ref in refs)
                self._install_now()
                self.action_tab("installs")

        available = [b.name for b in self.model.backends if b.status == "ready"]
        self.app.push_screen(CatalogueScreen(pick=True, available=available), chosen)

    @work(group="commands", exit_on_error=False)
    async def _install_now(self) -> None:
        await self._send_pending()

    def action_uninstall(self) -> None:
        from pendra_tui.screens.confirm import ConfirmScreen
        from pendra_tui.screens.uninstall import UninstallScreen, uninstallable

        choices = uninstallable(self.model.backends)
        if not choices:
            self.notify("No installed model can be removed from here.", severity="warning")
            return
        row = None
        if self.query_one(TabbedContent).active == "tab-models":
            key = self.query_one(ModelsTable).current_key()
            row = self._rows_by_key.get(key) if key else None
        if row is not None and (row.model, row.backend) in choices:
            target = (row.model, row.backend)

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self._run_command("uninstall", *target)

            self.app.push_screen(
                ConfirmScreen(
                    f"Remove {row.model}?",
                    f"It is deleted from {row.backend}; install it again with i.",
                ),
                confirmed,
            )
            return

        def chosen(choice: tuple[str, str] | None) -> None:
            if choice:
                self._run_command("uninstall", *choice)

        self.app.push_screen(UninstallScreen(choices), chosen)

    def action_refresh(self) -> None:
        """Reconnect now where something waits to (the app to the worker, the worker to the
        control plane), and rediscover the backends."""
        if not self.model.reachable:
            self._retry_now.set()
            self.notify("Trying to reach the worker now…")
            return
        self._run_command("refresh")

    def action_start_worker(self) -> None:
        if self.model.reachable:
            self.notify("The worker is running.")
            return
        self._offer_start()

    @work(thread=True, exclusive=True, group="start-plan", exit_on_error=False)
    def _offer_start(self) -> None:
        """Find out how the worker was set up to run (asking Docker blocks), then ask."""
        launcher = self._restart_launcher()
        self.app.call_from_thread(self._confirm_start, launcher)

    def _restart_launcher(self) -> Any:
        """The worker's container when it was set up in Docker, else the process launcher (its
        service when one is installed, else ``pendra --no-ui`` in the background)."""
        services = self.app.services
        docker = services.docker
        if docker is not None and docker.has_worker_container():
            return docker
        return services.launcher

    def _confirm_start(self, launcher: Any) -> None:
        from pendra_tui.screens.confirm import ConfirmScreen

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._start_worker(launcher)

        words = launcher.restart_plan() if hasattr(launcher, "restart_plan") else "start it"
        self.app.push_screen(
            ConfirmScreen(
                "Start the worker?",
                f"This will {words}; the dashboard reconnects when it answers.",
            ),
            confirmed,
        )

    @work(group="commands", exit_on_error=False)
    async def _start_worker(self, launcher: Any) -> None:
        from worker.errors import PendraError

        start = getattr(launcher, "restart", None) or launcher.start
        self.notify("Starting the worker…")
        try:
            summary = await start()
        except (PendraError, OSError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            self.notify(message, title="The worker did not start", severity="error", timeout=15)
            return
        self.model.drained = False
        self.notify(str(summary), title="Worker started")
        self._retry_now.set()

    def action_cancel_install(self) -> None:
        running = [v for v in self.model.installs.values() if not v.finished and v.job_id]
        if not running:
            self.notify("No running install to cancel.", severity="warning")
            return
        self._run_command("cancel", running[-1].job_id or "")

    def action_drain(self) -> None:
        from pendra_tui.screens.confirm import ConfirmScreen

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._run_command("drain")

        in_flight = self.model.requests.in_flight
        self.app.push_screen(
            ConfirmScreen(
                "Drain and stop the worker?",
                "It stops taking new requests, lets the "
                f"{in_flight} in flight finish, tells the control plane, and then the worker "
                "process exits: nothing serves requests until it is started again. Start it "
                "again from here with R, or with `pendra --no-ui` / its service.",
            ),
            confirmed,
        )

    def action_quit(self) -> None:
        self.app.exit(0)

    @work(group="commands", exit_on_error=False)
    async def _run_command(self, name: str, *args: str) -> None:
        """Send one command to the worker; the result arrives as events, errors as a toast."""
        from worker.errors import PendraError

        client = self.app.services.worker
        try:
            if name == "refresh":
                retried = False
                if self.model.link.retry_at is not None:
                    answer = await client.retry_link()
                    retried = bool(answer.get("retrying")) if isinstance(answer, dict) else False
                await client.refresh_backends()
                self.notify(
                    "Reconnecting to the control plane now; backends refreshed."
                    if retried
                    else "Backends refreshed."
                )
            elif name == "drain":
                self.model.drained = True
                await client.drain()
                self.notify("Draining: new requests are refused; the worker exits when done.")
            elif name == "uninstall":
                await client.uninstall(args[0], args[1])
                self.notify(f"Removed {args[0]} from {args[1]}.")
            elif name == "cancel":
                await client.cancel_install(args[0])
        except PendraError as exc:
            self.notify(str(exc), title="The worker refused", severity="error")
        except CONNECTION_ERRORS:
            self.notify("The worker is not running.", severity="error")

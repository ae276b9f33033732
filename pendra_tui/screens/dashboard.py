"""The live dashboard of the running worker.

Data flow: one async worker (group "events") subscribes to the admin API's events, asks for
``status()`` once, then reads the events; it posts :mod:`pendra_tui.messages` and the handlers
here fold them into a :class:`DashboardModel` and redraw only the panels that changed. When the
worker goes away the stream worker backs off and retries, and the screen says "worker not
running". The UI never polls the backends itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Log

from pendra_tui.dashboard_model import DashboardModel, Panel
from pendra_tui.messages import LogLines, StatusLoaded, WorkerEvent, WorkerGone
from pendra_tui.reconnect import backoff_delay
from pendra_tui.widgets.backends_table import BackendsTable
from pendra_tui.widgets.gpu_panel import GpuPanel
from pendra_tui.widgets.installs_panel import InstallsPanel
from pendra_tui.widgets.link_bar import LinkBar
from pendra_tui.widgets.requests_panel import RequestsPanel

KEY_NAMES = {"question_mark": "?"}
"""Binding key names shown as the key a person presses."""

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, ConnectionError, EOFError)


class DashboardScreen(Screen[None]):
    """Link state, backends, GPUs, installs, requests and logs of the running worker."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "install", "Install"),
        Binding("u", "uninstall", "Uninstall"),
        Binding("r", "refresh", "Refresh backends"),
        Binding("c", "cancel_install", "Cancel install", show=False),
        Binding("d", "drain", "Drain"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]
    """Dashboard keys; ``?`` lists them all."""

    def __init__(self, pending_installs: list[tuple[str, str | None]] | None = None) -> None:
        super().__init__()
        self.model = DashboardModel()
        """The dashboard's state; only message handlers change it."""
        self.pending_installs = list(pending_installs or [])
        """Installs chosen in the setup flow, sent once the worker answers."""

    def compose(self) -> ComposeResult:
        yield LinkBar(id="link-bar")
        with Vertical(id="dash"):
            with Horizontal(id="dash-top"):
                yield BackendsTable(id="backends")
                yield RequestsPanel(id="requests")
            with Horizontal(id="dash-middle"):
                yield GpuPanel(id="gpus")
                yield InstallsPanel(id="installs")
            yield Log(id="log", max_lines=500, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#backends").border_title = "Backends"
        self.query_one("#requests").border_title = "Requests"
        self.query_one("#gpus").border_title = "GPUs"
        self.query_one("#installs").border_title = "Installs"
        self.query_one("#log").border_title = "Log"
        self.query_one(RequestsPanel).show(self.model.requests)
        self.set_interval(1.0, self._tick_uptime)
        self.follow_worker()

    # -- the event stream ----------------------------------------------------------------------
    @work(exclusive=True, group="events", exit_on_error=False)
    async def follow_worker(self) -> None:
        """Status once, then events; on failure back off and try again, forever."""
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
                    with contextlib.suppress(PendraError):  # an old worker without logs: no tail
                        self.post_message(LogLines(list(await client.logs(200))))
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
            await asyncio.sleep(delay)

    async def _send_pending(self) -> None:
        from worker.errors import PendraError

        while self.pending_installs:
            ref, backend = self.pending_installs.pop(0)
            try:
                await self.app.services.worker.install(ref, backend)
            except PendraError as exc:
                self.notify(str(exc), title=f"Install {ref} failed", severity="error")

    # -- handlers: the only place the model changes ----------------------------------------------
    @on(StatusLoaded)
    async def _on_status(self, message: StatusLoaded) -> None:
        await self._redraw(
            self.model.apply_status(message.doc, self.app.services.clock.monotonic())
        )

    @on(WorkerEvent)
    async def _on_event(self, message: WorkerEvent) -> None:
        changed = self.model.apply_event(message.event, self.app.services.clock.monotonic())
        if "resync" in changed:
            self._resync()
        if "logs" in changed and self.model.logs:
            self.query_one(Log).write_line(self.model.logs[-1])
            changed.discard("logs")
        await self._redraw(changed)

    @on(LogLines)
    def _on_log_lines(self, message: LogLines) -> None:
        self.model.add_log_lines(message.lines)
        log = self.query_one(Log)
        log.clear()
        log.write_lines(list(self.model.logs))

    @on(WorkerGone)
    async def _on_gone(self, message: WorkerGone) -> None:
        if message.reason != self.model.error:  # say it once, not on every retry
            self.query_one(Log).write_line(f"UI      pendra.app: {message.reason}")
        await self._redraw(self.model.mark_unreachable(message.reason))

    @work(exclusive=True, group="resync", exit_on_error=False)
    async def _resync(self) -> None:
        """A "backends"/"models" event without the list: fetch the status document again."""
        from worker.errors import PendraError

        try:
            self.post_message(StatusLoaded(await self.app.services.worker.status()))
        except (PendraError, *CONNECTION_ERRORS):
            pass  # the event stream notices too and shows "not running"

    async def _redraw(self, panels: set[Panel]) -> None:
        model = self.model
        self.set_class(not model.reachable, "-unreachable")
        with self.app.batch_update():
            if "link" in panels:
                bar = self.query_one(LinkBar)
                bar.state = model.state
                bar.version = model.version
                bar.worker_name = model.worker_name
                bar.worker_id = model.worker_id
                bar.error = None if model.reachable else model.error
                bar.private = model.private
                self._tick_uptime()
            if "backends" in panels:
                self.query_one(BackendsTable).show(model.backends)
            if "requests" in panels:
                self.query_one(RequestsPanel).show(model.requests)
            if "gpus" in panels:
                await self.query_one(GpuPanel).show(list(model.gpus.values()))
            if "installs" in panels or "backends" in panels:  # bad model files come with backends
                await self.query_one(InstallsPanel).show(
                    list(model.installs.values()), model.unusable
                )

    def _tick_uptime(self) -> None:
        self.query_one(LinkBar).uptime_s = self.model.uptime(self.app.services.clock.monotonic())

    # -- actions -------------------------------------------------------------------------------
    def action_help(self) -> None:
        from pendra_tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen(self.active_bindings_help()))

    def active_bindings_help(self) -> list[tuple[str, str]]:
        """Every dashboard key, as the help overlay lists it."""
        keys = [(KEY_NAMES.get(b.key, b.key), b.description) for b in self.BINDINGS]
        return [
            *keys,
            ("f2", "Light/dark theme"),
            ("tab / shift+tab", "Move between panels"),
            ("ctrl+p", "Command palette"),
        ]

    def action_install(self) -> None:
        from pendra_tui.screens.catalogue import CatalogueScreen

        def chosen(refs: list[str] | None) -> None:
            if refs:
                self.pending_installs.extend((ref, None) for ref in refs)
                self._install_now()

        self.app.push_screen(CatalogueScreen(pick=True), chosen)

    @work(group="commands", exit_on_error=False)
    async def _install_now(self) -> None:
        await self._send_pending()

    def action_uninstall(self) -> None:
        from pendra_tui.screens.uninstall import UninstallScreen, uninstallable

        choices = uninstallable(self.model.backends)
        if not choices:
            self.notify("No installed model can be removed from here.", severity="warning")
            return

        def chosen(choice: tuple[str, str] | None) -> None:
            if choice:
                self._run_command("uninstall", *choice)

        self.app.push_screen(UninstallScreen(choices), chosen)

    def action_refresh(self) -> None:
        self._run_command("refresh")

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

        self.app.push_screen(
            ConfirmScreen(
                "Drain the worker?",
                "It stops taking new requests, finishes the ones in flight and goes offline.",
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
                await client.refresh_backends()
                self.notify("Backends refreshed.")
            elif name == "drain":
                await client.drain()
                self.notify("Draining: new requests are refused.")
            elif name == "uninstall":
                await client.uninstall(args[0], args[1])
                self.notify(f"Removed {args[0]} from {args[1]}.")
            elif name == "cancel":
                await client.cancel_install(args[0])
        except PendraError as exc:
            self.notify(str(exc), title="The worker refused", severity="error")
        except CONNECTION_ERRORS:
            self.notify("The worker is not running.", severity="error")

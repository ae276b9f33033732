"""The app's real adapters (``pendra_tui.services``) against the real parts, no fakes.

A real sandbox control plane (catalogue, key verification, WSS hub, OpenAI ingress) and a real
``worker.runtime.Worker`` with ``enable_operations()`` — its admin server on a real Unix socket,
its install manager, GPU sampler and log handler — run in the test's event loop; the app runs in
the same loop with :func:`pendra_tui.services.real_services`, so every event the dashboard folds in
is one the worker really published. Model files come from a real HTTP server: the sandbox's
``/files/`` for the tiny chat GGUF, and a loopback server that trickles bytes for the install that
gets cancelled.

Only the NVIDIA driver is absent (this box has no GPU): the GPU sampler runs for real and reports
none, and the dashboard says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from pendra_tui.app import build_app
from pendra_tui.dashboard_model import DashboardModel
from pendra_tui.screens.catalogue import CatalogueScreen
from pendra_tui.screens.dashboard import DashboardScreen
from pendra_tui.services import AdminWorkerClient, real_services
from pendra_tui.widgets.link_bar import LinkBar
from pendra_tui.widgets.log_view import LogView
from tests.model_factory import NO_EARLY_END
from tests.tui.pilot_waits import dashboard, plain, wait_for
from worker.keys import WorkerKey, generate_key
from worker.runtime import Worker
from worker.sandbox.app import HUB_KEY, SandboxConfig, bound_port, serve
from worker.sandbox.app import build_app as build_sandbox
from worker.settings import BACKEND_KINDS, Settings, load_settings

pytestmark = pytest.mark.timeout(90)

INGRESS_KEY = "sk-tui-real"
SLOW_SIZE = 64 * 1024 * 1024
"""Size the trickling server announces: the download can never finish during the test."""


def catalogue_doc(tiny: Path, slow_url: str) -> dict[str, Any]:
    """A catalogue with the tiny chat GGUF (served by the sandbox) and a never-ending download."""
    digest = hashlib.sha256(tiny.read_bytes()).hexdigest()
    return {
        "version": 1,
        "models": [
            {
                "id": "tiny",
                "name": "Tiny test model",
                "family": "llama",
                "task": "chat",
                "variants": [
                    {
                        "tag": "chat",
                        "parameters": "1M",
                        "quantisation": "F32",
                        "context_length": 256,
                        "size_bytes": tiny.stat().st_size,
                        "backends": ["pendra"],
                        "gguf_url": f"/files/{tiny.name}",
                        "gguf_sha256": digest,
                    }
                ],
            },
            {
                "id": "slow",
                "name": "Slow download",
                "family": "llama",
                "task": "chat",
                "variants": [
                    {
                        "tag": "1b",
                        "size_bytes": SLOW_SIZE,
                        "backends": ["pendra"],
                        "gguf_url": slow_url,
                        "gguf_sha256": "0" * 64,
                    }
                ],
            },
        ],
    }


async def trickle(request: web.Request) -> web.StreamResponse:
    """64 KiB every 0.1 s of a file announced as SLOW_SIZE bytes: a download that stays running."""
    response = web.StreamResponse(headers={"Content-Length": str(SLOW_SIZE)})
    await response.prepare(request)
    chunk = b"\0" * 65536
    try:
        for _ in range(SLOW_SIZE // len(chunk)):
            await response.write(chunk)
            await asyncio.sleep(0.1)
    except ConnectionError:
        pass  # the install was cancelled: the worker hung up
    return response


@dataclass
class Stack:
    settings: Settings
    worker: Worker
    task: asyncio.Task[int]
    sandbox_url: str
    key: WorkerKey
    sandbox: web.Application

    def routed(self) -> set[str]:
        """Models the sandbox can route to this worker right now."""
        return {str(m["id"]) for m in self.sandbox[HUB_KEY].models()}


@pytest.fixture
async def stack(
    tmp_path: Path,
    pendra_home: Path,
    tiny_chat_gguf: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Stack]:
    """Sandbox + file server + a linked, operated Worker; everything stopped afterwards."""
    caplog.set_level(logging.INFO, logger="worker")  # as `pendra --no-ui` logs
    files = web.Application()
    files.router.add_get("/slow.gguf", trickle)
    files_runner = await serve(files, "127.0.0.1", 0)
    slow_url = f"http://127.0.0.1:{bound_port(files_runner)}/slow.gguf"
    key = generate_key()
    sandbox_app = build_sandbox(
        SandboxConfig(
            api_key=INGRESS_KEY,
            accepted_keys={key.public_key},
            catalogue=catalogue_doc(tiny_chat_gguf, slow_url),
            extra_files={tiny_chat_gguf.name: tiny_chat_gguf},
        )
    )
    sandbox_runner = await serve(sandbox_app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{bound_port(sandbox_runner)}"
    monkeypatch.setenv("PENDRA_API_URL", url)
    monkeypatch.setenv("PENDRA_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("PENDRA_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("PENDRA_THREADS", "1")
    for kind in BACKEND_KINDS:
        monkeypatch.setenv(f"{kind.upper()}_ENDPOINT", "off")
    settings = load_settings()
    worker = Worker(settings, key)
    worker.enable_operations()
    task = asyncio.create_task(worker.run(), name="tui-real-worker")
    try:
        deadline = time.monotonic() + 30
        while not settings.admin_socket.exists():
            assert not task.done(), "the worker stopped at start"
            assert time.monotonic() < deadline, "the worker's admin socket never appeared"
            await asyncio.sleep(0.02)
        yield Stack(settings, worker, task, url, key, sandbox_app)
    finally:
        worker.request_stop()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await sandbox_runner.cleanup()
            await files_runner.cleanup()


def install_phase(pilot: Pilot, ref: str) -> str | None:
    for view in dashboard(pilot).model.installs.values():
        if view.ref == ref:
            return view.phase
    return None


def pendra_models(pilot: Pilot) -> list[str]:
    for view in dashboard(pilot).model.backends:
        if view.name == "pendra":
            return view.model_ids
    return []


async def test_dashboard_on_a_real_worker_installs_serves_and_cancels(
    stack: Stack, pendra_home: Path
) -> None:
    app = build_app(real_services(stack.settings), start="dashboard", deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        # the link state arrives as a real "state" event (or in the first status)
        await wait_for(pilot, lambda: app.screen.query_one(LinkBar).state == "connected", "link")
        screen = dashboard(pilot)
        assert screen.model.version and screen.model.uptime_s is not None
        assert screen.model.backends[0].name == "pendra"
        assert screen.model.gpus == {}  # no NVIDIA driver here: the real sampler finds none
        assert app.screen.query_one("#host").display  # CPU, RAM, worker process instead
        assert not app.screen.query_one("#gpus").display
        await wait_for(pilot, lambda: screen.model.host is not None, "a host reading")
        assert screen.model.host and screen.model.host.pid == os.getpid()  # the worker: us

        # i → the catalogue from the real sandbox, with real fit verdicts for this machine
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen), "the catalogue")
        table = app.screen.query_one("#catalogue", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, "catalogue rows")
        fit = str(table.get_cell("tiny:chat", "fit"))
        assert fit != "? unknown" and "needs" not in fit  # fit judged from size and RAM
        await pilot.press("space", "ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")

        # install events carry the real job; the models event brings the new model in
        await wait_for(pilot, lambda: install_phase(pilot, "tiny:chat") == "done", "install done")
        await wait_for(pilot, lambda: "tiny:chat" in pendra_models(pilot), "the model served")
        assert (stack.settings.models_dir / "tiny-chat.gguf").is_file()

        # a request through the control plane's ingress shows up in the counters
        await wait_for(pilot, lambda: "tiny:chat" in stack.routed(), "the sandbox routes the model")
        async with httpx.AsyncClient(timeout=60) as client:
            answer = await client.post(
                f"{stack.sandbox_url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {INGRESS_KEY}"},
                json={
                    "model": "tiny:chat",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 4,
                    # random weights may pick an end token first: ban </s> and <|im_end|> so
                    # the answer has tokens for the record to count
                    "logit_bias": NO_EARLY_END,
                },
            )
        assert answer.status_code == 200, answer.text
        await wait_for(pilot, lambda: dashboard(pilot).model.requests.served == 1, "served == 1")
        counters = plain(app.screen.query_one("#counters", Static).content)
        assert counters.startswith("served 1  failed 0  cancelled 0")
        # the request's record (metadata only) in the requests view, the model now in memory
        await wait_for(
            pilot,
            lambda: any(
                r.model == "tiny:chat" and r.status == "ok"
                for r in dashboard(pilot).model.recent.values()
            ),
            "the request record",
        )
        record = next(r for r in dashboard(pilot).model.recent.values() if r.model == "tiny:chat")
        assert record.backend == "pendra" and record.tokens_out == 4
        await pilot.press("2")
        requests_table = app.screen.query_one("#recent", DataTable)
        await wait_for(pilot, lambda: requests_table.row_count == 1, "the requests table")
        await wait_for(
            pilot,
            lambda: any(
                row.state == "ready" and row.model == "tiny:chat"
                for row in dashboard(pilot)._rows_by_key.values()
            ),
            "the model loaded in the models view",
        )
        # the history the plots draw from: the worker's own samples, the request among them
        await wait_for(
            pilot,
            lambda: any(s.get("served") == 1 for s in dashboard(pilot).model.metrics.samples),
            "a metrics sample after the request",
        )

        # tokens/s falls back to 0 once the worker's rate window has passed: the dashboard shows
        # the worker's own rate, the one `pendra status` reports (it once kept the last busy one)
        await wait_for(
            pilot,
            lambda: dashboard(pilot).model.requests.tokens_per_s == 0.0,
            "tokens/s back to 0",
            timeout=40,
        )
        assert (await app.services.worker.status())["requests"]["tokens_per_s"] == 0.0
        label = app.screen.query_one(".tokens .metric-label", Static)
        assert plain(label.content).startswith("tok/s 0")

        # a running install is cancelled by its real job id (key c)
        await app.services.worker.install("slow:1b", None)
        await wait_for(
            pilot, lambda: install_phase(pilot, "slow:1b") == "downloading", "download started"
        )
        running = next(v for v in dashboard(pilot).model.installs.values() if v.ref == "slow:1b")
        assert running.job_id and running.job_id in {
            j["id"] for j in stack.worker.install_manager.snapshot()
        }
        await pilot.press("c")
        await wait_for(pilot, lambda: install_phase(pilot, "slow:1b") == "cancelled", "cancelled")

        # the log pane holds the worker's own log lines (the tail, then live "log" events)
        log = app.screen.query_one(LogView)
        await wait_for(
            pilot, lambda: any("install of" in line for line in log.lines), "install log lines"
        )
        assert stack.key.text not in "\n".join(log.lines)

        # q leaves the app; the worker keeps running
        await pilot.press("q")
    assert not stack.task.done()
    assert (await AdminWorkerClient(stack.settings).status())["worker"]["state"] == "connected"


async def test_model_folds_every_event_kind_the_worker_publishes(stack: Stack) -> None:
    """The pure model against the live stream: each kind changes the panel it should."""
    client = AdminWorkerClient(stack.settings)
    model = DashboardModel()
    model.apply_status(await client.status(), 0.0)
    seen: dict[str, set[str]] = {}

    subscribed = asyncio.Event()

    async def follow() -> None:
        async with client.event_stream() as stream:  # subscribed on entry
            subscribed.set()
            async for event in stream:
                seen.setdefault(str(event["kind"]), set()).update(model.apply_event(event, 0.0))

    follower = asyncio.create_task(follow())
    try:
        await asyncio.wait_for(subscribed.wait(), 30)
        await client.refresh_backends()  # "backends" with the full list
        job = await client.install("tiny:chat")
        assert job["id"]
        deadline = time.monotonic() + 30
        while not any(v.phase == "done" for v in model.installs.values()):
            assert time.monotonic() < deadline, f"install never finished: {model.installs}"
            await asyncio.sleep(0.05)
        await client.uninstall("tiny:chat")
        deadline = time.monotonic() + 10
        while (
            model.installs[("tiny:chat", "pendra")].phase != "removed"
            or "log" not in seen
            or "metrics" not in seen  # one sample every 2 s
        ):
            assert time.monotonic() < deadline, f"saw only {sorted(seen)}: {model.installs}"
            await asyncio.sleep(0.05)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    assert "backends" in seen["backends"]
    assert {"requests", "host"} <= seen["metrics"]  # every 2 s: counters, rate, host
    # an install that ends (done, removed) also asks for the status: the model list changed
    assert seen["install"] == {"installs", "resync"}
    if "models" in seen:  # the modelstore watcher's event, when it saw the change first
        assert seen["models"] & {"backends", "resync"}
    assert seen["log"] == {"logs"}
    view = model.installs[("tiny:chat", "pendra")]
    assert view.finished and view.job_id is None  # "removed" comes from the uninstall
    assert any(line.strip() for line in model.logs)
    assert os.environ["PENDRA_HOME"] in str(stack.settings.admin_socket)

"""The app attached to a worker that runs as its own process, as ``pendra attach`` finds one.

A ``pendra sandbox`` process (control plane, catalogue, OpenAI ingress) and a ``pendra --no-ui``
process serving the built-in backend on a tiny random-weight GGUF; the app runs in the test with
:func:`pendra_tui.services.real_services` and reaches the worker only through its admin socket.
The app's own environment names a control plane where nothing listens — a shell without
``APP_SERVER_WS_URL``, as after a setup in another shell — so whatever the dialogs show of the
catalogue came through the worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from pendra_tui.app import build_app
from pendra_tui.screens.catalogue import CatalogueScreen
from pendra_tui.screens.dashboard import DashboardScreen
from pendra_tui.services import real_services
from pendra_tui.widgets.link_bar import LinkBar
from tests.link.link_procs import API_KEY, ProcessStack, free_port, start_process_stack
from tests.model_factory import NO_EARLY_END
from tests.tui.pilot_waits import dashboard, plain, wait_for
from worker.catalogue import CatalogueClient, CatalogueError
from worker.catalogue.cache import cache_path
from worker.settings import load_settings

pytestmark = pytest.mark.timeout(150)

MODEL = "tiny-long"
"""The tiny chat model with an 8192-token context: a long generation, so a request is still
running when its client hangs up."""


def catalogue(tiny: Path) -> dict[str, Any]:
    """A catalogue only this test's sandbox serves (not the bundled sample)."""

    def variant(tag: str) -> dict[str, Any]:
        return {
            "tag": tag,
            "parameters": "1M",
            "quantisation": "F32",
            "context_length": 512,
            "size_bytes": tiny.stat().st_size,
            "backends": ["pendra"],
            "gguf_url": f"/files/{tiny.name}",
            "gguf_sha256": hashlib.sha256(tiny.read_bytes()).hexdigest(),
        }

    return {
        "version": 1,
        "models": [
            {
                "id": "procmodel",
                "name": "Test model",
                "family": "llama",
                "task": "chat",
                "variants": [variant("chat"), variant("long")],
            }
        ],
    }


@pytest.fixture
def stack(
    tmp_path: Path,
    clean_env: dict[str, str],
    tiny_chat_gguf: Path,
    long_chat_gguf: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ProcessStack]:
    catalogue_path = tmp_path / "catalogue.json"
    catalogue_path.write_text(json.dumps(catalogue(tiny_chat_gguf)))
    running = start_process_stack(
        clean_env, tmp_path, {MODEL: long_chat_gguf}, "--catalogue", str(catalogue_path)
    )
    # The app's own shell: a control plane nobody answers at, the worker's PENDRA_HOME.
    monkeypatch.setenv("PENDRA_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("PENDRA_MODELS_DIR", running.env["PENDRA_MODELS_DIR"])
    try:
        yield running
    finally:
        running.close()


def dialog_status(pilot: Pilot) -> str:
    return plain(pilot.app.screen.query_one("#catalogue-status", Static).content)


async def open_install_dialog(pilot: Pilot, shows: str) -> str:
    """``i`` on the dashboard; returns the dialog's status line once it shows ``shows``."""
    await pilot.press("i")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CatalogueScreen), "the dialog")
    await wait_for(pilot, lambda: shows in dialog_status(pilot), repr(shows))
    return dialog_status(pilot)


async def pendra_status(env: dict[str, str]) -> dict[str, Any]:
    """``pendra status --json`` as a user runs it, in the worker's environment."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "status",
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    return json.loads(out)


async def test_install_dialog_lists_the_catalogue_of_the_running_worker(
    stack: ProcessStack,
) -> None:
    settings = load_settings()
    assert settings.admin_socket.exists()  # the worker's home: the app attaches to it
    with pytest.raises(CatalogueError):  # the app cannot reach a control plane by itself
        await CatalogueClient(settings, timeout_s=5).load()

    app = build_app(real_services(settings), start="dashboard", deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        bar = app.screen.query_one(LinkBar)
        await wait_for(pilot, lambda: bar.state == "connected", "the worker's link")

        # i: the rows of the sandbox the worker is linked to, fresh, with this machine's fit
        status = await open_install_dialog(pilot, "2 of 2 variants")
        table = app.screen.query_one("#catalogue", DataTable)
        refs = {str(table.get_cell_at((row, 1))) for row in range(table.row_count)}
        assert refs == {"procmodel:chat", "procmodel:long"}
        assert "offline" not in status and "could not" not in status
        assert str(table.get_cell("procmodel:chat", "fit")) != "? unknown"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")

        # the control plane goes away: the worker's cached copy, said to be one, and why
        stack.sandbox.kill()
        await wait_for(pilot, lambda: bar.state != "connected", "the link to drop")
        status = await open_install_dialog(pilot, "offline")
        assert "offline: showing the worker's cached catalogue from" in status
        assert f"Cannot fetch the catalogue from {stack.url}" in status
        assert app.screen.query_one("#catalogue", DataTable).row_count == 2
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")

        # no cached copy either: what went wrong, and what to do, in the dialog
        cache_path(settings.cache_dir).unlink()
        status = await open_install_dialog(pilot, "could not be loaded")
        assert "the running worker could not get it from its control plane" in status
        assert f"Cannot fetch the catalogue from {stack.url}" in status
        assert "pendra models install REF" in status
        assert app.screen.query_one("#catalogue", DataTable).row_count == 0
        await pilot.press("escape")
        await pilot.press("q")


async def test_a_stream_the_client_abandons_is_counted_cancelled(stack: ProcessStack) -> None:
    app = build_app(real_services(load_settings()), start="dashboard", deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        bar = app.screen.query_one(LinkBar)
        await wait_for(pilot, lambda: bar.state == "connected", "the worker's link")
        screen = dashboard(pilot)
        assert screen.model.requests.cancelled == 0

        # a streamed chat whose client hangs up after the first chunk
        async with (
            httpx.AsyncClient(timeout=60) as client,
            client.stream(
                "POST",
                f"{stack.url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {API_KEY}"},
                json={
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": True,
                    "max_tokens": 100_000,
                    "logit_bias": NO_EARLY_END,
                },
            ) as response,
        ):
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    break

        # the dashboard counts it: from the worker's own events, not a fixed status document
        await wait_for(pilot, lambda: screen.model.requests.cancelled == 1, "cancelled 1")
        await wait_for(pilot, lambda: screen.model.requests.in_flight == 0, "in flight 0")
        counters = plain(app.screen.query_one("#counters", Static).content)
        assert counters.startswith("served 0  failed 0  cancelled 1"), counters
        await wait_for(
            pilot,
            lambda: [r.status for r in screen.model.recent.values()] == ["cancelled"],
            "the request's record",
        )
        record = next(iter(screen.model.recent.values()))
        assert record.model == MODEL and record.backend == "pendra"

        # `pendra status --json` says the same
        requests = (await pendra_status(stack.env))["requests"]
        assert (requests["served"], requests["failed"], requests["cancelled"]) == (0, 0, 1)
        assert requests["in_flight"] == 0
        await pilot.press("q")

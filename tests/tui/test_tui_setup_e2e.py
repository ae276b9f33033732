"""Issue 7's "done when": a newcomer runs ``pendra`` and walks the setup flow to a running worker.

Everything is real: a ``pendra sandbox`` process (control plane, key verification, catalogue, the
Gemma 3 270M file at /files/…, OpenAI ingress), the app with :func:`real_services` and this
machine's prerequisite checks, the key pasted as the sandbox wrote it (the console's base64 form),
``gemma3:270m`` chosen in the catalogue, every external backend switched off on the Backends screen,
then Start: no service manager runs here, so the worker starts as a detached ``pendra --no-ui``.
The control plane comes from ``PENDRA_API_URL`` only until the key step saves it: after that the
variable is gone, so the worker started at the end finds the control plane, the key and the
backends in config.yaml alone, as a ``pendra --no-ui`` in a new shell would.
The dashboard must show the install finish and the model served, and count the chat request that
the official OpenAI client sends through the sandbox's ingress. Both processes are stopped at the
end, the worker by its own process group, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from openai import AsyncOpenAI
from textual import events
from textual.widgets import DataTable, Static

from pendra_tui.app import build_app
from pendra_tui.screens.backends import BackendsScreen
from pendra_tui.screens.catalogue import CatalogueScreen
from pendra_tui.screens.dashboard import DashboardScreen
from pendra_tui.screens.key import KeyScreen
from pendra_tui.screens.prereqs import PrereqScreen
from pendra_tui.screens.review import ReviewScreen
from pendra_tui.services import ProcessLauncher, real_services
from pendra_tui.setup_state import backend_enabled
from pendra_tui.widgets.link_bar import LinkBar
from tests.link.link_procs import API_KEY, free_port, start_sandbox_proc
from tests.tui.pilot_waits import wait_for
from worker.settings import BACKEND_KINDS, EndpointMode, load_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def stop_group(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM the detached worker's own process group (it drains and exits), then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


async def test_setup_flow_to_a_serving_worker(
    tmp_path: Path,
    pendra_home: Path,
    clean_env: dict[str, str],
    gemma_gguf: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    key_file = tmp_path / "sandbox-worker.key"
    sandbox = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_file)
    monkeypatch.setenv("PENDRA_API_URL", api_url)
    monkeypatch.setenv("PENDRA_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("PENDRA_THREADS", "1")
    monkeypatch.setenv("PENDRA_HEARTBEAT_INTERVAL", "1")
    settings = load_settings()
    services = real_services(settings)
    # Never a real user service from a test, even on a developer box where systemd runs.
    launcher = ProcessLauncher(settings, prefer_service=False)
    services.launcher = launcher
    app = build_app(services, deterministic=True)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            # 1 prerequisites: this machine's real checks; nothing required may fail here
            await wait_for(pilot, lambda: isinstance(app.screen, PrereqScreen), "setup")
            await wait_for(pilot, lambda: app.setup.checks is not None, "the checks")
            assert not [c.title for c in app.setup.checks or [] if c.blocks]
            await pilot.press("ctrl+n")

            # 2 the key, pasted as the dashboard (here: the sandbox) handed it out
            await wait_for(pilot, lambda: isinstance(app.screen, KeyScreen), "the key screen")
            app.focused.post_message(events.Paste(key_file.read_text()))
            await pilot.pause()
            await pilot.press("enter")

            # 3 the catalogue from the sandbox: filter, pick gemma3:270m
            await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen), "catalogue")
            assert "accepted by the control plane" in app.setup.key_note
            saved = load_settings()
            assert saved.private_key == key_file.read_text().strip()
            assert saved.sources["private_key"].endswith("config.yaml")
            monkeypatch.delenv("PENDRA_API_URL")  # a new shell: only config.yaml is left
            assert load_settings().api_url == api_url
            await wait_for(pilot, lambda: app.setup.catalogue is not None, "catalogue rows")
            await pilot.press("ctrl+f", *"270m", "enter")
            table = app.screen.query_one("#catalogue", DataTable)
            assert table.row_count == 1
            await pilot.press("space")
            assert app.setup.selected == ["gemma3:270m"]
            await pilot.press("ctrl+n")

            # 4 backends: found nothing external; switch every external kind off
            await wait_for(pilot, lambda: isinstance(app.screen, BackendsScreen), "backends")
            await wait_for(pilot, lambda: app.setup.candidates is not None, "discovery", 20)
            switched_off = []
            for kind in BACKEND_KINDS:
                await pilot.press("down")
                if backend_enabled(app.setup, kind):  # kinds without a default port are not
                    await pilot.press("space")
                    switched_off.append(kind)
            assert not [kind for kind in BACKEND_KINDS if backend_enabled(app.setup, kind)]
            assert "ollama" in switched_off
            await pilot.press("ctrl+n")

            # 5 review & start: the worker starts detached, the dashboard takes over
            await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen), "review")
            review = str(app.screen.query_one("#review", Static).render())
            assert "gemma3:270m → pendra" in review
            saved = load_settings()
            assert all(saved.backend(k).mode is EndpointMode.DISABLED for k in switched_off)
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "dashboard")
            assert launcher.process is not None and launcher.process.poll() is None
            screen = app.screen
            assert isinstance(screen, DashboardScreen)

            await wait_for(
                pilot, lambda: screen.query_one(LinkBar).state == "connected", "connected"
            )
            await wait_for(
                pilot,
                lambda: any(
                    v.ref == "gemma3:270m" and v.phase == "done"
                    for v in screen.model.installs.values()
                ),
                "the install to finish",
                60,
            )
            await wait_for(
                pilot,
                lambda: any("gemma3:270m" in b.model_ids for b in screen.model.backends),
                "the model on the dashboard",
            )
            assert (tmp_path / "models" / "gemma-3-270m-q4_k_m.gguf").is_file()

            # a chat through the control plane's ingress, counted on the dashboard
            client = AsyncOpenAI(base_url=f"{api_url}/v1", api_key=API_KEY, max_retries=0)
            deadline = time.monotonic() + 30
            while True:  # the sandbox learns of the new model with the worker's next advert
                models = {m.id async for m in client.models.list()}
                if "gemma3:270m" in models or time.monotonic() > deadline:
                    break
                await pilot.pause(0.2)
            reply = await client.chat.completions.create(
                model="gemma3:270m",
                messages=[{"role": "user", "content": "Say hello."}],
                max_tokens=8,
                temperature=0,
            )
            await client.close()
            assert reply.choices[0].message.content is not None
            await wait_for(pilot, lambda: screen.model.requests.served >= 1, "the request counter")
            # q leaves the app, never the worker
            await pilot.press("q")
        assert launcher.process.poll() is None, "quitting the app stopped the worker"
    finally:
        stop_group(launcher.process)
        sandbox.kill()
    assert launcher.process is not None and launcher.process.returncode == 0
    log = launcher.log_file.read_text()
    assert key_file.read_text().strip() not in log

"""Behaviour of the app driven with the keyboard (Textual pilot) against the fakes in tui_fakes.

Assertions are on app state, on what the fakes were asked to do, and on real files (the key and
the settings in config.yaml); waits are bounded predicates, never bare sleeps.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import tui_fakes
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, RadioButton, Static
from tui_fakes import FAKE_KEY, OFFLINE_KEY, REJECTED_KEY, FakeWorker, make_services

from pendra_tui.app import build_app
from pendra_tui.screens.backends import BackendsScreen, EndpointScreen
from pendra_tui.screens.catalogue import CatalogueScreen
from pendra_tui.screens.confirm import ConfirmScreen
from pendra_tui.screens.dashboard import DashboardScreen
from pendra_tui.screens.help import HelpScreen
from pendra_tui.screens.key import KeyScreen
from pendra_tui.screens.prereqs import PrereqScreen
from pendra_tui.screens.review import ReviewScreen
from pendra_tui.screens.uninstall import UninstallScreen
from pendra_tui.widgets.link_bar import LinkBar
from worker.settings import EndpointMode, load_settings

pytestmark = pytest.mark.timeout(60)


async def wait_for(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the app run until ``predicate()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s: {predicate.__doc__ or predicate}")
        await pilot.pause(0.02)


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def rendered(app, selector: str, width: int = 78) -> str:
    """What a Static holding a Rich renderable (a table) shows, as plain text."""
    from rich.console import Console

    console = Console(width=width, record=True, color_system=None)
    console.print(app.screen.query_one(selector, Static).content)
    return console.export_text()


async def paste(pilot: Pilot, text: str) -> None:
    """Put text in the focused input as a terminal paste does (one Paste event)."""
    from textual import events

    pilot.app.focused.post_message(events.Paste(text))
    await pilot.pause()


async def test_unconfigured_opens_setup_and_configured_opens_dashboard(pendra_home: Path) -> None:
    app = build_app(make_services(), deterministic=True)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PrereqScreen))
    (pendra_home / "worker.key").write_text("pwk_stored\n")
    app = build_app(make_services(worker=tui_fakes.dashboard_worker()), deterministic=True)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await wait_for(pilot, lambda: app.screen.model.state == "connected")


async def test_an_abandoned_setup_is_resumed_where_it_was_left(pendra_home: Path) -> None:
    """Bug: quitting after the key step lost the choices; the next `pendra` opened a "not
    running" dashboard instead of the setup."""
    app = build_app(make_services(), start="catalogue", deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.setup.catalogue is not None)
        await pilot.press("space", "ctrl+n")  # qwen3:8b chosen; on to the backends
        await wait_for(pilot, lambda: isinstance(app.screen, BackendsScreen))
        await wait_for(pilot, lambda: app.setup.candidates is not None)
        await pilot.press("down", "down", "space")  # lmstudio off
        await pilot.press("q")  # walk away
    (pendra_home / "worker.key").write_text(FAKE_KEY + "\n")  # stored by the key step
    saved = json.loads((pendra_home / "setup-progress.json").read_text())
    assert saved["step"] == "backends" and FAKE_KEY not in json.dumps(saved)
    assert stat.S_IMODE((pendra_home / "setup-progress.json").stat().st_mode) == 0o600

    services = make_services()
    app = build_app(services, deterministic=True)  # `pendra` again
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BackendsScreen))
        assert app.setup.selected == ["qwen3:8b"]
        assert app.resumed_at == "backends"
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
        assert "qwen3:8b → pendra" in text_of(app, "#review")
        await pilot.press("ctrl+n")  # Start: the setup is done
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
    assert not (pendra_home / "setup-progress.json").exists()
    assert load_settings().backend("lmstudio").mode is EndpointMode.DISABLED

    app = build_app(make_services(worker=tui_fakes.dashboard_worker()), deterministic=True)
    async with app.run_test() as pilot:  # and from now on `pendra` is the dashboard
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))


async def test_attach_always_opens_the_dashboard() -> None:
    app = build_app(make_services(), start="dashboard", deterministic=True)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await wait_for(pilot, lambda: app.screen.query_one(LinkBar).state == "not running")


async def test_required_check_failure_blocks_continue_until_fixed() -> None:
    services = make_services(checks=tui_fakes.FAILING_CHECKS)
    app = build_app(services, deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.setup.checks is not None)
        await pilot.pause()
        assert app.screen.query_one("#next", Button).disabled
        assert "required check failed: Free disk for models" in text_of(app, "#blocked")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, PrereqScreen)
        services.checks.checks = tui_fakes.PASSING_CHECKS  # the user freed disk space
        await pilot.press("r")
        await wait_for(pilot, lambda: not app.screen.query_one("#next", Button).disabled)
        assert services.checks.runs == 2
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, KeyScreen))


async def test_the_failing_check_comes_first_and_is_explained_at_80x24() -> None:
    """Bug: the first screen showed 5 of 13 checks and not the one that failed."""
    from pendra_tui.screens.prereqs import ChecksTable

    app = build_app(make_services(checks=tui_fakes.MANY_CHECKS), deterministic=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.setup.checks is not None)
        table = app.screen.query_one(ChecksTable)
        await wait_for(pilot, lambda: table.row_count == 13)
        assert table.row_keys_shown[:3] == ["disk", "worker_key", "docker_daemon"]
        assert table.cursor_row == 0
        assert "PENDRA_MODELS_DIR" in rendered(app, "#check-detail")
        await pilot.press("down")
        await wait_for(pilot, lambda: "pendra key set" in rendered(app, "#check-detail"))


async def test_key_is_validated_stored_0600_and_never_shown(pendra_home: Path) -> None:
    services = make_services()
    app = build_app(services, start="key", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, KeyScreen))
        key_file = pendra_home / "config.yaml"

        await pilot.press(*"not-a-key", "enter")
        await wait_for(pilot, lambda: "not a worker key" in text_of(app, "#key-status"))
        assert not key_file.exists() and services.verifier.verified == []

        app.screen.query_one("#key-input", Input).value = ""
        await paste(pilot, REJECTED_KEY)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "refused" in text_of(app, "#key-status"))
        assert not key_file.exists()
        assert isinstance(app.screen, KeyScreen)

        field = app.screen.query_one("#key-input", Input)
        field.value = ""
        await paste(pilot, f"  {FAKE_KEY[:20]}\n{FAKE_KEY[20:]}\n")
        assert field.password  # masked while typing
        svg = app.export_screenshot()
        assert FAKE_KEY not in svg and FAKE_KEY[:12] not in svg
        await pilot.press("ctrl+s")
        assert not field.password
        await pilot.press("ctrl+s")
        assert field.password
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen))
        assert load_settings().private_key == FAKE_KEY
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert app.setup.key_note == "stored; accepted by the control plane"
        assert FAKE_KEY not in app.export_screenshot()

        # Back to the key step: a stored key can be kept by leaving the field empty.
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, KeyScreen))
        assert "already configured" in text_of(app, "#key-status")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen))


async def test_setup_with_another_key_keeps_the_one_it_replaces(pendra_home: Path) -> None:
    """Setup run again with a different key: the old key is backed up, and the step says where."""
    from worker.keys import generate_key

    old_key = generate_key().text
    (pendra_home / "worker.key").write_text(old_key + "\n")
    (pendra_home / "worker.key").chmod(0o600)
    app = build_app(make_services(), start="key", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, KeyScreen))
        await paste(pilot, FAKE_KEY)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen))
    assert (pendra_home / "worker.key").read_text() == FAKE_KEY + "\n"
    backups = sorted(pendra_home.glob("worker.key.*.bak"))
    assert [b.read_text().strip() for b in backups] == [old_key]
    assert f"the key it replaced is kept in {backups[0].name}" in app.setup.key_note
    assert old_key not in app.setup.key_note


async def test_an_old_validation_error_goes_when_the_key_is_edited() -> None:
    """Bug: the error about a mistyped key stayed under the field while the user fixed it."""
    app = build_app(make_services(), start="key", deterministic=True)
    async with app.run_test() as pilot:
        await pilot.press(*"pk-1234", "enter")
        await wait_for(pilot, lambda: "not a worker key" in text_of(app, "#key-status"))
        await pilot.press("backspace")
        await wait_for(pilot, lambda: text_of(app, "#key-status") == "")


async def test_with_a_local_sandbox_the_key_step_says_where_its_key_is(pendra_home: Path) -> None:
    """Bug: the key step only said "from the Pendra dashboard", also for a local sandbox."""
    services = make_services(control_plane="http://127.0.0.1:8787")
    app = build_app(services, start="key", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, KeyScreen))
        hint = text_of(app, "#key-hint")
        assert "local `pendra sandbox`" in hint and "start it" in hint
        sandbox_key = pendra_home / "sandbox" / "worker.key"
        sandbox_key.parent.mkdir()
        sandbox_key.write_text(FAKE_KEY + "\n")
        await pilot.press("ctrl+o")
        field = app.screen.query_one("#key-input", Input)
        await wait_for(pilot, lambda: field.value == FAKE_KEY)
        assert field.password  # still masked
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen))
    settings = load_settings()
    assert settings.private_key == FAKE_KEY and settings.server_url == "ws://127.0.0.1:8787"
    app = build_app(make_services(), start="key", deterministic=True)
    async with app.run_test() as pilot:  # the hint follows the control plane field
        await wait_for(pilot, lambda: isinstance(app.screen, KeyScreen))
        hint = app.screen.query_one("#key-hint")
        assert hint.display  # the sandbox saved above
        app.screen.query_one("#server-url", Input).value = "wss://api.pendra.ai"
        await wait_for(pilot, lambda: not hint.display)  # the public control plane: no hint
        app.screen.query_one("#server-url", Input).value = "ws://localhost:8787"
        await wait_for(pilot, lambda: hint.display and "ctrl+o" in text_of(app, "#key-hint"))


async def test_unreachable_control_plane_stores_the_key_with_a_note(pendra_home: Path) -> None:
    app = build_app(make_services(), start="key", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, KeyScreen))
        await paste(pilot, OFFLINE_KEY)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen))
        assert load_settings().private_key == OFFLINE_KEY
        assert "not checked live" in app.setup.key_note


async def test_control_plane_and_name_are_saved_with_the_key(pendra_home: Path) -> None:
    """What the key step shows is what `pendra --no-ui` uses later, in any shell."""
    services = make_services()
    app = build_app(services, start="key", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, KeyScreen))
        url = app.screen.query_one("#server-url", Input)
        name = app.screen.query_one("#worker-name", Input)
        assert url.value == "wss://api.pendra.ai" and name.value == tui_fakes.FAKE_WORKER_NAME
        url.value = "ftp://nowhere"
        await paste(pilot, FAKE_KEY)
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: "not a control plane URL" in text_of(app, "#key-status"))
        assert not (pendra_home / "config.yaml").exists() and services.verifier.verified == []
        url.value = "ws://127.0.0.1:8787"
        name.value = "lab box"
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen))
    assert services.verifier.servers == ["ws://127.0.0.1:8787"]
    saved = load_settings({"PENDRA_HOME": str(pendra_home)})
    assert saved.ws_url == "ws://127.0.0.1:8787/ws/gpu" and saved.api_url == "http://127.0.0.1:8787"
    assert saved.worker_name == "lab box" and saved.private_key == FAKE_KEY
    text = (pendra_home / "config.yaml").read_text()
    assert "app_server_ws_url: ws://127.0.0.1:8787" in text and "worker_name: lab box" in text


async def test_setup_on_a_configured_machine_is_prefilled(pendra_home: Path) -> None:
    config = pendra_home / "config.yaml"
    config.write_text(
        f"# mine\napp_server_ws_url: wss://cp.example\nworker_name: rack-7\n"
        f"gpu_worker_private_key: {FAKE_KEY}\n"
    )
    config.chmod(0o600)
    services = make_services(worker=tui_fakes.dashboard_worker())
    app = build_app(services, start="setup", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PrereqScreen))
        await wait_for(pilot, lambda: app.setup.checks is not None)
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, KeyScreen))
        assert app.screen.query_one("#server-url", Input).value == "wss://cp.example"
        assert app.screen.query_one("#worker-name", Input).value == "rack-7"
        assert "already configured" in text_of(app, "#key-status")
        assert app.screen.query_one("#key-input", Input).value == ""  # the key is never shown
        app.screen.query_one("#worker-name", Input).value = "rack-8"
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen))
    assert services.verifier.verified == []  # the kept key was not sent anywhere
    text = config.read_text()
    assert text.startswith("# mine\n") and "worker_name: rack-8" in text
    assert load_settings().private_key == FAKE_KEY


async def test_catalogue_filter_task_and_multi_select_survive_back_and_forth() -> None:
    app = build_app(make_services(), start="catalogue", deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.setup.catalogue is not None)
        table = app.screen.query_one("#catalogue", DataTable)
        assert table.row_count == 7
        await pilot.press("space", "down", "down", "space")  # qwen3:8b and gemma3:270m
        assert app.setup.selected == ["qwen3:8b", "gemma3:270m"]
        await pilot.press("slash", *"gemma")  # / filters, as everywhere
        await wait_for(pilot, lambda: table.row_count == 2)
        await pilot.press("enter")  # from the filter into the table
        assert app.focused is table
        await pilot.press("down", "enter")  # enter on a row toggles it too
        assert app.setup.selected == ["qwen3:8b", "gemma3:270m", "gemma3:27b"]
        app.screen.query_one("#filter", Input).value = ""
        await pilot.press("ctrl+t")  # all → chat
        await wait_for(pilot, lambda: table.row_count == 4)
        await pilot.press("ctrl+t")  # chat → embedding
        await wait_for(pilot, lambda: table.row_count == 1)
        assert "3 selected" in text_of(app, "#catalogue-status")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, BackendsScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen))
        assert app.setup.selected == ["qwen3:8b", "gemma3:270m", "gemma3:27b"]
        assert app.screen.query_one("#catalogue", DataTable).get_cell("qwen3:8b", "sel") == "●"


async def test_models_whose_backend_is_not_running_cannot_be_chosen() -> None:
    """Bug: models needing Ollama/LM Studio/Speaches showed as "CPU only" and were selectable
    when none of those ran."""
    app = build_app(make_services(found=[]), start="catalogue", deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one("#catalogue", DataTable)
        await wait_for(pilot, lambda: app.setup.candidates == [] and table.row_count == 7)
        await wait_for(pilot, lambda: "needs" in str(table.get_cell("flux-schnell:12b", "fit")))
        assert str(table.get_cell("flux-schnell:12b", "fit")) == "✗ needs Ollama"
        assert str(table.get_cell("whisper:large-v3-turbo", "fit")) == "✗ needs Speaches"
        assert str(table.get_cell("qwen3:8b", "fit")) == "✓ fits GPU"
        await pilot.press("slash", *"flux", "enter", "space")
        await pilot.pause()
        assert app.setup.selected == []
        await pilot.press("escape")  # clears nothing: the filter is not focused; goes back
        await wait_for(pilot, lambda: isinstance(app.screen, KeyScreen))


async def test_install_dialog_shows_full_names_and_the_fit_at_80_columns() -> None:
    """Bug: on first open at 80×24 every Gemma row read "gemma" and the fit column was cut."""
    worker = tui_fakes.dashboard_worker()
    app = build_app(make_services(worker=worker), start="dashboard", deterministic=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: worker.live is not None)
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen))
        table = app.screen.query_one("#catalogue", DataTable)
        await wait_for(pilot, lambda: table.row_count == 7)
        await pilot.pause()
        widths = {
            column.key.value: column.get_render_width(table) for column in table.columns.values()
        }
        assert "fit" in widths and "model" in widths
        assert widths["model"] >= len("whisper:large-v3-turbo") + 2
        assert sum(widths.values()) <= table.scrollable_content_region.width


async def test_the_install_dialog_does_not_send_the_user_to_itself() -> None:
    """Bug: the install dialog, opened with i on the dashboard, said "install later from the
    dashboard (i)" when the catalogue failed to load."""
    worker = tui_fakes.dashboard_worker()
    services = make_services(worker=worker, catalogue=tui_fakes.FakeCatalogue(fail=True))
    app = build_app(services, start="dashboard", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: worker.live is not None)
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen))
        await wait_for(pilot, lambda: "could not be loaded" in text_of(app, "#catalogue-status"))
        status = text_of(app, "#catalogue-status")
        assert "from the dashboard" not in status and "then i to try again" in status
        assert text_of(app, "#blocked") == "Nothing to install until the catalogue loads."


async def test_catalogue_offline_error_still_lets_the_user_go_on() -> None:
    services = make_services(catalogue=tui_fakes.FakeCatalogue(fail=True))
    app = build_app(services, start="catalogue", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "could not be loaded" in text_of(app, "#catalogue-status"))
        assert "network unreachable" in text_of(app, "#catalogue-status")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, BackendsScreen))


async def test_backends_toggle_verify_endpoint_and_save(pendra_home: Path) -> None:
    services = make_services()
    app = build_app(services, start="backends", deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.setup.candidates is not None)
        table = app.screen.query_one("#backend-table", DataTable)
        assert table.get_cell("ollama", "status") == "ready"
        assert table.get_cell("vllm", "status") == "unreachable"  # the word `pendra status` uses
        assert "Found: ollama, speaches" in text_of(app, "#backends-status")
        await pilot.press("down", "down")  # lmstudio
        await pilot.press("space")
        assert table.get_cell("lmstudio", "status") == "disabled"
        await pilot.press("up", "enter")  # ollama: set an explicit endpoint
        await wait_for(pilot, lambda: isinstance(app.screen, EndpointScreen))
        field = app.screen.query_one("#endpoint", Input)
        field.value = "ftp://nope"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "not an http(s) URL" in text_of(app, "#endpoint-status"))
        field.value = "http://localhost:9"
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: "did not pass the ollama check" in text_of(app, "#endpoint-status")
        )
        field.value = "http://gpu-box.lan:11434/"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, BackendsScreen))
        assert table.get_cell("ollama", "endpoint") == "http://gpu-box.lan:11434"
        assert services.backends.verified[-1] == ("ollama", "http://gpu-box.lan:11434")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
    settings = load_settings()
    assert settings.backend("ollama").url == "http://gpu-box.lan:11434"
    assert settings.backend("lmstudio").mode is EndpointMode.DISABLED
    assert settings.backend("vllm").mode is EndpointMode.AUTO


async def test_no_backend_enabled_blocks_continue() -> None:
    app = build_app(make_services(found=[]), start="backends", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.setup.candidates is not None)
        assert "No external backends found" in text_of(app, "#backends-status")
        await pilot.press("space")  # built-in off: nothing left
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, BackendsScreen)
        assert "Enable at least one backend" in text_of(app, "#blocked")


async def test_whole_setup_flow_by_keyboard_ends_on_the_dashboard(pendra_home: Path) -> None:
    worker = FakeWorker(None, logs=tui_fakes.LOG_LINES)
    services = make_services(worker=worker)
    app = build_app(services, deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.setup.checks is not None)
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, KeyScreen))
        await paste(pilot, FAKE_KEY)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen))
        await wait_for(pilot, lambda: app.setup.catalogue is not None)
        await pilot.press("space", "down", "down", "down", "down", "down", "space")
        assert app.setup.selected == ["qwen3:8b", "flux-schnell:12b"]
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, BackendsScreen))
        await wait_for(pilot, lambda: app.setup.candidates is not None)
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
        review = text_of(app, "#review")
        assert "qwen3:8b → pendra" in review and "flux-schnell:12b → ollama" in review
        assert worker.calls == []
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await wait_for(pilot, lambda: len(worker.calls) == 2)
        assert worker.calls == [
            ("install", "qwen3:8b", "pendra"),
            ("install", "flux-schnell:12b", "ollama"),
        ]
        assert services.launcher.started == 1
        assert len(app.screen_stack) == 2  # setup screens are gone, not stacked below
    text = (pendra_home / "config.yaml").read_text()
    assert "gpu_worker_private_key:" in text and "app_server_ws_url:" in text
    assert "_endpoint" not in text and "builtin" not in text  # backends unchanged: not written


async def test_review_runs_the_worker_in_docker_when_chosen() -> None:
    worker = FakeWorker(None)
    services = make_services(worker=worker)
    app = build_app(services, start="review", deterministic=True)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
        await wait_for(
            pilot, lambda: not app.screen.query_one("#mode-docker", RadioButton).disabled
        )
        assert "`pendra --no-ui` service" in text_of(app, "#review")
        app.screen.query_one("#mode-docker", RadioButton).value = True
        await wait_for(pilot, lambda: app.setup.run_mode == "docker")
        assert "(`pendra stack up`)" in text_of(app, "#review")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
    assert services.docker.started == 1 and services.launcher.started == 0


async def test_review_offers_docker_only_where_it_runs() -> None:
    services = make_services(docker_unavailable="cannot talk to the Docker daemon")
    app = build_app(services, start="review", deterministic=True)
    app.setup.run_mode = "docker"  # chosen before, but the daemon is gone now
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
        await wait_for(pilot, lambda: app.screen.query_one("#mode-docker", RadioButton).disabled)
        assert "Docker is not available: cannot talk" in text_of(app, "#docker-note")
        await wait_for(pilot, lambda: app.setup.run_mode == "process")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
    assert services.launcher.started == 1 and services.docker.started == 0


async def test_dashboard_follows_events() -> None:
    worker = tui_fakes.dashboard_worker(gpus=1, installs=True)
    app = build_app(make_services(worker=worker), start="dashboard", deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: worker.live is not None)
        await wait_for(pilot, lambda: len(screen.model.metrics.samples) == 150)
        worker.push(
            {
                "kind": "install",
                "ref": "qwen3:32b",
                "backend": "pendra",
                "phase": "downloading",
                "bytes_done": 9_881_074_688,
                "bytes_total": 19_762_149_376,
                "rate_bps": 50e6,
                "eta_s": 198,
            }
        )
        worker.push({"kind": "state", "state": "draining"})
        worker.push({"kind": "requests", "in_flight": 5, "served": 13000, "failed": 14})
        worker.push(
            {
                "kind": "log",
                "level": "info",
                "logger": "pendra.installs",
                "message": "qwen3:32b 50%",
            }
        )
        await wait_for(pilot, lambda: screen.query_one(LinkBar).state == "draining")
        await wait_for(pilot, lambda: screen.model.requests.in_flight == 5)
        row = screen.query_one("#install-qwen3_32b-pendra")
        await wait_for(pilot, lambda: "ETA 3m 18s" in str(row.query_one(".install-line").render()))
        from textual.widgets import ProgressBar

        from pendra_tui.widgets.log_view import LogView

        assert row.query_one(ProgressBar).percentage == pytest.approx(0.5)
        assert screen.query_one(LogView).lines[-1] == "INFO    pendra.installs: qwen3:32b 50%"
        worker.push({"kind": "gpu", "gpus": []})
        await wait_for(pilot, lambda: screen.query_one("#host").display)
        assert not screen.query_one("#gpus").display


async def test_log_pane_follows_the_tail_until_the_user_scrolls_up() -> None:
    """Bug: on attach the log opened at its oldest line and new lines arrived out of sight."""
    from pendra_tui.widgets.log_view import LogView

    lines = [f"2026-01-01 00:00:{n % 60:02d} INFO    pendra.test: line {n}" for n in range(300)]
    worker = tui_fakes.dashboard_worker(logs=lines)
    app = build_app(make_services(worker=worker), start="dashboard", deterministic=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: worker.live is not None)
        await pilot.press("5")
        log = app.screen.query_one(LogView)
        await wait_for(pilot, lambda: log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y)
        assert log.follow
        worker.push({"kind": "log", "level": "info", "logger": "x", "message": "newest"})
        await wait_for(pilot, lambda: log.lines[-1].endswith("newest"))
        await wait_for(pilot, lambda: log.scroll_y == log.max_scroll_y)
        await pilot.press("pageup")
        await wait_for(pilot, lambda: not log.follow)
        held = log.scroll_y
        worker.push({"kind": "log", "level": "warning", "logger": "x", "message": "later"})
        await wait_for(pilot, lambda: log.lines[-1].endswith("later"))
        await pilot.pause()
        assert log.scroll_y == held and log.scroll_y < log.max_scroll_y
        assert "paused" in str(app.screen.query_one("#log-status", Static).render())
        await pilot.press("f")
        await wait_for(pilot, lambda: log.follow and log.scroll_y == log.max_scroll_y)
        # level filter, search and wrap
        await pilot.press("l", "l")  # debug → info → warning
        await wait_for(pilot, lambda: log.min_level == "warning")
        assert log.shown_count == 1  # "later" is the only warning
        await pilot.press("l", "l", "slash", *"NEWEST")  # error, then every level; search
        await wait_for(pilot, lambda: log.query == "NEWEST" and log.shown_count == 1)
        await pilot.press("escape")
        await wait_for(pilot, lambda: log.query == "" and app.screen.focused is log)
        await pilot.press("w")
        assert log.wrap


async def test_tables_sort_and_filter_with_the_same_keys() -> None:
    from pendra_tui.widgets.models_table import ModelsTable
    from pendra_tui.widgets.requests_table import RequestsTable

    worker = tui_fakes.dashboard_worker()
    app = build_app(make_services(worker=worker), start="dashboard", deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: worker.live is not None)
        models = app.screen.query_one(ModelsTable)
        await wait_for(pilot, lambda: models.row_count == 7)
        models.focus()
        assert models.row_keys_shown[0] == "pendra/qwen3:8b"  # loaded first
        await pilot.press("down")
        assert models.current_key() == "pendra/gemma3:270m"
        await pilot.press("s")  # from "state" to the next column on screen: memory
        await wait_for(pilot, lambda: models.sort_column == "memory")
        assert models.current_key() == "pendra/gemma3:270m"  # the cursor stays on its row
        await pilot.press("up")
        assert models.sort_reversed and models.row_keys_shown[0] == "pendra/qwen3:8b"
        await pilot.press("S")
        await wait_for(pilot, lambda: not models.sort_reversed)
        assert models.row_keys_shown[0] == "pendra/gemma3:270m"  # unknown sizes stay last
        await pilot.press("slash", *"ollama")
        await wait_for(pilot, lambda: len(models.row_keys_shown) == 3)
        await pilot.press("enter")
        assert app.screen.focused is models
        await pilot.press("2")
        requests = app.screen.query_one(RequestsTable)
        await wait_for(pilot, lambda: requests.row_count == 9)
        assert requests.row_keys_shown[:2] == ["r9", "r8"]  # newest first
        await pilot.click(requests, offset=(60, 0))  # a header click sorts by that column
        await pilot.pause()
        assert requests.sort_column != "age"
        await pilot.press("z")  # plots over the last 15 minutes
        assert str(app.screen.query_one("#throughput").border_title).startswith(
            "Throughput · last 15 min"
        )


async def test_the_models_tab_says_when_max_concurrent_keeps_slots_idle() -> None:
    status = tui_fakes.running_status()
    status["requests"] = {**status["requests"], "max_concurrent": 1}
    worker = tui_fakes.FakeWorker(status)
    app = build_app(make_services(worker=worker), start="dashboard", deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: worker.live is not None)
        await wait_for(pilot, lambda: "slots idle" in text_of(app, "#models-detail"))
        assert "max_concurrent 1 keeps 3 of qwen3:8b's 4 slots idle" in text_of(
            app, "#models-detail"
        )
        # raised to the slots (a `pendra config set` and a restart later): the hint goes
        worker.push({"kind": "requests", "in_flight": 0, "max_concurrent": 4})
        await wait_for(pilot, lambda: "slots idle" not in text_of(app, "#models-detail"))


async def test_drain_says_what_happens_then_the_worker_is_started_again() -> None:
    """Bug: "drain" said the worker goes offline, but the process exits and the dashboard could
    not start it again; the panels kept showing stale data."""
    worker = tui_fakes.dashboard_worker()
    services = make_services(worker=worker)
    app = build_app(services, start="dashboard", deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: worker.live is not None)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "process exits" in str(app.screen.query_one(".dialog Static:last-of-type").render())
        await pilot.press("y")
        await wait_for(pilot, lambda: ("drain",) in worker.calls)
        worker.push({"kind": "state", "state": "draining"})
        await wait_for(pilot, lambda: screen.query_one(LinkBar).state == "draining")
        worker.doc = None  # the worker exits once drained
        worker.push({"kind": "__close__"})
        bar = screen.query_one(LinkBar)
        await wait_for(pilot, lambda: bar.state == "not running")
        assert screen.has_class("-unreachable")
        assert "stopped after draining" in str(bar.render())
        assert str(screen.query_one("#throughput").border_title).endswith("· stale")
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: getattr(services.launcher, "restarted", 0) == 1, 8)
        await wait_for(pilot, lambda: bar.state == "connected", timeout=8)
        assert not screen.has_class("-unreachable")


async def test_dashboard_shows_not_running_then_reconnects() -> None:
    from pendra_tui.widgets.log_view import LogView

    worker = FakeWorker(None)
    app = build_app(make_services(worker=worker), start="dashboard", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        bar = app.screen.query_one(LinkBar)
        await wait_for(pilot, lambda: bar.state == "not running")
        assert "No Pendra worker is running" in (app.screen.model.error or "")
        await wait_for(
            pilot,
            lambda: any("No Pendra worker" in line for line in app.screen.query_one(LogView).lines),
        )
        assert app.screen.has_class("-unreachable")
        worker.doc = tui_fakes.running_status()  # the worker starts
        await pilot.press("r")  # try now instead of after the backoff
        await wait_for(pilot, lambda: bar.state == "connected", timeout=3)
        assert not app.screen.has_class("-unreachable")
        worker.push({"kind": "__close__"})  # the worker goes away again
        worker.doc = None
        await wait_for(pilot, lambda: bar.state == "not running", timeout=8)


async def test_offline_link_shows_the_reason_the_countdown_and_r_retries() -> None:
    worker = tui_fakes.dashboard_worker()
    clock = tui_fakes.FakeClock()
    app = build_app(
        make_services(worker=worker, clock=clock), start="dashboard", deterministic=True
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: worker.live is not None)
        worker.push(
            {
                "kind": "state",
                "state": "offline",
                "link": {"reason": "cannot reach wss://api.pendra.ai: refused", "retry_in_s": 38.7},
            }
        )
        bar = app.screen.query_one(LinkBar)
        await wait_for(pilot, lambda: bar.state == "offline")
        assert "cannot reach wss://api.pendra.ai: refused" in str(bar.render())
        assert "retry in 38s" in str(bar.render())
        clock.advance(10)
        app.screen._tick()
        assert "retry in 28s" in str(bar.render())
        await pilot.press("r")
        await wait_for(pilot, lambda: ("retry_link",) in worker.calls)


async def test_dashboard_actions_go_to_the_worker() -> None:
    worker = tui_fakes.dashboard_worker()
    app = build_app(make_services(worker=worker), start="dashboard", deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: worker.live is not None)
        await pilot.press("r")
        await wait_for(pilot, lambda: ("refresh",) in worker.calls)

        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert ("drain",) not in worker.calls

        # u removes the model under the cursor (qwen3:8b sorts first), after a question
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: ("uninstall", "qwen3:8b", "pendra") in worker.calls)
        # elsewhere it asks which one
        await pilot.press("3", "u")
        await wait_for(pilot, lambda: isinstance(app.screen, UninstallScreen))
        await pilot.press("escape")

        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen))
        catalogue = app.screen
        await wait_for(pilot, lambda: catalogue.query_one(DataTable).row_count == 7)
        await pilot.press("ctrl+n")  # nothing selected yet: refused
        await pilot.pause()
        assert app.screen is catalogue
        await pilot.press("down", "space", "ctrl+n")
        await wait_for(pilot, lambda: ("install", "qwen3:32b", None) in worker.calls)
        assert isinstance(app.screen, DashboardScreen)

        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        drain = dict(app.screen.keys)["d"]
        assert "finishes those in flight" in drain and "exits" in drain
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))

        theme = app.theme
        await pilot.press("f2")
        assert app.theme != theme
        await pilot.press("q")
    assert app.return_code == 0


async def test_the_command_palette_lists_the_app_actions() -> None:
    from pendra_tui.app import PendraApp

    worker = tui_fakes.dashboard_worker()
    app = build_app(make_services(worker=worker), start="dashboard", deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: worker.live is not None)
        commands = {c.title: c.help for c in PendraApp.get_system_commands(app, app.screen)}
        titles = list(commands)
        for action in ("Install", "Refresh", "Drain", "Filter", "Models", "Log", "Help"):
            assert action in titles
        assert commands["Drain"] == (  # what it does, not only its name
            "Stop taking requests, finish those in flight, then the worker exits (key: d)"
        )
        assert "Start worker" not in titles  # it is running
        await pilot.press("ctrl+p", *"drain")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    setup = build_app(make_services(), start="prereqs", deterministic=True)
    async with setup.run_test() as pilot:
        await wait_for(pilot, lambda: isinstance(setup.screen, PrereqScreen))
        titles = [c.title for c in PendraApp.get_system_commands(setup, setup.screen)]
        for action in ("Re-run checks", "Continue", "Back", "Quit"):
            assert action in titles  # the step's own keys and the ones every step shares


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_q_and_ctrl_c_quit_the_setup_too(key: str) -> None:
    """Bug: q did nothing in setup, and ctrl+c only said "press ctrl+q"."""
    app = build_app(make_services(), deterministic=True)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PrereqScreen))
        await pilot.press(key)
        await pilot.pause()
    assert app.return_code == 0


async def test_too_small_a_terminal_says_so_and_goes_away_when_resized() -> None:
    from pendra_tui.screens.too_small import TooSmallScreen

    worker = tui_fakes.dashboard_worker()
    app = build_app(make_services(worker=worker), start="dashboard", deterministic=True)
    async with app.run_test(size=(70, 20)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, TooSmallScreen))
        assert "need 80×24, have 70×20" in str(app.screen.query_one("#too-small").render())
        await pilot.resize_terminal(100, 30)
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))


async def test_a_key_given_only_by_the_environment_is_stored_by_setup(
    pendra_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set up with GPU_WORKER_PRIVATE_KEY in the environment: the worker must have the key in a
    shell without it too, so Continue stores it (0600) like a pasted one."""
    monkeypatch.setenv("GPU_WORKER_PRIVATE_KEY", FAKE_KEY)
    app = build_app(make_services(), start="key", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, KeyScreen))
        assert "GPU_WORKER_PRIVATE_KEY" in text_of(app, "#key-status")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogueScreen))
    assert app.setup.key_note == "stored from the environment"
    monkeypatch.delenv("GPU_WORKER_PRIVATE_KEY")
    assert load_settings().private_key == FAKE_KEY
    assert stat.S_IMODE((pendra_home / "config.yaml").stat().st_mode) == 0o600

"""Named app states with fixed data: the snapshot tests and ``scripts/screenshots.py`` share them.

Each scenario builds a fresh app (an App runs once) and a ``run_before`` that drives it into the
state and waits, bounded, until the data is on screen.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import tui_fakes
from textual.pilot import Pilot
from textual.widgets import DataTable, Input
from tui_fakes import FAKE_KEY, FakeCatalogue, FakeWorker, make_services

from pendra_tui.app import PendraApp, Start, build_app


async def settle(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("scenario did not reach its state in time")
        await pilot.pause(0.02)
    await pilot.pause()


async def quiet(pilot: Pilot) -> None:
    """The last step of a scenario: toasts go (they time out, so they would make the picture
    depend on how fast this machine is), then one more idle pass."""
    pilot.app.clear_notifications()
    await pilot.pause(0.05)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    build: Callable[[], PendraApp]
    run_before: Callable[[Pilot], Awaitable[None]]


def _app(start: Start, **kwargs: object) -> Callable[[], PendraApp]:
    return lambda: build_app(make_services(**kwargs), start=start, deterministic=True)  # type: ignore[arg-type]


async def _checks_done(pilot: Pilot) -> None:
    await settle(pilot, lambda: pilot.app.setup.checks is not None)


async def _key_invalid(pilot: Pilot) -> None:
    await pilot.press(*"pk-1234", "enter")
    await settle(
        pilot,
        lambda: "not a worker key" in str(pilot.app.screen.query_one("#key-status").render()),
    )


async def _key_shown(pilot: Pilot) -> None:
    await settle(pilot, lambda: pilot.app.screen.query_one("#key-input", Input).has_focus)


async def _key_masked(pilot: Pilot) -> None:
    from textual import events

    pilot.app.focused.post_message(events.Paste(FAKE_KEY))
    await settle(pilot, lambda: pilot.app.screen.query_one("#key-input", Input).value == FAKE_KEY)


async def _catalogue_loaded(pilot: Pilot) -> None:
    await settle(pilot, lambda: pilot.app.screen.query_one(DataTable).row_count > 0)


async def _catalogue_filtered(pilot: Pilot) -> None:
    await _catalogue_loaded(pilot)
    await pilot.press("space", "slash", *"gemma")
    await settle(pilot, lambda: pilot.app.screen.query_one(DataTable).row_count == 2)
    await pilot.press("enter", "space")


async def _catalogue_needs_backend(pilot: Pilot) -> None:
    await _catalogue_loaded(pilot)
    await settle(pilot, lambda: pilot.app.setup.candidates == [])
    await pilot.pause(0.1)


async def _backends_loaded(pilot: Pilot) -> None:
    await settle(pilot, lambda: pilot.app.setup.candidates is not None)


async def _review(pilot: Pilot) -> None:
    await settle(pilot, lambda: pilot.app.screen.query_one("#review") is not None)


def _resumed_app() -> PendraApp:
    """`pendra` after a setup left at the Backends step, a model chosen, LM Studio switched off."""
    import os
    from pathlib import Path

    from pendra_tui.setup_progress import FILE_NAME, Progress

    home = Path(os.environ["PENDRA_HOME"])
    progress = Progress("backends", ["qwen3:8b"], {"lmstudio": "off"}, True, 0.0)
    (home / FILE_NAME).write_text(progress.as_json())
    (home / "worker.key").write_text(FAKE_KEY + "\n")
    return build_app(make_services(), deterministic=True)


def _review_app() -> PendraApp:
    from pathlib import Path

    app = build_app(make_services(), start="review", deterministic=True)
    data = tui_fakes.FakeCatalogue()
    app.setup.catalogue = data.data()
    app.setup.selected = ["qwen3:8b", "nomic-embed-text:v1.5", "whisper:large-v3-turbo"]
    app.setup.candidates = tui_fakes.FOUND_BACKENDS
    app.setup.key_path = Path("~/.pendra/worker.key")
    app.setup.key_note = "stored; accepted by the control plane"
    return app


def _dashboard_app(
    gpus: int = 1,
    installs: bool = False,
    offline: bool = False,
    worker: Callable[[], FakeWorker] | None = None,
    **kwargs: object,
) -> Callable[[], PendraApp]:
    def build() -> PendraApp:
        if worker is not None:
            fake = worker()
        elif offline:
            fake = FakeWorker(None)
        else:
            fake = tui_fakes.dashboard_worker(gpus, installs)
        return build_app(
            make_services(worker=fake, **kwargs),  # type: ignore[arg-type]
            start="dashboard",
            deterministic=True,
        )

    return build


async def _connected(pilot: Pilot) -> None:
    """The dashboard has the status, the history, the requests and the log tail."""
    screen = pilot.app.screen
    worker = pilot.app.services.worker
    await settle(pilot, lambda: worker.live is not None and screen.model.reachable)
    samples = len((worker.history_doc or {}).get("samples", []))
    await settle(
        pilot,
        lambda: (
            len(screen.model.metrics.samples) == samples
            and len(screen.model.recent) == len(worker.recent)
            and len(screen.model.logs) == len(worker.log_lines)
        ),
    )


def _dashboard(*keys: str, then: Callable[[Pilot], Awaitable[None]] | None = None):  # type: ignore[no-untyped-def]
    """Connect, press ``keys``, run ``then``, settle."""

    async def run(pilot: Pilot) -> None:
        await _connected(pilot)
        if keys:
            await pilot.press(*keys)
        if then is not None:
            await then(pilot)
        await pilot.pause(0.1)
        await quiet(pilot)

    return run


async def _dashboard_offline(pilot: Pilot) -> None:
    from pendra_tui.widgets.link_bar import LinkBar

    await settle(pilot, lambda: pilot.app.screen.query_one(LinkBar).state == "not running")
    await quiet(pilot)


async def _help_open(pilot: Pilot) -> None:
    from pendra_tui.screens.help import HelpScreen

    await settle(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))


async def _confirm_open(pilot: Pilot) -> None:
    from pendra_tui.screens.confirm import ConfirmScreen

    await settle(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))


async def _link_offline(pilot: Pilot) -> None:
    from pendra_tui.widgets.link_bar import LinkBar

    pilot.app.services.worker.push(
        {
            "kind": "state",
            "state": "offline",
            "link": {
                "reason": "cannot reach wss://api.pendra.ai/api/v1/worker/connect: "
                "Cannot connect to host api.pendra.ai:443 [Connection refused]",
                "retry_in_s": 38.7,
                "attempt": 6,
            },
        }
    )
    await settle(pilot, lambda: pilot.app.screen.query_one(LinkBar).state == "offline")


async def _drained(pilot: Pilot) -> None:
    from pendra_tui.widgets.link_bar import LinkBar

    await pilot.press("d")
    await _confirm_open(pilot)
    await pilot.press("y")
    worker = pilot.app.services.worker
    await settle(pilot, lambda: ("drain",) in worker.calls)
    worker.push({"kind": "state", "state": "draining"})
    await settle(pilot, lambda: pilot.app.screen.query_one(LinkBar).state == "draining")
    worker.doc = None  # once drained, the worker process exits
    worker.push({"kind": "__close__"})
    await settle(pilot, lambda: pilot.app.screen.query_one(LinkBar).state == "not running")


async def _unusable_row(pilot: Pilot) -> None:
    from pendra_tui.widgets.models_table import ModelsTable

    table = pilot.app.screen.query_one(ModelsTable)
    table.focus()
    keys = table.row_keys_shown
    await pilot.press(*["down"] * keys.index("pendra/file:llama-2-7b.Q4_0.bin"))


async def _palette(pilot: Pilot) -> None:
    from textual.command import CommandPalette

    await pilot.press("ctrl+p")
    await settle(pilot, lambda: isinstance(pilot.app.screen, CommandPalette))
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.press(*"dr")
    await pilot.pause(0.3)


async def _install_dialog_failed(pilot: Pilot) -> None:
    from pendra_tui.screens.catalogue import CatalogueScreen

    await settle(pilot, lambda: isinstance(pilot.app.screen, CatalogueScreen))
    await settle(
        pilot,
        lambda: (
            "could not be loaded" in str(pilot.app.screen.query_one("#catalogue-status").render())
        ),
    )


async def _install_dialog(pilot: Pilot) -> None:
    from pendra_tui.screens.catalogue import CatalogueScreen

    await settle(pilot, lambda: isinstance(pilot.app.screen, CatalogueScreen))
    await settle(pilot, lambda: pilot.app.screen.query_one(DataTable).row_count == 7)


def _idle_worker() -> FakeWorker:
    """Traffic stopped half a minute ago: the worker's rate is 0, two requests were cancelled."""
    worker = tui_fakes.dashboard_worker(gpus=0)
    doc = worker.history_doc or {}
    for sample in doc["samples"][-15:]:
        sample.update(tokens_per_s=0.0, in_flight=0)
    worker.doc["requests"].update(in_flight=0, tokens_per_s=0.0, cancelled=5)  # type: ignore[index]
    for sample in doc["samples"]:
        sample["cancelled"] = 5
    worker.recent = [r for r in worker.recent if r["status"] != "running"]
    return worker


def _capped_worker() -> FakeWorker:
    """A worker whose max_concurrent (1, the default) is below its loaded models' 4 slots."""
    worker = tui_fakes.dashboard_worker(gpus=1)
    worker.doc["requests"]["max_concurrent"] = 1  # type: ignore[index]
    return worker


def _failed_install_worker() -> FakeWorker:
    worker = tui_fakes.dashboard_worker(gpus=1, installs=True)
    worker.doc["installs"].append(  # type: ignore[index]
        {
            "ref": "qwen3:235b",
            "backend": "pendra",
            "phase": "failed",
            "id": "job-3",
            "bytes_done": 0,
            "bytes_total": 142_000_000_000,
            "error": "Not enough disk space: qwen3:235b needs 142.0 GB, 96.3 GB is free in "
            "~/.pendra/models.",
            "hint": "free some space or point PENDRA_MODELS_DIR at a bigger disk, then press i "
            "to install it again",
        }
    )
    return worker


def _old_worker() -> FakeWorker:
    """A worker from before the history and the loaded-model details: plots start empty and
    fill from events; loaded models are bare ids."""
    worker = tui_fakes.dashboard_worker(gpus=1, history=False)
    worker.doc["backends"][0]["loaded"] = ["qwen3:8b"]  # type: ignore[index]
    worker.recent = []
    return worker


SCENARIOS: list[Scenario] = [
    Scenario(
        "prereqs-pass",
        "All checks pass (one warning); Continue is enabled.",
        _app("prereqs"),
        _checks_done,
    ),
    Scenario(
        "prereqs-fail",
        "A required check fails: ✗ with its fix, Continue blocked with the reason.",
        _app("prereqs", checks=tui_fakes.FAILING_CHECKS),
        _checks_done,
    ),
    Scenario(
        "prereqs-many",
        "Thirteen checks: the failing one first with its fix, then the warnings, one line each.",
        _app("prereqs", checks=tui_fakes.MANY_CHECKS),
        _checks_done,
    ),
    Scenario(
        "key-invalid", "A malformed key: the error says what is wrong.", _app("key"), _key_invalid
    ),
    Scenario("key-masked", "A pasted key shown as bullets only.", _app("key"), _key_masked),
    Scenario(
        "key-sandbox",
        "A local sandbox as control plane: where its key file is, ctrl+o to use it.",
        _app("key", control_plane="http://127.0.0.1:8787"),
        _key_shown,
    ),
    Scenario(
        "catalogue",
        "The catalogue: variants, size, quantisation, context, backends, fit.",
        _app("catalogue"),
        _catalogue_loaded,
    ),
    Scenario(
        "catalogue-filtered",
        "Filtered to 'gemma', two models selected.",
        _app("catalogue"),
        _catalogue_filtered,
    ),
    Scenario(
        "catalogue-needs-backend",
        "No Ollama or Speaches here: models only they install say so and cannot be chosen.",
        _app("catalogue", found=[]),
        _catalogue_needs_backend,
    ),
    Scenario(
        "catalogue-offline",
        "Offline: the cached catalogue, marked as such.",
        _app("catalogue", catalogue=FakeCatalogue(cached=True)),
        _catalogue_loaded,
    ),
    Scenario(
        "backends",
        "Built-in plus discovered Ollama and Speaches.",
        _app("backends"),
        _backends_loaded,
    ),
    Scenario(
        "backends-none",
        "No external backend found: the built-in one still serves.",
        _app("backends", found=[]),
        _backends_loaded,
    ),
    Scenario(
        "setup-resumed",
        "An unfinished setup is picked up at the step it was left, with its choices.",
        _resumed_app,
        _backends_loaded,
    ),
    Scenario(
        "review",
        "What Start will do: key, backends, installs (one impossible), plan.",
        _review_app,
        _review,
    ),
    Scenario(
        "dashboard-no-gpu",
        "A CPU-only box: CPU, RAM and the worker process instead of an empty GPU box; the "
        "models panel with loaded, installed and unusable models.",
        _dashboard_app(gpus=0),
        _dashboard(),
    ),
    Scenario(
        "dashboard-one-gpu",
        "One GPU: utilisation and memory plots over the last 5 minutes from the worker's "
        "history; tokens/s and requests in flight beside it.",
        _dashboard_app(gpus=1),
        _dashboard(),
    ),
    Scenario(
        "dashboard-gpus-installs",
        "Three GPUs and two installs mid-way (the installs view, key 4).",
        _dashboard_app(gpus=3, installs=True),
        _dashboard("4"),
    ),
    Scenario(
        "dashboard-slots-idle",
        "max_concurrent below a loaded model's slots: the models view says how many slots it "
        "keeps idle and the command that puts them to work.",
        _dashboard_app(worker=_capped_worker),
        _dashboard(),
    ),
    Scenario(
        "dashboard-install-failed",
        "A failed install says why and what to do, in full (not cut mid-sentence).",
        _dashboard_app(worker=_failed_install_worker),
        _dashboard("4"),
    ),
    Scenario(
        "dashboard-requests",
        "Recent requests (key 2): model, backend, tokens in/out, TTFT, tok/s, outcome, "
        "duration; running ones first; metadata only.",
        _dashboard_app(gpus=1),
        _dashboard("2"),
    ),
    Scenario(
        "dashboard-backends",
        "Backends (key 3), with the kinds not found or disabled counted below.",
        _dashboard_app(gpus=1),
        _dashboard("3"),
    ),
    Scenario(
        "dashboard-models-sorted-filtered",
        "Models filtered with / and sorted by memory (s), largest first.",
        _dashboard_app(gpus=1),
        _dashboard("s", "slash", *"pendra", "enter"),
    ),
    Scenario(
        "dashboard-model-unusable",
        "The cursor on an unusable file: the line below says why it cannot be served.",
        _dashboard_app(gpus=1),
        _dashboard(then=_unusable_row),
    ),
    Scenario(
        "dashboard-log",
        "The log view (key 5) opens at the newest line and follows the tail.",
        _dashboard_app(gpus=1),
        _dashboard("5"),
    ),
    Scenario(
        "dashboard-log-filtered",
        "The log at level ≥ warning (l), searched with /, wrapped (w).",
        _dashboard_app(gpus=1),
        _dashboard("5", "l", "l", "w", "slash", *"speaches", "enter"),
    ),
    Scenario(
        "dashboard-idle",
        "Requests stopped: tokens/s reads 0 (the worker's rate), cancelled requests counted.",
        _dashboard_app(worker=_idle_worker),
        _dashboard(),
    ),
    Scenario(
        "dashboard-link-offline",
        "The link is down: why, and a countdown to the next attempt (r retries now).",
        _dashboard_app(gpus=1),
        _dashboard(then=_link_offline),
    ),
    Scenario(
        "dashboard-drain-confirm",
        "Drain says what happens: requests finish, then the worker process exits.",
        _dashboard_app(gpus=1),
        _dashboard("d", then=_confirm_open),
    ),
    Scenario(
        "dashboard-drained",
        "After a drain the worker is not running: stale panels greyed, R starts it again.",
        _dashboard_app(gpus=1),
        _dashboard(then=_drained),
    ),
    Scenario(
        "dashboard-offline",
        "No worker running: the bar says so and how to start it; the app keeps retrying.",
        _dashboard_app(offline=True),
        _dashboard_offline,
    ),
    Scenario(
        "dashboard-old-worker",
        "An older worker without history or loaded-model details: nothing breaks.",
        _dashboard_app(worker=_old_worker),
        _dashboard(),
    ),
    Scenario(
        "dashboard-help",
        "Every key with what it does in words, Drain included.",
        _dashboard_app(gpus=1),
        _dashboard("question_mark", then=_help_open),
    ),
    Scenario(
        "dashboard-palette",
        "The command palette lists the app's own actions.",
        _dashboard_app(gpus=1),
        _dashboard(then=_palette),
    ),
    Scenario(
        "dashboard-install-dialog-offline",
        "The install dialog when the catalogue cannot be loaded: try again with i, or by name.",
        _dashboard_app(gpus=1, catalogue=FakeCatalogue(fail=True)),
        _dashboard("i", then=_install_dialog_failed),
    ),
    Scenario(
        "dashboard-install-dialog",
        "Install dialog (i): full model names, the fit column in view, at 80 columns too.",
        _dashboard_app(gpus=1),
        _dashboard("i", then=_install_dialog),
    ),
    Scenario(
        "dashboard-install-dialog-worker-cache",
        "Install dialog while the worker is offline: its cached catalogue, how old, and why.",
        _dashboard_app(
            gpus=1,
            catalogue=FakeCatalogue(
                cached=True,
                source="worker",
                stale_reason="Cannot fetch the catalogue from https://api.pendra.ai/api/v1/"
                "catalogue: Cannot connect to host api.pendra.ai:443.",
            ),
        ),
        _dashboard("i", then=_install_dialog),
    ),
]

SIZES: list[tuple[int, int]] = [(80, 24), (120, 40)]

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
        pilot, lambda: "not a worker key" in str(pilot.app.screen.query_one("#key-status").render())
    )


async def _key_masked(pilot: Pilot) -> None:
    from textual import events

    pilot.app.focused.post_message(events.Paste(FAKE_KEY))
    await settle(pilot, lambda: pilot.app.screen.query_one("#key-input", Input).value == FAKE_KEY)


async def _catalogue_loaded(pilot: Pilot) -> None:
    await settle(pilot, lambda: pilot.app.screen.query_one(DataTable).row_count > 0)


async def _catalogue_filtered(pilot: Pilot) -> None:
    await _catalogue_loaded(pilot)
    await pilot.press("space", "ctrl+f", *"gemma")
    await settle(pilot, lambda: pilot.app.screen.query_one(DataTable).row_count == 2)
    await pilot.press("enter", "space")


async def _backends_loaded(pilot: Pilot) -> None:
    await settle(pilot, lambda: pilot.app.setup.candidates is not None)


async def _review(pilot: Pilot) -> None:
    await settle(pilot, lambda: pilot.app.screen.query_one("#review") is not None)


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
    gpus: int = 1, installs: bool = False, offline: bool = False, unusable: bool = False
) -> Callable[[], PendraApp]:
    def build() -> PendraApp:
        worker = (
            FakeWorker(None)
            if offline
            else tui_fakes.dashboard_worker(gpus, installs, unusable=unusable)
        )
        return build_app(make_services(worker=worker), start="dashboard", deterministic=True)

    return build


async def _dashboard_live(pilot: Pilot) -> None:
    screen = pilot.app.screen
    worker = pilot.app.services.worker
    expected = len(worker.scripted)
    await settle(pilot, lambda: worker.live is not None and screen.model.reachable)
    if expected:
        await settle(
            pilot,
            lambda: all(len(g.util_history) == expected + 1 for g in screen.model.gpus.values()),
        )
    await pilot.pause(0.1)


async def _dashboard_offline(pilot: Pilot) -> None:
    from pendra_tui.widgets.link_bar import LinkBar

    await settle(pilot, lambda: pilot.app.screen.query_one(LinkBar).state == "not running")


async def _dashboard_help(pilot: Pilot) -> None:
    await _dashboard_live(pilot)
    await pilot.press("question_mark")
    await pilot.pause(0.1)


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
        "key-invalid", "A malformed key: the error says what is wrong.", _app("key"), _key_invalid
    ),
    Scenario("key-masked", "A pasted key shown as bullets only.", _app("key"), _key_masked),
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
        "review",
        "What Start will do: key, backends, installs (one impossible), plan.",
        _review_app,
        _review,
    ),
    Scenario(
        "dashboard-no-gpu",
        "Dashboard of a worker on a machine without GPUs.",
        _dashboard_app(gpus=0),
        _dashboard_live,
    ),
    Scenario(
        "dashboard-one-gpu",
        "One GPU with utilisation and memory sparklines.",
        _dashboard_app(gpus=1),
        _dashboard_live,
    ),
    Scenario(
        "dashboard-gpus-installs",
        "Three GPUs and two installs mid-way.",
        _dashboard_app(gpus=3, installs=True),
        _dashboard_live,
    ),
    Scenario(
        "dashboard-unusable-files",
        "Two modelstore files the built-in backend cannot serve, each with the reason.",
        _dashboard_app(gpus=1, unusable=True),
        _dashboard_live,
    ),
    Scenario(
        "dashboard-offline",
        "No worker running: the bar says so, the app keeps retrying.",
        _dashboard_app(offline=True),
        _dashboard_offline,
    ),
    Scenario(
        "dashboard-help", "The key bindings overlay.", _dashboard_app(gpus=1), _dashboard_help
    ),
]

SIZES: list[tuple[int, int]] = [(80, 24), (120, 40)]

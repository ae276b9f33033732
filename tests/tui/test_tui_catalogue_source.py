"""Where the app's catalogue comes from (``pendra_tui.catalogue_source``) and what the catalogue
dialog says about it.

The order and the wording are tested with plain callables; :class:`LiveCatalogue` then against a
real admin server on a real Unix socket (its target answers ``GET /v1/catalogue`` with documents
built by ``worker.catalogue``), and a real sandbox control plane where the app could ask one.
The whole way — a ``pendra --no-ui`` process and the dashboard's dialog — is
``tests/tui/test_tui_worker_process.py``.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rich.console import Console

from pendra_tui.catalogue_source import CONTROL_PLANE, WORKER, fetch_catalogue, worker_failure
from pendra_tui.screens.catalogue import cached_note, catalogue_error, install_blocked_reason
from pendra_tui.services import CatalogueData, LiveCatalogue
from tests.admin.admin_test_worker import TestWorker
from worker.admin.errors import AdminAccessDenied
from worker.admin.server import AdminServer
from worker.catalogue import Catalogue, CatalogueError, parse_catalogue, sample_catalogue_bytes
from worker.errors import NoWorkerRunning, PendraError
from worker.keys import generate_key
from worker.sandbox.app import SandboxConfig, bound_port, serve
from worker.sandbox.app import build_app as build_sandbox
from worker.settings import load_settings

SAMPLE = json.loads(sample_catalogue_bytes())
OFFLINE = "Cannot fetch the catalogue from https://api.example/api/v1/catalogue: timed out."


def plain(markup: str) -> str:
    console = Console(width=400, record=True, file=io.StringIO())
    console.print(markup)
    return console.export_text()


class Asked:
    """Fake sources that record the order they were asked in."""

    def __init__(self, worker: Any, control_plane: Any = "from the control plane") -> None:
        self.calls: list[str] = []
        self._worker, self._control_plane = worker, control_plane

    async def worker(self) -> Any:
        self.calls.append(WORKER)
        if isinstance(self._worker, BaseException):
            raise self._worker
        return self._worker

    async def control_plane(self) -> Any:
        self.calls.append(CONTROL_PLANE)
        if isinstance(self._control_plane, BaseException):
            raise self._control_plane
        return self._control_plane


# -- the order ---------------------------------------------------------------------------------


async def test_the_running_worker_is_asked_first_and_alone() -> None:
    asked = Asked("from the worker")
    found = await fetch_catalogue(asked.worker, asked.control_plane)
    assert (found.catalogue, found.source) == ("from the worker", WORKER)
    assert asked.calls == [WORKER]


async def test_without_a_worker_the_app_asks_the_control_plane() -> None:
    asked = Asked(NoWorkerRunning())
    found = await fetch_catalogue(asked.worker, asked.control_plane)
    assert (found.catalogue, found.source) == ("from the control plane", CONTROL_PLANE)
    assert asked.calls == [WORKER, CONTROL_PLANE]


async def test_a_worker_from_before_the_catalogue_route_is_passed_over() -> None:
    old = PendraError("GET /v1/catalogue: Not Found")
    old.code = "not_found"  # as the admin server answers a route it does not have
    asked = Asked(old)
    found = await fetch_catalogue(asked.worker, asked.control_plane)
    assert found.source == CONTROL_PLANE


async def test_a_worker_without_a_catalogue_is_an_error_the_control_plane_is_not_asked() -> None:
    asked = Asked(CatalogueError(OFFLINE, hint="check the network and APP_SERVER_WS_URL"))
    with pytest.raises(PendraError) as raised:
        await fetch_catalogue(asked.worker, asked.control_plane)
    assert asked.calls == [WORKER]
    assert raised.value.message == (
        f"the running worker could not get it from its control plane: {OFFLINE}"
    )
    assert raised.value.hint == "check the network and APP_SERVER_WS_URL"


@pytest.mark.parametrize(
    "error",
    [
        PendraError("The worker did not answer /v1/catalogue within 30 s.", hint="check logs"),
        AdminAccessDenied("Permission denied on the worker's admin socket.", hint="run as it"),
    ],
)
async def test_a_failed_question_to_the_worker_says_so(error: PendraError) -> None:
    asked = Asked(error)
    with pytest.raises(PendraError) as raised:
        await fetch_catalogue(asked.worker, asked.control_plane)
    assert asked.calls == [WORKER]
    assert raised.value.message == f"asking the running worker for it failed: {error.message}"
    assert raised.value.hint == error.hint


async def test_no_worker_and_no_control_plane_is_the_control_planes_error() -> None:
    unreachable = CatalogueError(OFFLINE, hint="check the network")
    asked = Asked(NoWorkerRunning(), unreachable)
    with pytest.raises(CatalogueError) as raised:
        await fetch_catalogue(asked.worker, asked.control_plane)
    assert raised.value is unreachable


def test_worker_failure_keeps_the_hint_and_never_repeats_it() -> None:
    error = worker_failure(CatalogueError(OFFLINE, hint="check the network"))
    assert str(error).count("check the network") == 1


# -- what the dialog says ----------------------------------------------------------------------


def data(**fields: Any) -> CatalogueData:
    return CatalogueData(rows=[], **fields)


def test_a_fresh_catalogue_needs_no_note() -> None:
    assert cached_note(data(source=WORKER)) == ""
    assert cached_note(data(source=CONTROL_PLANE)) == ""


def test_the_workers_cached_copy_says_whose_how_old_and_why() -> None:
    note = plain(cached_note(data(cached=True, age_s=3720, source=WORKER, stale_reason=OFFLINE)))
    assert "offline: showing the worker's cached catalogue from 1h 02m ago" in note
    assert OFFLINE in note


def test_this_homes_cached_copy_without_a_worker() -> None:
    note = plain(cached_note(data(cached=True, age_s=None, source=CONTROL_PLANE)))
    assert note.strip() == "offline: showing the cached catalogue"


def test_a_reason_with_brackets_is_shown_as_written() -> None:
    reason = "The catalogue at [::1] answered HTTP 503 [busy]."
    note = plain(cached_note(data(cached=True, source=WORKER, stale_reason=reason)))
    assert reason in note


def test_the_workers_failure_in_the_install_dialog() -> None:
    error = worker_failure(CatalogueError(OFFLINE, hint="check the network"))
    text = plain(catalogue_error(str(error), pick=True))
    assert text.startswith(
        "The catalogue could not be loaded: the running worker could not get it from its "
        f"control plane: {OFFLINE}"
    )
    assert "check the network" in text
    assert "pendra models install REF" in text


def test_install_selected_is_refused_for_the_reason_that_applies() -> None:
    # a failed load is not "select a model": there is nothing to select
    failed = install_blocked_reason(selected=0, loaded=False, failed=True)
    assert failed == "Nothing to install until the catalogue loads."
    loading = install_blocked_reason(selected=0, loaded=False, failed=False)
    assert loading == "Loading the catalogue…"
    empty_choice = install_blocked_reason(selected=0, loaded=True, failed=False)
    assert empty_choice == "Select at least one model (space or enter on a row)."
    assert install_blocked_reason(selected=2, loaded=True, failed=False) is None


# -- LiveCatalogue on a real admin socket --------------------------------------------------------


class CatalogueWorker(TestWorker):
    """The admin API's test target, answering ``GET /v1/catalogue`` with ``answer``."""

    def __init__(self, answer: dict[str, Any] | PendraError) -> None:
        super().__init__()
        self.answer = answer
        self.asked = 0

    async def catalogue(self) -> dict[str, Any]:
        self.asked += 1
        if isinstance(self.answer, PendraError):
            raise self.answer
        return self.answer


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_document(*, cached: bool) -> dict[str, Any]:
    """What a worker's ``GET /v1/catalogue`` answers (``Catalogue.as_document``)."""
    return Catalogue(
        models=parse_catalogue(SAMPLE, source="sample").models,
        cached=cached,
        fetched_at=time.time() - (7200 if cached else 1),
        source_url="https://api.example/api/v1/catalogue",
        stale_reason=OFFLINE if cached else None,
    ).as_document()


@pytest.fixture
def unreachable_control_plane(monkeypatch: pytest.MonkeyPatch) -> None:
    """This shell's control plane answers nowhere, and this home has no cached copy."""
    monkeypatch.setenv("PENDRA_API_URL", f"http://127.0.0.1:{closed_port()}")


@pytest.fixture
async def sandbox_url(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """A real control plane this shell points at, serving the bundled sample catalogue."""
    app = build_sandbox(
        SandboxConfig(
            api_key="sk-source", accepted_keys={generate_key().public_key}, catalogue=SAMPLE
        )
    )
    runner = await serve(app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{bound_port(runner)}"
    monkeypatch.setenv("PENDRA_API_URL", url)
    try:
        yield url
    finally:
        await runner.cleanup()


async def test_live_catalogue_reads_the_workers_catalogue(unreachable_control_plane: None) -> None:
    settings = load_settings()
    worker = CatalogueWorker(worker_document(cached=False))
    async with AdminServer(worker, settings.admin_socket):
        loaded = await LiveCatalogue(settings).load()
    assert worker.asked == 1
    assert loaded.source == WORKER and not loaded.cached and loaded.stale_reason is None
    gemma = next(row for row in loaded.rows if row.ref == "gemma3:270m")
    assert gemma.verdict in {"gpu", "partial", "cpu", "no"}  # judged for this machine


async def test_live_catalogue_passes_on_the_workers_cached_copy(
    unreachable_control_plane: None,
) -> None:
    settings = load_settings()
    async with AdminServer(CatalogueWorker(worker_document(cached=True)), settings.admin_socket):
        loaded = await LiveCatalogue(settings).load()
    assert loaded.source == WORKER and loaded.cached
    assert loaded.age_s is not None and 7000 < loaded.age_s < 7400
    assert loaded.stale_reason == OFFLINE
    assert loaded.rows


async def test_live_catalogue_says_the_worker_failed_though_this_shell_could_fetch_it(
    sandbox_url: str,
) -> None:
    settings = load_settings()
    failure = CatalogueError(OFFLINE, hint="check the network and APP_SERVER_WS_URL")
    async with AdminServer(CatalogueWorker(failure), settings.admin_socket):
        with pytest.raises(PendraError) as raised:
            await LiveCatalogue(settings).load()
    assert raised.value.message.startswith(
        "the running worker could not get it from its control plane: Cannot fetch"
    )
    assert raised.value.hint == "check the network and APP_SERVER_WS_URL"
    # with the worker gone, the same adapter fetches it from this shell's control plane
    loaded = await LiveCatalogue(settings).load()
    assert loaded.source == CONTROL_PLANE and not loaded.cached and loaded.rows


async def test_live_catalogue_refuses_an_unreadable_answer_from_the_worker(
    unreachable_control_plane: None,
) -> None:
    settings = load_settings()
    async with AdminServer(CatalogueWorker({"models": "nonsense"}), settings.admin_socket):
        with pytest.raises(PendraError) as raised:
            await LiveCatalogue(settings).load()
    assert raised.value.message.startswith(
        "asking the running worker for it failed: The worker sent a catalogue this command "
        "cannot read"
    )
    assert raised.value.hint and "upgrade" in raised.value.hint

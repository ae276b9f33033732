"""The setup flow's real adapters against real things: a real sandbox control plane (catalogue, key
verification), a real Ollama-shaped HTTP server on loopback for discovery, real ``pendra --no-ui``
processes for the launcher, and this machine for the prerequisite checks.

Faked: only the service manager in one test (systemd does not run in this container, so a manager
whose install fails stands in for a host where ``systemctl --user`` is broken).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pendra_tui.services import (
    DiscoveryProbe,
    InstallerChecks,
    LinkKeyVerifier,
    LiveCatalogue,
    ProcessLauncher,
    SettingsKeyStore,
)
from tests.emulators import OllamaEmulator
from worker.backends.discovery import DiscoveryOptions
from worker.catalogue import sample_catalogue_bytes
from worker.errors import PendraError
from worker.keys import WorkerKey, generate_key
from worker.sandbox.app import SandboxConfig, bound_port, serve
from worker.sandbox.app import build_app as build_sandbox
from worker.settings import BACKEND_KINDS, load_settings

pytestmark = pytest.mark.timeout(90)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sandbox:
    """A real sandbox control plane on loopback, stoppable mid-test (to go "offline")."""

    def __init__(self, runner: Any, url: str, key: WorkerKey) -> None:
        self.runner, self.url, self.key = runner, url, key
        self.running = True

    async def stop(self) -> None:
        if self.running:
            self.running = False
            await self.runner.cleanup()


@pytest.fixture
async def sandbox(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sandbox]:
    """The bundled sample catalogue and key verification; PENDRA_API_URL points at it."""
    key = generate_key()
    app = build_sandbox(
        SandboxConfig(
            api_key="sk-adapters",
            accepted_keys={key.public_key},
            catalogue=json.loads(sample_catalogue_bytes()),
            extra_files={},
        )
    )
    runner = await serve(app, "127.0.0.1", 0)
    running = Sandbox(runner, f"http://127.0.0.1:{bound_port(runner)}", key)
    monkeypatch.setenv("PENDRA_API_URL", running.url)
    try:
        yield running
    finally:
        await running.stop()


async def test_catalogue_rows_with_fit_then_the_cached_copy_offline(sandbox: Sandbox) -> None:
    catalogue = LiveCatalogue(load_settings())
    data = await catalogue.load()
    assert not data.cached
    gemma = next(row for row in data.rows if row.ref == "gemma3:270m")
    assert gemma.task == "chat" and gemma.size_bytes and "pendra" in gemma.backends
    # judged for this machine by worker.fit (no GPU here: CPU, or too big for the disk/RAM)
    assert gemma.verdict in {"gpu", "partial", "cpu", "no"}
    assert {row.verdict for row in data.rows} <= {"gpu", "partial", "cpu", "no", "unknown"}

    await sandbox.stop()  # the control plane goes away: the cached copy, marked as such
    offline = await catalogue.load()
    assert offline.cached and offline.age_s is not None and offline.age_s < 60
    assert [row.ref for row in offline.rows] == [row.ref for row in data.rows]


async def test_key_verifier_against_the_real_control_plane(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = sandbox.key
    verifier = LinkKeyVerifier(load_settings())
    assert verifier.check_format(key.text) is None
    problem = verifier.check_format("pdk_short")
    assert problem and "pdk_short" not in problem
    accepted = await verifier.verify(key.text)
    assert accepted.accepted is True
    # a control plane typed on the key step is the one asked, before anything is saved
    elsewhere = await LinkKeyVerifier(load_settings()).verify(
        key.text, f"ws://127.0.0.1:{closed_port()}"
    )
    assert elsewhere.accepted is None
    refused = await verifier.verify(generate_key().text)  # well-formed, not registered
    assert refused.accepted is False and refused.message
    monkeypatch.setenv("PENDRA_API_URL", f"http://127.0.0.1:{closed_port()}")
    unreachable = await LinkKeyVerifier(load_settings()).verify(key.text)
    assert unreachable.accepted is None and unreachable.message
    for verdict in (accepted, refused, unreachable):
        assert key.text not in verdict.message


def test_key_store_writes_0600_atomically(pendra_home: Path) -> None:
    store = SettingsKeyStore(load_settings())
    assert not store.has_key()
    key = generate_key(console_form=True).text
    saved = store.store(key)
    path = saved.path
    assert saved.backup is None and path == pendra_home / "config.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_settings().private_key == key and store.has_key()
    names = sorted(p.name for p in pendra_home.iterdir())
    assert names == [".config.lock", "config.yaml"]  # no temp file left


def test_key_store_backs_up_a_different_key_before_replacing_it(pendra_home: Path) -> None:
    """Setup run again with another key must not lose the one the worker had."""
    store = SettingsKeyStore(load_settings())
    first, second = generate_key(console_form=True), generate_key(console_form=True)
    store.store(first.text)
    again = store.store(first.text)  # the same key: nothing to keep
    assert again.backup is None
    replaced = store.store(second.text)
    assert replaced.backup is not None and replaced.backup.parent == pendra_home
    assert replaced.backup.read_text().strip() == first.text
    assert stat.S_IMODE(replaced.backup.stat().st_mode) == 0o600
    assert load_settings().private_key == second.text


def test_key_store_backs_up_the_key_file_in_use(pendra_home: Path) -> None:
    """A machine set up with a worker.key file: the new key goes there, the old one is kept."""
    old = generate_key()
    key_file = pendra_home / "worker.key"
    key_file.write_text(old.text + "\n")
    key_file.chmod(0o600)
    store = SettingsKeyStore(load_settings())
    new = generate_key(console_form=True)
    saved = store.store(new.text)
    assert saved.path == key_file and key_file.read_text().strip() == new.text
    assert saved.backup is not None and saved.backup.read_text().strip() == old.text


def test_key_store_refuses_a_malformed_key_and_keeps_the_one_stored(pendra_home: Path) -> None:
    store = SettingsKeyStore(load_settings())
    key = generate_key(console_form=True).text
    store.store(key)
    with pytest.raises(PendraError):
        store.store("pdk_not-a-key")
    assert load_settings().private_key == key


async def test_discovery_finds_a_real_ollama_and_reports_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VLLM_ENDPOINT", "off")
    nothing = closed_port()
    async with OllamaEmulator() as ollama:
        ports = {kind: (nothing,) for kind in BACKEND_KINDS}
        ports["ollama"] = (ollama.port,)
        probe = DiscoveryProbe(
            load_settings(), options=DiscoveryOptions(hosts=("127.0.0.1",), ports=ports)
        )
        found = {c.kind: c for c in await probe.discover()}
        assert set(found) == set(BACKEND_KINDS)  # each kind once; the built-in is not probed
        assert found["ollama"].status == "ready"
        assert found["ollama"].endpoint == ollama.url and found["ollama"].models == 1
        assert found["vllm"].status == "disabled" and "VLLM_ENDPOINT" in (
            found["vllm"].detail or ""
        )
        assert found["lmstudio"].status == "unreachable" and "not found" in (
            found["lmstudio"].detail or ""
        )

        # an explicit endpoint is checked with the kind's own verification
        ok = await probe.verify("ollama", ollama.url)
        assert ok.status == "ready" and ok.models == 1
        wrong = await probe.verify("speaches", ollama.url)
        assert wrong.status != "ready" and wrong.detail
    gone = await probe.verify("ollama", f"http://127.0.0.1:{nothing}")
    assert gone.status != "ready" and gone.detail
    assert (await probe.verify("nosuchkind", "http://127.0.0.1:1")).status == "error"


def test_prerequisite_checks_run_on_this_machine() -> None:
    checks = InstallerChecks(load_settings()).run()
    assert len(checks) >= 5
    assert {c.status for c in checks} <= {"ok", "warn", "fail"}
    assert all(c.id and c.title for c in checks)
    # every failure says how to fix it; nothing here is stringified enum noise
    for check in checks:
        assert not check.status.startswith("Status.")
        if check.status == "fail":
            assert check.fix


class BrokenServiceManager:
    """Stands in for systemd (not running in this container) whose ``systemctl`` fails."""

    name = "systemd"

    def install(self, spec: Any) -> Any:
        from installer.service import ServiceError

        raise ServiceError("`systemctl --user restart pendra-worker` failed: no bus")


def kill(process: Any) -> None:
    if process is not None and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # its own session: it and nothing else
        try:
            process.wait(timeout=30)
        except Exception:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


async def test_launcher_falls_back_to_a_detached_worker_and_never_starts_two(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = sandbox.key
    for kind in BACKEND_KINDS:
        monkeypatch.setenv(f"{kind.upper()}_ENDPOINT", "off")
    monkeypatch.setenv("PENDRA_MODELS_DIR", str(tmp_path / "models"))
    settings = load_settings()
    SettingsKeyStore(settings).store(key.text)
    launcher = ProcessLauncher(settings)
    launcher._manager = BrokenServiceManager()
    try:
        summary = await launcher.start()
        assert launcher.process is not None and launcher.process.poll() is None
        assert f"pid {launcher.process.pid}" in summary
        assert "service could not be installed" in summary and "no bus" in summary
        assert key.text not in " ".join(Path(f"/proc/{launcher.process.pid}/cmdline").read_text())
        assert os.getsid(launcher.process.pid) == launcher.process.pid  # outlives the terminal
        assert stat.S_IMODE(launcher.console_file.stat().st_mode) == 0o600

        again = ProcessLauncher(settings, prefer_service=False)
        second = await again.start()
        assert "already running" in second and again.process is None
    finally:
        # off the loop: the in-process sandbox must answer the worker's drain meanwhile
        await asyncio.to_thread(kill, launcher.process)
    # SIGTERM drains and exits 0
    assert launcher.process.returncode == 0, launcher.log_file.read_text(errors="replace")
    assert key.text not in launcher.log_file.read_text()


async def test_launcher_reports_a_worker_that_exits_at_start(pendra_home: Path) -> None:
    settings = load_settings()
    (pendra_home / "config.yaml").write_text("worker_name: [unclosed\n")
    launcher = ProcessLauncher(settings, prefer_service=False)
    try:
        with pytest.raises(PendraError) as caught:
            await launcher.start()
    finally:
        # off the loop: the in-process sandbox must answer the worker's drain meanwhile
        await asyncio.to_thread(kill, launcher.process)
    assert "exited at start" in caught.value.message
    assert "config.yaml is not valid YAML" in caught.value.message  # the worker's own words
    assert caught.value.hint and "worker-console.log" in caught.value.hint

"""A control plane that accepts the TCP connection and never answers the WebSocket upgrade
(a hung server, a proxy holding the connection): the worker still stops at once when asked,
and on its own it gives up on that attempt and retries.

The "control plane" here is a real listening socket on loopback that accepts connections and
never writes a byte.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.link.link_procs import spawn, worker_env
from worker.backends.registry import BackendRegistry
from worker.keys import generate_key, write_key_file
from worker.link import client as link_client
from worker.link.backoff import Backoff
from worker.link.client import LinkClient
from worker.router import Router

pytestmark = pytest.mark.timeout(120)


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and holds them open without answering."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            self.held.append(conn)

    def wait_for_connections(self, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.held) < count:
            assert time.monotonic() < deadline, f"only {len(self.held)} connection(s) arrived"
            time.sleep(0.02)

    def close(self) -> None:
        self._listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def test_sigterm_while_the_upgrade_goes_unanswered_exits_0(
    silent: SilentServer, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    key_file = tmp_path / "worker.key"
    write_key_file(key_file, generate_key())
    env = worker_env(clean_env, silent.url, key_file, tmp_path / "models")
    worker = spawn(["--no-ui"], env, tmp_path / "logs", "worker")
    try:
        silent.wait_for_connections(1)  # the worker is now waiting for the 101 that never comes
        worker.signal(signal.SIGTERM)
        # Exits once asked (at once, in fact), well before the 30 s upgrade timeout would have
        # ended the attempt on its own.
        assert worker.wait(25) == 0, worker.output()
    finally:
        worker.kill()
    out = worker.output()
    assert "pendra worker stopped" in out and "Traceback" not in out


async def test_an_unanswered_upgrade_times_out_and_is_retried(
    silent: SilentServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(link_client, "UPGRADE_TIMEOUT_S", 0.5)
    caplog.set_level(logging.INFO, logger="worker.link")
    link = LinkClient(
        key=generate_key(),
        router=Router(BackendRegistry()),
        url=silent.url.replace("http://", "ws://") + "/v1/worker",
        gpus=list,
        backoff=Backoff(base_s=0.05, cap_s=0.1),
    )
    task = asyncio.create_task(link.run())
    try:
        await asyncio.to_thread(silent.wait_for_connections, 2)  # a second attempt followed
        assert "did not complete the WebSocket upgrade within 0.5 s" in caplog.text
        assert link.last_error is not None and "WebSocket upgrade" in link.last_error
        assert link.connections == 0
    finally:
        await link.stop()
        await asyncio.wait_for(task, 10)

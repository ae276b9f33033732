"""The signed handshake names the address the worker dialled, and a real ``pendra sandbox`` checks
it against the URL it is configured to serve — never against the ``Host`` header a client sends.

* a client that dials the sandbox but sends a forged ``Host`` (and signs for that host) is refused,
  on the WebSocket and on the key-check endpoint;
* a real ``pendra --no-ui`` that dials a relay at another address (a plain TCP forwarder, as a
  phishing server would run) is refused and stops with exit code 5;
* the same relay works once the sandbox is told it is its public URL (``--public-url``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.link.link_procs import (
    API_KEY,
    Proc,
    free_port,
    spawn,
    start_sandbox_proc,
    stop,
    worker_env,
)
from worker.keys import WorkerKey, read_key_file
from worker.protocol import (
    VERIFY_PATH,
    WORKER_PATH,
    Auth,
    ErrorFrame,
    Hardware,
    Hello,
    Welcome,
    audience,
    auth_transcript,
    parse_server_frame,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
EXIT_AUTH_REJECTED = 5


@contextlib.contextmanager
def tcp_relay(target_port: int) -> Iterator[int]:
    """A byte-for-byte TCP forwarder on 127.0.0.1 to ``target_port``; yields its own port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port_box: list[int] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    stopping = asyncio.Event()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_box.append(server.sockets[0].getsockname()[1])
        ready.set()
        await stopping.wait()
        server.close()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield port_box[0]
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        loop.close()


async def handshake(port: int, key: WorkerKey, host: str | None, signed_for: str) -> object:
    """Dial the sandbox at ``port`` (sending ``Host: host`` when given), sign for the address
    ``signed_for``; the frame that answers the auth."""
    headers = {"Host": host} if host else {}
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{port}{WORKER_PATH}", headers=headers)
        challenge = parse_server_frame((await ws.receive()).data)
        signature = key.sign(
            auth_transcript(
                protocol=1,
                nonce=challenge.nonce,  # type: ignore[attr-defined]
                server_id=challenge.server_id,  # type: ignore[attr-defined]
                public_key=key.public_key,
                audience=audience(f"ws://{signed_for}{WORKER_PATH}"),
            )
        )
        auth = Auth(protocol=1, public_key=key.public_key, signature=signature, worker_version="t")
        await ws.send_str(auth.dump())
        hello = Hello(worker_version="t", protocol=1, hardware=Hardware(os="linux", arch="x"))
        await ws.send_str(hello.dump())
        answer = parse_server_frame((await ws.receive()).data)
        if isinstance(answer, ErrorFrame):
            await ws.receive()
            assert ws.close_code == 4401
        await ws.close()
        return answer


def verify_over_http(port: int, key: WorkerKey, host: str | None, signed_for: str) -> int:
    headers = {"Host": host} if host else {}
    url = f"http://127.0.0.1:{port}{VERIFY_PATH}"
    with httpx.Client(timeout=10) as http:
        first = http.post(url, json={"public_key": key.public_key}, headers=headers).json()
        signature = key.sign(
            auth_transcript(
                protocol=1,
                nonce=first["nonce"],
                server_id=first["server_id"],
                public_key=key.public_key,
                audience=audience(f"http://{signed_for}{VERIFY_PATH}"),
            )
        )
        body = {
            "public_key": key.public_key,
            "nonce": first["nonce"],
            "protocol": 1,
            "signature": signature,
        }
        return http.post(url, json=body, headers=headers).status_code


def test_a_forged_host_header_does_not_choose_the_audience(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    port = free_port()
    key_file = tmp_path / "sandbox-worker.key"
    sandbox = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_file)
    key = read_key_file(key_file)
    try:
        forged = asyncio.run(handshake(port, key, host="evil.example", signed_for="evil.example"))
        assert isinstance(forged, ErrorFrame) and forged.code == "auth_failed", forged
        assert verify_over_http(port, key, "evil.example", "evil.example") == 401
        # The same key, signing for the address it really dialled, is accepted:
        honest = asyncio.run(handshake(port, key, host=None, signed_for=f"127.0.0.1:{port}"))
        assert isinstance(honest, Welcome), honest
        assert verify_over_http(port, key, None, f"127.0.0.1:{port}") == 200
    finally:
        stop(sandbox)


def connected(env: dict[str, str]) -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode == 0 and json.loads(result.stdout)["worker"]["state"] == "connected"


def sandbox_with_public_url(
    env: dict[str, str], logs: Path, port: int, key_out: Path, public_url: str
) -> Proc:
    args = ["sandbox", "--port", str(port), "--api-key", API_KEY, "--key-out", str(key_out)]
    proc = spawn([*args, "--public-url", public_url], env, logs, "sandbox-public-url")
    deadline = time.monotonic() + 30
    while "Pendra sandbox ready" not in proc.out.read_text(errors="replace"):
        assert proc.popen.poll() is None and time.monotonic() < deadline, proc.output()
        time.sleep(0.05)
    # the banner tells workers the public URL, in the ws:// spelling APP_SERVER_WS_URL takes
    ws_url = "ws" + public_url.removeprefix("http")
    assert f"APP_SERVER_WS_URL={ws_url} " in proc.out.read_text()
    return proc


def test_a_worker_dialling_a_relay_is_refused_unless_the_relay_is_the_public_url(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    port = free_port()
    key_file = tmp_path / "sandbox-worker.key"
    sandbox = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_file)
    try:
        with tcp_relay(port) as relay_port:
            relay_url = f"http://127.0.0.1:{relay_port}"
            env = worker_env(clean_env, relay_url, key_file, tmp_path / "models")
            env["PENDRA_BUILTIN"] = "false"
            worker = spawn(["--no-ui"], env, tmp_path / "logs", "worker-via-relay")
            try:
                assert worker.wait(60) == EXIT_AUTH_REJECTED, worker.output()
            finally:
                worker.kill()
            assert "not accepted" in worker.output()
            stop(sandbox)

            sandbox = sandbox_with_public_url(
                clean_env, tmp_path / "logs", port, key_file, relay_url
            )
            worker = spawn(["--no-ui"], env, tmp_path / "logs", "worker-via-proxy")
            try:
                deadline = time.monotonic() + 60
                while not connected(env):
                    assert worker.popen.poll() is None, worker.output()
                    assert time.monotonic() < deadline, worker.output()
                    time.sleep(0.2)
            finally:
                assert stop(worker) == 0, worker.output()
    finally:
        stop(sandbox)

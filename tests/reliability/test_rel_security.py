"""Security checks: the worker key stays secret, files are private, nothing listens outside
loopback, TLS verification cannot be switched off silently, downloads are pinned.

The process checks run the real ``pendra sandbox`` and ``pendra --no-ui`` as OS processes on
127.0.0.1 and look at them from the outside (/proc, psutil, their logs, ``pendra status --json``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
import os
import re
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from aiohttp import web

from worker.errors import ConfigError
from worker.keys import generate_key, read_key_file, write_key_file
from worker.link.client import LinkClient
from worker.settings import BACKEND_KINDS, load_settings

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
SANDBOX_API_KEY = "sk-security-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Procs:
    home: Path
    key_file: Path
    key_text: str
    sandbox: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    worker_err: Path
    env: dict[str, str]
    api_url: str


def _spawn(args: list[str], env: dict[str, str], out: Path, err: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker", *args],
        env=env,
        cwd=ROOT,
        stdout=out.open("wb"),
        stderr=err.open("wb"),
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def procs(tmp_path: Path, clean_env: dict[str, str], pendra_home: Path) -> Iterator[Procs]:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    key_file = tmp_path / "sandbox-worker.key"
    sandbox = _spawn(
        ["sandbox", "--port", str(port), "--api-key", SANDBOX_API_KEY, "--key-out", str(key_file)],
        clean_env,
        tmp_path / "sandbox.out",
        tmp_path / "sandbox.err",
    )
    worker: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 30
        while "ready" not in (tmp_path / "sandbox.out").read_text(errors="replace"):
            assert sandbox.poll() is None and time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.05)
        env = {
            **clean_env,
            "PENDRA_API_URL": api_url,
            "PENDRA_WORKER_KEY_FILE": str(key_file),
            "PENDRA_MODELS_DIR": str(tmp_path / "models"),
            "PENDRA_BUILTIN": "false",
            "PENDRA_HEARTBEAT_INTERVAL": "1",
            **{f"{kind.upper()}_ENDPOINT": "off" for kind in BACKEND_KINDS},
        }
        worker_err = tmp_path / "worker.err"
        worker = _spawn(["--no-ui"], env, tmp_path / "worker.out", worker_err)
        deadline = time.monotonic() + 30
        while True:
            assert worker.poll() is None, worker_err.read_text(errors="replace")
            assert time.monotonic() < deadline, "the worker did not connect"
            try:
                listed = httpx.get(f"{api_url}/api/v1/workers", timeout=5).json()["workers"]
            except httpx.HTTPError:
                listed = []
            if listed and (pendra_home / "run" / "admin.sock").exists():
                break
            time.sleep(0.1)
        key_text = key_file.read_text().strip()
        yield Procs(pendra_home, key_file, key_text, sandbox, worker, worker_err, env, api_url)
    finally:
        for proc in (worker, sandbox):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def _proc_bytes(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def test_running_worker_keeps_its_key_secret_and_private(procs: Procs) -> None:
    key = procs.key_text.encode()
    assert len(base64.b64decode(key, validate=True)) == 64  # the console's form, as issued
    # Every other text form of the same key must stay out of sight too.
    forms = [f.encode() for f in read_key_file(procs.key_file).secret_forms()]
    worker = psutil.Process(procs.worker.pid)
    family = [worker, *worker.children(recursive=True)]
    for proc in family:
        assert key not in _proc_bytes(proc.pid, "cmdline"), proc
        assert key not in _proc_bytes(proc.pid, "environ"), proc

    # Files: key 0600, admin socket 0600 in a 0700 run dir.
    assert stat.S_IMODE(procs.key_file.stat().st_mode) == 0o600
    sock = procs.home / "run" / "admin.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700

    # pendra status --json: no key, and the documented keys.
    status = subprocess.run(
        [sys.executable, "-m", "worker", "status", "--json"],
        env=procs.env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert key not in status.stdout and key not in status.stderr
    document = json.loads(status.stdout)
    assert document["worker"]["state"] == "connected"
    assert procs.key_text not in json.dumps(document)

    # Listening sockets: none outside loopback (the worker dials out; it serves only a Unix socket).
    for proc in family:
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                assert conn.laddr.ip in ("127.0.0.1", "::1"), conn

    # Stop it (SIGTERM drains, exit 0), then read everything it logged.
    procs.worker.terminate()
    assert procs.worker.wait(timeout=60) == 0
    logged = procs.worker_err.read_bytes()
    assert b"connected" in logged  # it did log, so the absence of the key means something
    assert key not in logged
    log_files = [p for p in (procs.home / "logs").rglob("*") if p.is_file()]
    assert log_files, "the rotating log file was not written"
    for path in log_files:
        assert not [f for f in forms if f in path.read_bytes()], path
    # Crash reports or any other file the worker left in its home.
    for path in procs.home.rglob("*"):
        if path.is_file() and path != procs.key_file:
            assert not [f for f in forms if f in path.read_bytes()], path


def test_worker_refuses_a_key_file_others_can_read(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    key_file = tmp_path / "worker.key"
    write_key_file(key_file, generate_key())
    os.chmod(key_file, 0o644)
    done = subprocess.run(
        [sys.executable, "-m", "worker", "--no-ui"],
        env={
            **clean_env,
            "PENDRA_WORKER_KEY_FILE": str(key_file),
            "PENDRA_API_URL": "http://127.0.0.1:9",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr
    assert f"chmod 600 {key_file}" in done.stderr
    assert key_file.read_text().strip() not in done.stderr + done.stdout


def test_written_key_files_are_0600_from_the_start(tmp_path: Path) -> None:
    old = os.umask(0o000)  # even with a permissive umask
    try:
        path = tmp_path / "k" / "worker.key"
        write_key_file(path, generate_key())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path).public_key


def test_tui_snapshots_and_screenshots_never_show_a_key() -> None:
    fakes = (ROOT / "tests" / "tui" / "tui_fakes.py").read_text()
    test_keys = set(re.findall(r'"([A-Za-z0-9+/]{86}==)"', fakes))  # the console's 64-byte form
    assert test_keys, "the TUI tests' fake keys were not found"
    images = [
        *(ROOT / "tests" / "tui" / "__snapshots__").rglob("*.svg"),
        *(ROOT / "screenshots").rglob("*.svg"),
    ]
    assert images
    pattern = re.compile(rb"p[dw]k_[A-Za-z0-9_-]{20,}")
    for image in images:
        data = image.read_bytes()
        for key in test_keys:
            assert key.encode() not in data, image
        assert not pattern.search(data), image


# -- transport security --------------------------------------------------------------------------


def test_plain_http_to_a_remote_control_plane_needs_an_explicit_opt_in() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"PENDRA_API_URL": "http://api.example.com"})
    assert "PENDRA_ALLOW_INSECURE_LINK" in (caught.value.hint or "")
    allowed = load_settings(
        {"PENDRA_API_URL": "http://api.example.com", "PENDRA_ALLOW_INSECURE_LINK": "true"}
    )
    assert allowed.ws_url.startswith("ws://")
    assert load_settings({"PENDRA_API_URL": "https://api.example.com"}).ws_url.startswith("wss://")
    assert load_settings({"PENDRA_API_URL": "http://127.0.0.1:8787"}).ws_url.startswith("ws://")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_wss_to_a_self_signed_server_fails_with_a_certificate_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    reached: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        reached.append(request.path)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    settings = load_settings({"PENDRA_API_URL": f"https://127.0.0.1:{port}"})
    from worker.backends.registry import BackendRegistry
    from worker.router import Router

    link = LinkClient(
        key=generate_key(), router=Router(BackendRegistry()), url=settings.ws_url, gpus=list
    )
    caplog.set_level(logging.INFO, logger="worker.link")
    task = asyncio.create_task(link.run())
    try:
        deadline = time.monotonic() + 15
        while "did not verify" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            await asyncio.sleep(0.05)
        assert link.connections == 0 and not reached
        assert "PENDRA_CA_FILE" in caplog.text  # the message says how to trust a private CA
        # With the CA explicitly trusted, the same server is accepted at the TLS level.
        trusted = load_settings(
            {"PENDRA_API_URL": f"https://127.0.0.1:{port}", "PENDRA_CA_FILE": str(cert)}
        )
        assert trusted.ca_file == cert
    finally:
        await link.stop()
        await asyncio.wait_for(task, 10)
        await runner.cleanup()


def test_catalogue_downloads_are_pinned() -> None:
    """Only a variant with both a URL and a 64-hex SHA-256 installs into the built-in store."""
    from worker.catalogue.parse import parse_catalogue

    base = {"tag": "t", "backends": ["pendra"], "size_bytes": 1}
    doc = {
        "version": 1,
        "models": [
            {"id": "a", "task": "chat", "variants": [{**base, "gguf_url": "https://x/a.gguf"}]},
            {"id": "b", "task": "chat", "variants": [{**base, "gguf_sha256": "0" * 64}]},
            {
                "id": "c",
                "task": "chat",
                "variants": [{**base, "gguf_url": "https://x/c.gguf", "gguf_sha256": "f" * 64}],
            },
        ],
    }
    parsed = {m.id: m for m in parse_catalogue(doc).models}
    assert not parsed["a"].variants[0].installs_into_pendra
    assert not parsed["b"].variants[0].installs_into_pendra
    assert parsed["c"].variants[0].installs_into_pendra

"""The admin socket on disk: private modes, one worker per PENDRA_HOME, stale sockets replaced,
and other users refused (by the file mode, and by the SO_PEERCRED check behind it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_test_worker import TestWorker

from worker.admin import AdminClient, AdminServer, AdminSocketError, WorkerAlreadyRunning
from worker.admin.locate import stack_socket
from worker.keys import generate_key
from worker.settings import BACKEND_KINDS, load_settings

NOBODY = 65534


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_socket_is_0600_in_a_0700_directory(pendra_home: Path) -> None:
    settings = load_settings()
    settings.run_dir.mkdir(mode=0o755)
    os.chmod(settings.run_dir, 0o755)  # a too-open directory from elsewhere gets tightened
    async with AdminServer(TestWorker(), settings.admin_socket):
        assert stat.S_ISSOCK(settings.admin_socket.lstat().st_mode)
        assert _mode(settings.admin_socket) == 0o600
        assert _mode(settings.run_dir) == 0o700
        assert _mode(settings.run_dir / "worker.lock") == 0o600
    assert not settings.admin_socket.exists(), "stop() removes the socket"


async def test_a_stale_socket_from_a_crashed_worker_is_replaced(pendra_home: Path) -> None:
    settings = load_settings()
    settings.run_dir.mkdir(mode=0o700)
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(settings.admin_socket))
    leftover.close()
    (settings.run_dir / "worker.lock").write_text("999999\n")  # the dead worker's pid, unlocked
    async with AdminServer(TestWorker(), settings.admin_socket):
        assert (await AdminClient(settings.admin_socket).status())["worker"]["state"]
        assert (settings.run_dir / "worker.lock").read_text().strip() == str(os.getpid())


async def test_a_crashed_worker_process_leaves_a_replaceable_socket(
    pendra_home: Path, clean_env: dict[str, str]
) -> None:
    """A real worker process killed with SIGKILL: its socket stays, its lock does not."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        sys.path.insert(0, sys.argv[1])
        from admin_test_worker import TestWorker
        from worker.admin import AdminServer
        from worker.settings import load_settings

        async def main():
            server = AdminServer(TestWorker(), load_settings().admin_socket)
            await server.start()
            print("ready", flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        str(Path(__file__).parent),
        env=clean_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 30)  # type: ignore[union-attr]
        assert line.strip() == b"ready", (await child.stderr.read()).decode()  # type: ignore
        path = load_settings().admin_socket
        with pytest.raises(WorkerAlreadyRunning, match=rf"pid {child.pid}"):
            await AdminServer(TestWorker(), path).start()
    finally:
        child.kill()
        await child.wait()
    assert path.exists(), "SIGKILL leaves the socket file behind"
    async with AdminServer(TestWorker(), path):
        assert (await AdminClient(path).ping())["pid"] == os.getpid()


async def test_a_second_worker_on_the_same_home_is_refused(pendra_home: Path) -> None:
    path = load_settings().admin_socket
    async with AdminServer(TestWorker(), path):
        second = AdminServer(TestWorker(), path)
        with pytest.raises(WorkerAlreadyRunning) as caught:
            await second.start()
        assert f"pid {os.getpid()}" in str(caught.value)
        assert "PENDRA_HOME" in str(caught.value)
        assert (await AdminClient(path).ping())["pid"] == os.getpid(), "the first one still serves"


async def test_a_worker_beside_the_docker_stack_worker_is_refused(pendra_home: Path) -> None:
    """The stack's worker listens on ``stack/run/admin.sock`` (bind-mounted from its container);
    a process or service worker for the same home must not start beside it."""
    path = load_settings().admin_socket
    async with AdminServer(TestWorker(), stack_socket(pendra_home)):
        with pytest.raises(WorkerAlreadyRunning) as caught:
            await AdminServer(TestWorker(), path).start()
        assert "in Docker" in caught.value.message
        assert caught.value.hint and "pendra stack down" in caught.value.hint
        assert not path.exists()
    # The lock went with the refusal: once the stack's worker is gone, the process worker starts.
    async with AdminServer(TestWorker(), path):
        assert (await AdminClient(path).ping())["pid"] == os.getpid()


def test_pendra_no_ui_refuses_to_start_beside_the_docker_stack_worker(
    pendra_home: Path, clean_env: dict[str, str], tmp_path: Path
) -> None:
    """Through the real command: ``pendra --no-ui`` by hand while ``pendra stack up`` runs."""
    stack = stack_socket(pendra_home)
    stack.parent.mkdir(parents=True, mode=0o700)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(stack))
    listener.listen()
    key_file = tmp_path / "worker.key"
    key_file.write_text(generate_key().text + "\n")
    key_file.chmod(0o600)
    env = {
        **clean_env,
        "PENDRA_WORKER_KEY_FILE": str(key_file),
        "PENDRA_API_URL": "http://127.0.0.1:9",
        "PENDRA_MODELS_DIR": str(tmp_path / "models"),
        **{f"{kind.upper()}_ENDPOINT": "off" for kind in BACKEND_KINDS},
    }
    try:
        result = subprocess.run(
            [sys.executable, "-m", "worker", "--no-ui"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    finally:
        listener.close()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "already running in Docker" in result.stderr
    assert "pendra stack down" in result.stderr
    assert "Traceback" not in result.stderr


async def test_something_else_at_the_socket_path_is_not_deleted(pendra_home: Path) -> None:
    path = load_settings().admin_socket
    path.parent.mkdir(mode=0o700)
    path.write_text("precious")
    with pytest.raises(AdminSocketError, match="is not a socket"):
        await AdminServer(TestWorker(), path).start()
    assert path.read_text() == "precious"
    # the failed start released the lock: a later start (after the file moved) works
    path.unlink()
    async with AdminServer(TestWorker(), path):
        pass


async def test_a_socket_path_too_long_for_unix_sockets_says_what_to_do(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "run" / "admin.sock"
    with pytest.raises(AdminSocketError, match="shorter path"):
        await AdminServer(TestWorker(), deep).start()


async def test_run_dir_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory to another user")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.chown(run_dir, NOBODY, NOBODY)
    with pytest.raises(AdminSocketError, match="belongs to uid 65534"):
        await AdminServer(TestWorker(), run_dir / "admin.sock").start()


# -- another user ---------------------------------------------------------------------------------

_CLIENT = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sys.argv[1])
    except OSError as exc:
        print("connect-error", exc.errno)
        sys.exit(0)
    s.sendall(b"GET /v1/status HTTP/1.1\\r\\nHost: w\\r\\nConnection: close\\r\\n\\r\\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    print(data.split(b"\\r\\n", 1)[0].decode())
    print(data.split(b"\\r\\n\\r\\n", 1)[-1].decode())
    """
)


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A PENDRA_HOME whose parents another user can traverse (pytest's tmp dir is 0700)."""
    if os.geteuid() != 0:
        pytest.skip("switching to another uid for the client needs root")
    base = Path(tempfile.mkdtemp(prefix="pendra-admin-"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def _as_nobody(path: Path) -> str:
    # A system interpreter: the test's own may live under /root, which nobody cannot enter.
    python = next(
        (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if Path(p).exists()), None
    )
    if python is None:
        pytest.skip("no system python3 that another user can run")
    child = await asyncio.create_subprocess_exec(
        python,
        "-c",
        _CLIENT,
        str(path),
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd="/",
    )
    out, err = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == 0, err.decode()
    return out.decode()


async def test_another_user_cannot_open_the_socket(open_parent: Path) -> None:
    path = open_parent / "run" / "admin.sock"
    async with AdminServer(TestWorker(), path):
        output = await _as_nobody(path)
    assert output.strip() == "connect-error 13", "EACCES: the 0700 directory keeps them out"


async def test_peer_credentials_refuse_another_user_even_if_modes_are_loosened(
    open_parent: Path,
) -> None:
    if not hasattr(socket, "SO_PEERCRED"):
        pytest.skip("this OS has no SO_PEERCRED")
    path = open_parent / "run" / "admin.sock"
    async with AdminServer(TestWorker(), path):
        os.chmod(path.parent, 0o755)  # someone loosened the modes by hand
        os.chmod(path, 0o666)
        output = await _as_nobody(path)
        assert (await AdminClient(path).ping())["pid"] == os.getpid(), "the owner still gets in"
    status_line, body = output.strip().split("\n", 1)
    assert status_line == "HTTP/1.1 403 Forbidden"
    assert "uid 65534 may not control it" in body

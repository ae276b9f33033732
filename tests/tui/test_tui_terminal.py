"""The app in a real terminal: ``pendra attach`` inside tmux against a running worker process.

tmux gives the app a real pseudo-terminal of 80x24 (the smallest size the design supports);
``capture-pane -p`` reads what a person would see. Each test runs its own tmux server on a private
socket and kills only that server. Also: ``pendra`` without a terminal says to use ``--no-ui``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.link.link_procs import (
    free_port,
    spawn,
    start_sandbox_proc,
    stop,
    stop_detached_worker,
    worker_env,
)

pytestmark = pytest.mark.timeout(90)


class Tmux:
    """One private tmux server (``-L``) and its single session."""

    def __init__(self, socket_name: str, env: dict[str, str]) -> None:
        self.socket_name = socket_name
        self.env = env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket_name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "app").stdout

    def wait_screen(self, predicate: Callable[[str], bool], what: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"the terminal never showed {what}; it shows:\n{text}")


@pytest.fixture
def tmux(tmp_path: Path, clean_env: dict[str, str]) -> Iterator[Callable[..., Tmux]]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    made: list[Tmux] = []

    def make(env: dict[str, str]) -> Tmux:
        # The pid too: tmux sockets live in one directory per user, shared by concurrent runs.
        name = f"pendra-test-{os.getpid()}-{tmp_path.name}-{len(made)}"
        server = Tmux(name, {**env, "TERM": "xterm-256color"})
        made.append(server)
        return server

    yield make
    for server in made:
        server.run("kill-server")


def test_attach_in_a_real_terminal_shows_the_dashboard_and_q_leaves_the_worker_running(
    tmp_path: Path, clean_env: dict[str, str], tmux: Callable[..., Tmux]
) -> None:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    key_file = tmp_path / "sandbox-worker.key"
    sandbox = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_file)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "cut.gguf").write_bytes(b"GGUF" + bytes(60))  # a file it cannot serve
    env = worker_env(clean_env, api_url, key_file, models_dir)
    worker = spawn(["--no-ui"], env, tmp_path / "logs", "worker")
    try:
        deadline = time.monotonic() + 30
        while not Path(env["PENDRA_HOME"], "run", "admin.sock").exists():
            assert worker.popen.poll() is None, worker.output()
            assert time.monotonic() < deadline, "the worker never opened its admin socket"
            time.sleep(0.1)

        term = tmux(env)
        done = tmp_path / "attach.exit"
        # the status goes to a temporary file first: `done` appears only once it is whole
        command = (
            f"{sys.executable} -m worker attach; echo $? > {done}.tmp; mv {done}.tmp {done}; "
            "sleep 60"
        )
        started = term.run("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", command)
        assert started.returncode == 0, started.stderr
        screen = term.wait_screen(
            lambda text: "● connected" in text and "3 Backends" in text, "the connected dashboard"
        )
        assert "Pendra worker" in screen and "Throughput" in screen
        assert "Host · no GPU" in screen  # this box has no GPU: CPU, RAM, the worker process
        assert "Traceback" not in screen
        term.run("send-keys", "-t", "app", "3")
        screen = term.wait_screen(lambda text: "pendra (built-in)" in text, "the backends view")
        lines = screen.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        # the models view names the modelstore file it does not serve, with the reason
        term.run("send-keys", "-t", "app", "1")
        term.wait_screen(
            lambda text: "✗ unusable" in text and "cut.gguf on pendra cannot be served" in text,
            "the unusable file and why",
        )
        # one dropped in while the app runs arrives through the worker's models event
        (models_dir / "late.gguf").write_bytes(b"not a gguf at all")
        term.wait_screen(lambda text: text.count("✗ unusable") == 2, "the second unusable file")

        term.run("send-keys", "-t", "app", "q")
        deadline = time.monotonic() + 15
        while not done.exists():
            assert time.monotonic() < deadline, f"q did not quit the app:\n{term.screen()}"
            time.sleep(0.1)
        assert done.read_text().strip() == "0"

        # the worker is untouched by the app leaving
        assert worker.popen.poll() is None
        status = subprocess.run(
            [sys.executable, "-m", "worker", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["worker"]["state"] == "connected"
        assert stop(worker, 60) == 0
    finally:
        worker.kill()
        sandbox.kill()


def test_drain_in_a_real_terminal_then_R_starts_the_worker_again(
    tmp_path: Path, clean_env: dict[str, str], tmux: Callable[..., Tmux]
) -> None:
    """Bug: Drain said the worker goes offline, but the process exits and the app could not
    start it again. Here the worker is a real ``pendra --no-ui`` process: d drains it (the
    process exits 0), the bar says so, and R starts a new one the app attaches to."""
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs here: R would install a real user service")
    port = free_port()
    key_file = tmp_path / "sandbox-worker.key"
    sandbox = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_file)
    env = worker_env(clean_env, f"http://127.0.0.1:{port}", key_file, tmp_path / "models")
    worker = spawn(["--no-ui"], env, tmp_path / "logs", "worker")
    home = Path(env["PENDRA_HOME"])
    try:
        deadline = time.monotonic() + 30
        while not (home / "run" / "admin.sock").exists():
            assert worker.popen.poll() is None, worker.output()
            assert time.monotonic() < deadline, "the worker never opened its admin socket"
            time.sleep(0.1)
        term = tmux(env)
        command = f"{sys.executable} -m worker attach; sleep 60"
        started = term.run("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", command)
        assert started.returncode == 0, started.stderr
        term.wait_screen(lambda text: "● connected" in text, "the connected dashboard")

        term.run("send-keys", "-t", "app", "d")
        screen = term.wait_screen(lambda text: "process exits" in text, "what Drain does")
        term.run("send-keys", "-t", "app", "y")
        assert worker.popen.wait(timeout=60) == 0, worker.output()  # drained, then exited
        screen = term.wait_screen(
            lambda text: "not running" in text and "R start it" in text, "the stopped worker"
        )
        assert "Traceback" not in screen

        term.run("send-keys", "-t", "app", "R")
        term.wait_screen(lambda text: "Start the worker?" in text, "what R does")
        term.run("send-keys", "-t", "app", "y")
        screen = term.wait_screen(lambda text: "● connected" in text, "the new worker", 60)
        status = subprocess.run(
            [sys.executable, "-m", "worker", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["worker"]["state"] == "connected"
        term.run("send-keys", "-t", "app", "q")
    finally:
        stop(worker)  # first: until it is gone, the lock names it, not the detached one
        stop_detached_worker(home)
        sandbox.kill()


def test_attach_without_a_worker_says_how_to_start_one(
    clean_env: dict[str, str], tmux: Callable[..., Tmux], tmp_path: Path
) -> None:
    term = tmux(clean_env)
    done = tmp_path / "attach.exit"
    # the status goes to a temporary file first: `done` appears only once it is whole
    command = (
        f"{sys.executable} -m worker attach; echo $? > {done}.tmp; mv {done}.tmp {done}; sleep 60"
    )
    assert (
        term.run("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", command).returncode == 0
    )
    screen = term.wait_screen(lambda text: "pendra --no-ui" in text, "the how-to-start hint")
    assert "No Pendra worker is running" in screen and "Traceback" not in screen
    deadline = time.monotonic() + 10
    while not done.exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert done.read_text().strip() == "3"


@pytest.mark.parametrize("args", [[], ["attach"]])
def test_pendra_without_a_terminal_points_to_no_ui(
    clean_env: dict[str, str], args: list[str], pendra_home: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if args == ["attach"]:  # attach checks for a worker first: none here
        assert result.returncode == 3 and "pendra --no-ui" in result.stderr
    else:
        assert result.returncode == 2
        assert "No terminal here" in result.stderr and "pendra --no-ui" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


def test_setup_in_a_real_terminal_changes_a_configured_worker(
    tmp_path: Path, clean_env: dict[str, str], tmux: Callable[..., Tmux], pendra_home: Path
) -> None:
    """``pendra setup`` at 80x24 on a configured machine: the flow opens pre-filled; a new key
    typed in, the name changed, Continue saves both (the key checked by the sandbox)."""
    from worker.keys import generate_key
    from worker.settings import load_settings

    port = free_port()
    key_file = tmp_path / "sandbox-worker.key"
    sandbox = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_file)
    url = f"ws://127.0.0.1:{port}"
    config = pendra_home / "config.yaml"
    old_key = generate_key(console_form=True).text  # not accepted by this sandbox
    config.write_text(
        f"# configured earlier\napp_server_ws_url: {url}\nworker_name: rack-7\n"
        f"gpu_worker_private_key: {old_key}\n"
    )
    config.chmod(0o600)
    try:
        term = tmux(clean_env)
        command = f"{sys.executable} -m worker setup; sleep 60"
        started = term.run("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", command)
        assert started.returncode == 0, started.stderr
        term.wait_screen(
            lambda text: "Prerequisites" in text and "passed" in text, "the checks", timeout=60
        )
        term.run("send-keys", "-t", "app", "C-n")
        screen = term.wait_screen(lambda text: "Worker name" in text, "the key step")
        assert url in screen and "rack-7" in screen and "already configured" in screen
        assert old_key[:12] not in screen and "Traceback" not in screen
        lines = screen.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)

        new_key = key_file.read_text().strip()
        term.run("send-keys", "-t", "app", "-l", new_key)
        term.wait_screen(lambda text: "•" * 40 in text, "the masked key")
        term.run("send-keys", "-t", "app", "Tab", "Tab", "Tab", "C-e", "C-u")
        term.wait_screen(lambda text: "rack-7" not in text, "the name field cleared")
        term.run("send-keys", "-t", "app", "-l", "rack-8")
        screen = term.wait_screen(lambda text: "rack-8" in text, "the new name")
        assert new_key[:12] not in screen  # masked while typed
        term.run("send-keys", "-t", "app", "C-n")
        term.wait_screen(lambda text: "Models" in text, "the catalogue step", timeout=30)
        settings = load_settings({"PENDRA_HOME": str(pendra_home)})
        assert settings.private_key == new_key and settings.worker_name == "rack-8"
        assert config.read_text().startswith("# configured earlier\n")
        assert new_key[:12] not in term.screen()
        term.run("send-keys", "-t", "app", "C-q")
    finally:
        sandbox.kill()

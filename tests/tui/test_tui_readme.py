"""The README's "Try it on one machine", in a real terminal: from ``pendra`` to a served completion.

A ``pendra sandbox`` plays the control plane (in real life it is just there). Everything else is
done the way the README says, in ``pendra`` running in tmux at 80×24 — prerequisites, the worker
key (the sandbox's, with ctrl+o), the catalogue (gemma3:270m), backends, Review & Start, the
dashboard showing the install finish — with one step outside the app: the README's curl call.
Then the dashboard's requests view shows that request, and q leaves the worker running.

Every process is stopped at the end, the detached worker by its own process group. Skipped
without tmux, and on a machine where systemd runs (Start would install a real user service).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.link.link_procs import (
    API_KEY,
    free_port,
    start_sandbox_proc,
    stop_detached_worker,
    wait_for_models,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


class Terminal:
    """One private tmux server (``-L``) running one command at 80×24."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", "app", key)
            time.sleep(0.05)  # one key per read: the app sees them as a person types them

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "app", "-l", text)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "app").stdout

    def wait(self, predicate: Callable[[str], bool], what: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"the terminal never showed {what}; it shows:\n{text}")


def footer(screen: str) -> str:
    """The key hints: the last line of the screen."""
    lines = screen.rstrip("\n").splitlines()
    return lines[-1] if lines else ""


def test_readme_from_pendra_to_a_served_completion(
    tmp_path: Path, pendra_home: Path, clean_env: dict[str, str], gemma_gguf: Path
) -> None:
    if shutil.which("tmux") is None or shutil.which("curl") is None:
        pytest.skip("tmux and curl are needed")
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs here: Start would install a real user service")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    env = {
        **clean_env,
        "TERM": "xterm-256color",
        "APP_SERVER_WS_URL": f"ws://127.0.0.1:{port}",  # README step 2: the sandbox
        "PENDRA_MODELS_DIR": str(tmp_path / "models"),
        "PENDRA_THREADS": "1",
        "PENDRA_HEARTBEAT_INTERVAL": "1",
    }
    sandbox_key = pendra_home / "sandbox" / "worker.key"  # where `pendra sandbox` puts it
    sandbox = start_sandbox_proc(env, tmp_path / "logs", port, sandbox_key)
    term = Terminal(f"pendra-readme-{tmp_path.name}", env)
    try:
        done = tmp_path / "pendra.exit"
        # the status goes to a temporary file first: `done` appears only once it is whole
        command = (
            f"{sys.executable} -m worker; echo $? > {done}.tmp; mv {done}.tmp {done}; sleep 120"
        )
        started = term.tmux("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", command)
        assert started.returncode == 0, started.stderr

        # 1 prerequisites: nothing required fails on this machine
        term.wait(lambda s: "Prerequisites" in s and "passed" in s, "the checks")
        assert "Cannot continue" not in term.screen()
        term.keys("C-n")

        # 2 the worker key: the app says where the sandbox's key is; ctrl+o takes it
        screen = term.wait(lambda s: "local `pendra" in s, "the sandbox key hint")
        assert "sandbox/worker.key" in screen
        term.keys("C-o", "Enter")
        # 3 the catalogue from the sandbox: / filters, space chooses
        term.wait(lambda s: "Models" in s and "gemma3:270m" in s, "the catalogue", 60)
        term.wait(lambda s: "needs" in s or "found" in s.lower(), "which backends answer")
        # Focus moves after the key that moves it has been handled: wait for the footer to show
        # where the keys go before typing on (a person's typing speed gives it that time).
        term.wait(lambda s: "space Select" in footer(s), "the table focused")
        term.keys("/")
        term.wait(lambda s: "space Select" not in footer(s), "the filter focused")
        term.type("270m")
        term.wait(lambda s: "1 of " in s, "the catalogue filtered to gemma3:270m")
        term.keys("Enter")
        term.wait(lambda s: "space Select" in footer(s), "the table focused again")
        term.keys("Space")
        term.wait(lambda s: "1 selected" in s, "gemma3:270m chosen")
        term.keys("C-n")
        # 4 backends: the built-in one serves; nothing else needed
        term.wait(lambda s: "Backends" in s and "pendra (built-in)" in s, "the backends", 60)
        term.keys("C-n")
        # 5 review & start
        term.wait(lambda s: "gemma3:270m → pendra" in s, "the review")
        term.keys("C-n")

        # the dashboard: connected, the install finishes, the model is there
        term.wait(lambda s: "● connected" in s and "Throughput" in s, "the dashboard", 60)
        term.keys("4")
        term.wait(lambda s: "gemma3:270m → pendra  done" in s, "the install to finish", 120)
        term.keys("1")
        term.wait(lambda s: "gemma3:270m" in s and "pendra" in s, "the model in the models view")

        # the README's curl call: the one step outside the app
        wait_for_models(api_url, {"gemma3:270m"}, sandbox)
        curl = subprocess.run(
            [
                "curl", "-sS", "-N", f"{api_url}/v1/chat/completions",
                "-H", f"Authorization: Bearer {API_KEY}",
                "-H", "Content-Type: application/json",
                "-d", '{"model": "gemma3:270m", "stream": true, "max_tokens": 16, '
                '"messages": [{"role": "user", "content": "Write a haiku about the sea."}]}',
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )  # fmt: skip
        assert curl.returncode == 0, curl.stderr
        assert '"content"' in curl.stdout and "data: [DONE]" in curl.stdout

        # the request, metadata only, in the dashboard's requests view
        term.keys("2")
        screen = term.wait(
            lambda s: "gemma3:270m" in s and "✓ ok" in s, "the request in the requests view"
        )
        assert "haiku" not in screen and "sea" not in screen  # never the prompt or the reply
        assert "Traceback" not in screen

        # q leaves the app; the worker keeps serving
        term.keys("q")
        deadline = time.monotonic() + 15
        while not done.exists():
            assert time.monotonic() < deadline, f"q did not quit:\n{term.screen()}"
            time.sleep(0.1)
        assert done.read_text().strip() == "0"
        status = subprocess.run(
            [sys.executable, "-m", "worker", "status"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert status.returncode == 0 and "connected" in status.stdout, status.stderr
        assert "1 served" in status.stdout
        # a new shell, without the variable: setup saved the control plane, so the catalogue
        # comes from the sandbox, not from the default public URL
        new_shell = {k: v for k, v in env.items() if k != "APP_SERVER_WS_URL"}
        catalogue = subprocess.run(
            [sys.executable, "-m", "worker", "catalogue"],
            env=new_shell,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert catalogue.returncode == 0 and "gemma3" in catalogue.stdout, catalogue.stderr
        assert "cached" not in catalogue.stdout.lower()
    finally:
        term.tmux("kill-server")
        stop_detached_worker(pendra_home)
        sandbox.kill()
    log = (pendra_home / "logs" / "worker.log").read_text()
    assert sandbox_key.read_text().strip() not in log

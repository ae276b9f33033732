"""``pendra service`` under a real systemd (252, PID 1 in a container of the private daemon).

The container is a Debian host as get.sh finds one: the worker is installed into a venv from the
wheelhouse ``pendra stack`` builds (no index), then ``pendra service install --system`` writes,
enables and starts the unit. The worker connects to a ``pendra sandbox`` on the host (the
container shares the host's network), ``pendra status`` answers, ``systemctl restart`` and ``stop``
drain and end with exit status 0, ``kill -9`` makes systemd start it again, and ``pendra service
uninstall`` leaves no unit, drop-in, enablement link or process behind. The user-unit path runs
too, with ``loginctl enable-linger`` starting the user's manager without a login.

Settings reach the units the way an operator sets them without editing files:
``systemctl set-environment`` on the (system or user) manager.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from stack_support import SANDBOX_API_KEY, start_sandbox, stop_process

from worker.settings import ws_base

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

PENDRA = "/opt/pendra/bin/pendra"
BACKENDS_OFF = [
    f"{kind.upper()}_ENDPOINT=off"
    for kind in (
        "ollama",
        "lmstudio",
        "speaches",
        "vllm",
        "llamacpp",
        "tgi",
        "sglang",
        "localai",
        "openai",
    )
]
USER = "alice"
UID = 1000


class Host:
    """A systemd container and the commands run in it."""

    def __init__(self, container: Any) -> None:
        self.container = container

    def run(
        self, argv: list[str] | str, *, user: str = "root", env: dict[str, str] | None = None
    ) -> tuple[int, str]:
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        environment = dict(env or {})
        if user != "root":
            environment.setdefault("HOME", f"/home/{user}")
            environment.setdefault("XDG_RUNTIME_DIR", f"/run/user/{UID}")
        code, output = self.container.exec_run(argv, user=user, environment=environment)
        return int(code), output.decode("utf-8", "replace")

    def ok(self, argv: list[str] | str, **kw: Any) -> str:
        code, output = self.run(argv, **kw)
        assert code == 0, f"{argv} → {code}:\n{output}"
        return output

    def put_file(self, path: str, data: bytes, *, mode: int, uid: int = 0) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo(os.path.basename(path))
            info.size, info.mode, info.uid, info.gid = len(data), mode, uid, uid
            archive.addfile(info, io.BytesIO(data))
        assert self.container.put_archive(os.path.dirname(path), buffer.getvalue())

    def show(self, *props: str, user: str = "root") -> dict[str, str]:
        scope = [] if user == "root" else ["--user"]
        argv = ["systemctl", *scope, "show", "pendra", *(f"--property={p}" for p in props)]
        output = self.ok(argv, user=user)
        return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)

    def wait_connected(self, user: str = "root", timeout_s: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            code, output = self.run([PENDRA, "status", "--json"], user=user)
            if code == 0:
                document = json.loads(output)
                if document["worker"]["state"] == "connected":
                    return document
            last = output
            time.sleep(0.5)
        journal = self.run(self._journal_argv(user))[1]
        raise AssertionError(f"the service never connected: {last}\n{journal[-3000:]}")

    def _journal_argv(self, user: str) -> list[str]:
        if user == "root":
            return ["journalctl", "-u", "pendra", "--no-pager", "-o", "cat"]
        return ["journalctl", "_SYSTEMD_USER_UNIT=pendra.service", "--no-pager", "-o", "cat"]

    def journal(self, user: str = "root") -> str:
        return self.ok(self._journal_argv(user))

    def worker_processes(self) -> list[str]:
        """Command lines of running ``pendra --no-ui`` processes (minbase has no pgrep)."""
        script = (
            "import os, pathlib\n"
            "for p in pathlib.Path('/proc').glob('[0-9]*/cmdline'):\n"
            "    if p.parent.name == str(os.getpid()): continue\n"
            "    try: c = p.read_bytes().replace(b'\\0', b' ').decode()\n"
            "    except OSError: continue\n"
            "    if c.endswith('pendra --no-ui '): print(c)\n"
        )
        return self.ok(["/opt/pendra/bin/python", "-c", script]).splitlines()


@pytest.fixture(scope="module")
def sandbox_on_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    home = tmp_path_factory.mktemp("sandbox-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PENDRA_")}
    env["PENDRA_HOME"] = str(home)
    url, proc = start_sandbox(env, home / "worker.key", home / "sandbox.log")
    try:
        yield url, (home / "worker.key").read_text()
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def systemd_host(docker_client: Any, systemd_image: str, wheelhouse: Path) -> Iterator[Host]:
    """systemd booted as PID 1, the worker installed from the wheelhouse into /opt/pendra."""
    from docker.types import Mount

    container = docker_client.containers.run(
        systemd_image,
        ["/sbin/init"],
        detach=True,
        network_mode="host",
        tmpfs={"/run": "", "/run/lock": ""},
        mounts=[
            Mount("/sys/fs/cgroup", "/sys/fs/cgroup", type="bind", read_only=True),
            Mount("/wheels", str(wheelhouse), type="bind", read_only=True),
        ],
        environment={"container": "docker"},
        extra_hosts={"host.docker.internal": "127.0.0.1"},
        labels={"ai.pendra.test": "systemd"},
    )
    host = Host(container)
    try:
        deadline = time.monotonic() + 90
        state = ""
        while time.monotonic() < deadline:
            state = host.run(["systemctl", "is-system-running"])[1].strip()
            if state in {"running", "degraded"}:
                break
            time.sleep(0.3)
        assert state == "running", f"systemd is {state}:\n{host.run('systemctl --failed')[1]}"
        started = time.monotonic()
        host.ok(
            "python3 -m venv /opt/pendra && /opt/pendra/bin/pip install --quiet --no-index "
            "--no-compile --disable-pip-version-check --find-links /wheels pendra-worker"
        )
        print(f"[docker tests] installed from the wheelhouse: {time.monotonic() - started:.0f} s")
        yield host
    finally:
        container.remove(force=True)


def test_system_service_lifecycle(systemd_host: Host, sandbox_on_host: tuple[str, str]) -> None:
    host = systemd_host
    url, key = sandbox_on_host
    host.ok("mkdir -m 700 -p /root/.pendra")
    host.put_file("/root/.pendra/worker.key", key.encode(), mode=0o600)
    host.ok(["systemctl", "set-environment", f"PENDRA_API_URL={url}", *BACKENDS_OFF])

    installed = host.ok([PENDRA, "service", "install", "--system"])
    assert "enabled and started pendra.service (system)" in installed
    unit = host.ok(["systemctl", "cat", "pendra"])
    assert f"ExecStart={PENDRA} --no-ui" in unit and key.strip() not in unit
    assert host.show("UnitFileState")["UnitFileState"] == "enabled"
    status = host.wait_connected()
    assert status["worker"]["control_plane"] == ws_base(url)  # app_server_ws_url's form
    assert host.worker_processes() == [f"/opt/pendra/bin/python3 {PENDRA} --no-ui "]
    workers = httpx.get(
        f"{url}/api/v1/workers", headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"}
    ).json()["workers"]
    assert len(workers) == 1

    # restart: the old worker drains and exits 0; a new one connects
    first = host.show("MainPID")["MainPID"]
    host.ok(["systemctl", "restart", "pendra"])
    host.wait_connected()
    assert host.show("MainPID")["MainPID"] != first
    journal = host.journal()
    assert "draining: 0 request(s) in flight" in journal
    assert "pendra.service: Deactivated successfully." in journal
    assert "status=1/FAILURE" not in journal

    # stop: drained, exit status 0, inactive (not failed)
    host.ok(["systemctl", "stop", "pendra"])
    stopped = host.show("ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    assert stopped == {
        "ActiveState": "inactive",
        "Result": "success",
        "ExecMainCode": "1",  # CLD_EXITED: it exited by itself after SIGTERM
        "ExecMainStatus": "0",
    }
    assert host.worker_processes() == []

    # kill -9: systemd starts it again (Restart=on-failure)
    host.ok(["systemctl", "start", "pendra"])
    host.wait_connected()
    killed = host.show("MainPID")["MainPID"]
    host.ok(f"kill -9 {killed}")
    deadline = time.monotonic() + 60
    while host.show("NRestarts")["NRestarts"] != "1":
        assert time.monotonic() < deadline, host.journal()[-2000:]
        time.sleep(0.5)
    host.wait_connected()
    assert host.show("MainPID")["MainPID"] not in {killed, "0"}
    assert "status=9/KILL" in host.journal()

    # uninstall: nothing of the service is left
    removed = host.ok([PENDRA, "service", "uninstall", "--system"])
    assert "stopped and removed /etc/systemd/system/pendra.service" in removed
    host.ok(
        "test ! -e /etc/systemd/system/pendra.service && "
        "test ! -e /etc/systemd/system/pendra.service.d && "
        "test ! -e /etc/systemd/system/multi-user.target.wants/pendra.service"
    )
    assert host.show("LoadState")["LoadState"] == "not-found"
    assert host.worker_processes() == []
    assert host.run([PENDRA, "status"])[0] == 3
    host.ok(["systemctl", "unset-environment", "PENDRA_API_URL"])


def test_user_service_with_lingering(systemd_host: Host, sandbox_on_host: tuple[str, str]) -> None:
    host = systemd_host
    url, key = sandbox_on_host
    host.ok(["useradd", "--create-home", "--uid", str(UID), USER])
    host.ok(["loginctl", "enable-linger", USER])
    deadline = time.monotonic() + 30
    while host.run(["systemctl", "is-active", f"user@{UID}.service"])[1].strip() != "active":
        if time.monotonic() > deadline:
            pytest.skip("the user manager does not start in this container (logind)")
        time.sleep(0.3)
    host.ok("mkdir -m 700 -p ~/.pendra", user=USER)
    host.put_file(f"/home/{USER}/.pendra/worker.key", key.encode(), mode=0o600, uid=UID)
    host.ok(
        ["systemctl", "--user", "set-environment", f"PENDRA_API_URL={url}", *BACKENDS_OFF],
        user=USER,
    )

    installed = host.ok([PENDRA, "service", "install"], user=USER)
    assert "enabled and started pendra.service (user)" in installed
    assert "lingering is on" in installed
    host.wait_connected(user=USER)
    state = json.loads(host.ok([PENDRA, "service", "status", "--json"], user=USER))
    assert state["scope"] == "user" and state["active"] == "active" and state["pid"]

    host.ok(["systemctl", "--user", "stop", "pendra"], user=USER)
    stopped = host.show("ActiveState", "Result", "ExecMainStatus", user=USER)
    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}

    host.ok([PENDRA, "service", "uninstall"], user=USER)
    host.ok(
        "test ! -e ~/.config/systemd/user/pendra.service && "
        "test ! -e ~/.config/systemd/user/pendra.service.d && "
        "test ! -e ~/.config/systemd/user/default.target.wants/pendra.service",
        user=USER,
    )
    assert host.worker_processes() == []
    host.ok(["loginctl", "disable-linger", USER])

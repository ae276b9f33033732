"""Service units: content, drop-in preserved across re-installs, no secret inside, launchd plist,
and the clear message where systemd is not running (this box). ``systemctl``/``launchctl`` are
replaced by a recording runner (no init system runs here); every file is really written."""

from __future__ import annotations

import plistlib
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from installer import service
from installer.checks.probes import CommandResult
from installer.platform import HostInfo
from installer.service import Launchd, NoServiceManager, ServiceError, ServiceSpec, Systemd

ROOT = Path(__file__).resolve().parents[2]
LINUX = HostInfo(os="linux", arch="x86_64", systemd=True, user="alice")
SECRET = "pk_live_THIS_IS_THE_SECRET_KEY_9f8e7d"


class Recorder:
    """Stands in for systemctl/loginctl/launchctl: records argv, answers from a table."""

    def __init__(self, answers: dict[tuple[str, ...], CommandResult] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.answers = answers or {}

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(tuple(argv))
        return self.answers.get(tuple(argv), CommandResult(0, ""))


@pytest.fixture
def spec(tmp_path: Path) -> ServiceSpec:
    home = tmp_path / "home" / ".pendra"
    home.mkdir(parents=True)
    key = home / "worker.key"
    key.write_text(SECRET, encoding="utf-8")
    key.chmod(0o600)
    return ServiceSpec(exec_path=home / "venv" / "bin" / "pendra", home=home)


def test_user_unit_content(spec: ServiceSpec) -> None:
    unit = service.render_systemd_unit(spec)
    assert f"ExecStart={spec.exec_path} --no-ui\n" in unit
    assert f"Environment=PENDRA_HOME={spec.home}\n" in unit
    for line in (
        "Restart=on-failure",
        "RestartSec=5s",
        "NoNewPrivileges=yes",
        "UMask=0077",
        "WantedBy=default.target",
        "After=network-online.target",
        "KillSignal=SIGTERM",
    ):
        assert f"\n{line}\n" in unit, line
    # Options that hide /dev/nvidia* must never be set (comments may mention them).
    settings = [line for line in unit.splitlines() if line and not line.startswith("#")]
    for bad in ("PrivateDevices", "DevicePolicy", "ProtectClock", "ProtectKernelLogs", "User="):
        assert not any(line.startswith(bad) for line in settings), bad
    assert "systemctl --user edit pendra" in unit
    assert unit.endswith("\n") and "$" not in unit


def test_system_unit_runs_as_the_venv_owner(spec: ServiceSpec) -> None:
    unit = service.render_systemd_unit(replace(spec, system=True, run_as="alice"))
    assert "\nUser=alice\n" in unit
    assert "\nWantedBy=multi-user.target\n" in unit
    assert "\nProtectSystem=full\n" in unit and "\nPrivateTmp=yes\n" in unit
    assert "systemctl edit pendra" in unit


def test_paths_with_spaces_are_quoted(tmp_path: Path) -> None:
    spec = ServiceSpec(exec_path=tmp_path / "My Home" / "pendra", home=tmp_path / "a b$c")
    unit = service.render_systemd_unit(spec)
    assert f'ExecStart="{tmp_path}/My Home/pendra" --no-ui' in unit
    assert f'Environment="PENDRA_HOME={tmp_path}/a b$$c"' in unit


def test_no_secret_anywhere_in_units(spec: ServiceSpec) -> None:
    texts = [
        service.render_systemd_unit(spec),
        service.render_systemd_unit(replace(spec, system=True, run_as="alice")),
        service.render_launchd_plist(spec).decode(),
        service.render_dropin(False),
    ]
    for text in texts:
        assert SECRET not in text
        assert "PENDRA_WORKER_KEY" not in text
        assert "worker.key" not in text


def test_install_writes_unit_and_dropin_and_starts(tmp_path: Path, spec: ServiceSpec) -> None:
    run = Recorder(
        {
            ("loginctl", "show-user", "alice", "--property=Linger", "--value"): CommandResult(
                0, "no\n"
            )
        }
    )
    manager = Systemd(system=False, unit_dir=tmp_path / "units", user="alice", run=run)
    report = manager.install(spec)
    assert manager.unit_path.read_text() == service.render_systemd_unit(spec)
    assert manager.unit_path.stat().st_mode & 0o777 == 0o644
    assert manager.dropin_path.read_text() == service.render_dropin(False)
    assert run.calls == [
        ("systemctl", "--user", "daemon-reload"),
        ("systemctl", "--user", "enable", "pendra.service"),
        ("systemctl", "--user", "restart", "pendra.service"),
        ("loginctl", "show-user", "alice", "--property=Linger", "--value"),
        ("loginctl", "enable-linger", "alice"),
    ]
    assert report.changed and any("lingering" in m for m in report.messages)


def test_linger_failure_tells_the_user_what_to_run(tmp_path: Path, spec: ServiceSpec) -> None:
    run = Recorder({("loginctl", "enable-linger", "alice"): CommandResult(1, "", "Access denied")})
    report = Systemd(system=False, unit_dir=tmp_path, user="alice", run=run).install(spec)
    assert any("sudo loginctl enable-linger alice" in m for m in report.messages)


def test_reinstall_keeps_the_users_dropin(tmp_path: Path, spec: ServiceSpec) -> None:
    manager = Systemd(system=False, unit_dir=tmp_path, user="alice", run=Recorder())
    manager.install(spec)
    edited = "[Service]\nEnvironment=PENDRA_LOG_LEVEL=debug\n"
    manager.dropin_path.write_text(edited)
    manager.unit_path.write_text("stale unit from an old version\n")
    report = manager.install(replace(spec, exec_path=spec.home / "venv2" / "bin" / "pendra"))
    assert manager.dropin_path.read_text() == edited
    assert "venv2" in manager.unit_path.read_text()
    assert report.changed and any("kept your" in m for m in report.messages)
    again = manager.install(replace(spec, exec_path=spec.home / "venv2" / "bin" / "pendra"))
    assert not again.changed
    assert not list(tmp_path.glob(".*.tmp"))


def test_uninstall_removes_unit_and_pristine_dropin_keeps_edits(
    tmp_path: Path, spec: ServiceSpec
) -> None:
    run = Recorder()
    manager = Systemd(system=False, unit_dir=tmp_path, run=run)
    manager.install(spec)
    manager.uninstall(spec.exec_path)
    assert not manager.unit_path.exists() and not manager.dropin_path.parent.exists()
    assert ("systemctl", "--user", "disable", "--now", "pendra.service") in run.calls
    manager.install(spec)
    manager.dropin_path.write_text("[Service]\nEnvironment=X=1\n")
    messages = manager.uninstall(spec.exec_path)
    assert not manager.unit_path.exists() and manager.dropin_path.exists()
    assert any("kept your edited" in m for m in messages)
    assert Systemd(system=False, unit_dir=tmp_path / "none", run=run).uninstall(spec.exec_path) == [
        "no user service was installed"
    ]


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_another_installations_unit_is_never_touched(tmp_path: Path, spec: ServiceSpec) -> None:
    """A root uninstall must not stop or delete the unit of another user's install."""
    bob = _executable(tmp_path / "bob" / ".pendra" / "venv" / "bin" / "pendra")
    bobs_spec = ServiceSpec(exec_path=bob, home=bob.parents[2], system=True, run_as="bob")
    run = Recorder()
    manager = Systemd(system=True, unit_dir=tmp_path / "system", run=run)
    manager.install(bobs_spec)
    run.calls.clear()
    before = manager.unit_path.read_bytes()

    messages = manager.uninstall(spec.exec_path)
    assert manager.unit_path.read_bytes() == before
    assert messages == [f"kept {manager.unit_path}: it runs another installation's worker ({bob})"]
    assert run.calls == []  # no `systemctl disable --now` of bob's worker

    with pytest.raises(ServiceError) as err:
        manager.install(replace(spec, system=True))
    assert str(bob) in str(err.value) and "service uninstall --system" in str(err.value)
    assert manager.unit_path.read_bytes() == before

    # The same file through a symlinked path is ours; a unit whose program is gone is replaced.
    link = tmp_path / "bob-link"
    link.symlink_to(bob.parent)
    assert service.foreign_unit(manager, link / "pendra") is None
    bob.unlink()
    report = manager.install(replace(spec, system=True))
    assert any("no longer there" in m for m in report.messages)
    assert service.foreign_unit(manager, spec.exec_path) is None


def test_launchd_leaves_another_installations_plist(tmp_path: Path, spec: ServiceSpec) -> None:
    run = Recorder()
    manager = Launchd(system=False, plist_dir=tmp_path / "LaunchAgents", uid=501, run=run)
    other = ServiceSpec(exec_path=tmp_path / "other" / "bin" / "pendra", home=tmp_path / "o")
    manager.install(other)
    run.calls.clear()
    messages = manager.uninstall(spec.exec_path)
    assert manager.unit_path.exists() and run.calls == []
    assert "another installation's worker" in messages[0]
    manager.uninstall(other.exec_path)
    assert not manager.unit_path.exists()


@pytest.mark.parametrize(
    ("line", "program"),
    [
        ("ExecStart=/opt/p/bin/pendra --no-ui", "/opt/p/bin/pendra"),
        ('ExecStart="/home/a b/bin/pendra" --no-ui', "/home/a b/bin/pendra"),
        ('ExecStart=-"/x/100%%/pendra"', "/x/100%/pendra"),
        ("ExecStart=@/usr/bin/pendra pendra --no-ui", "/usr/bin/pendra"),
        ("ExecStart=", None),
        ("Description=no exec here", None),
    ],
)
def test_unit_program_parsing(line: str, program: str | None) -> None:
    assert service.systemd_unit_program(f"[Service]\n{line}\n") == program


def test_failed_systemctl_is_a_clear_error(tmp_path: Path, spec: ServiceSpec) -> None:
    run = Recorder(
        {
            ("systemctl", "--user", "restart", "pendra.service"): CommandResult(
                1,
                "",
                "Job for pendra.service failed because the control process exited with error code.",
            )
        }
    )
    with pytest.raises(ServiceError) as err:
        Systemd(system=False, unit_dir=tmp_path, run=run).install(spec)
    assert "systemctl --user restart pendra.service" in str(err.value)
    assert "journalctl --user -u pendra" in str(err.value)


def test_status_parsing(tmp_path: Path) -> None:
    shown = (
        "LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n"
        "MainPID=4242\nNRestarts=3\n"
    )
    run = Recorder(
        {
            (
                "systemctl",
                "--user",
                "show",
                "pendra.service",
                "--property=LoadState,ActiveState,SubState,UnitFileState,MainPID,NRestarts",
            ): CommandResult(0, shown)
        }
    )
    state = Systemd(system=False, unit_dir=tmp_path, run=run).status()
    assert state == {
        "manager": "systemd",
        "scope": "user",
        "unit": str(tmp_path / "pendra.service"),
        "installed": False,
        "active": "active",
        "sub_state": "running",
        "enabled": "enabled",
        "pid": 4242,
        "restarts": 3,
    }


def test_launchd_plist_and_install(tmp_path: Path, spec: ServiceSpec) -> None:
    document = plistlib.loads(service.render_launchd_plist(spec))
    assert document["Label"] == "ai.pendra.worker"
    assert document["ProgramArguments"] == [str(spec.exec_path), "--no-ui"]
    assert document["EnvironmentVariables"]["PENDRA_HOME"] == str(spec.home)
    assert document["KeepAlive"] == {"SuccessfulExit": False}
    assert document["RunAtLoad"] is True
    assert document["StandardErrorPath"].startswith(str(spec.home / "logs"))
    assert "UserName" not in document
    run = Recorder()
    manager = Launchd(system=False, plist_dir=tmp_path / "LaunchAgents", uid=501, run=run)
    manager.install(spec)
    assert plistlib.loads(manager.unit_path.read_bytes()) == document
    assert ("launchctl", "bootstrap", "gui/501", str(manager.unit_path)) in run.calls
    assert ("launchctl", "kickstart", "-k", "gui/501/ai.pendra.worker") in run.calls
    printed = (
        "gui/501/ai.pendra.worker = {\n\tactive count = 1\n\tstate = running\n"
        "\tpid = 777\n\t\tnested = x\n}\n"
    )
    run.answers[("launchctl", "print", "gui/501/ai.pendra.worker")] = CommandResult(0, printed)
    status = manager.status()
    assert (status["active"], status["pid"], status["installed"]) == ("running", 777, True)
    manager.uninstall(spec.exec_path)
    assert not manager.unit_path.exists()
    system = plistlib.loads(
        service.render_launchd_plist(replace(spec, system=True, run_as="alice"))
    )
    assert system["UserName"] == "alice"


def test_manager_selection(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    with pytest.raises(NoServiceManager) as err:
        service.manager_for(
            replace(LINUX, systemd=False), system=False, environ=env, run=Recorder()
        )
    assert err.value.exit_code == 4 and "systemd is not running" in str(err.value)
    printable = service.manager_for(
        replace(LINUX, systemd=False), system=False, environ=env, require_running=False
    )
    assert printable.unit_path == tmp_path / ".config/systemd/user/pendra.service"
    no_user_bus = Recorder(
        {
            ("systemctl", "--user", "show-environment"): CommandResult(
                1, "", "Failed to connect to bus"
            )
        }
    )
    with pytest.raises(NoServiceManager, match="no user manager"):
        service.manager_for(LINUX, system=False, environ=env, run=no_user_bus)
    with pytest.raises(ServiceError, match="needs root"):
        service.manager_for(LINUX, system=True, environ=env, run=Recorder())
    root = service.manager_for(
        replace(LINUX, is_root=True), system=True, environ=env, run=Recorder()
    )
    assert root.unit_path == Path("/etc/systemd/system/pendra.service")
    mac = service.manager_for(HostInfo(os="darwin", arch="arm64"), system=False, environ=env)
    assert mac.unit_path == tmp_path / "Library/LaunchAgents/ai.pendra.worker.plist"


def _pendra(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="this host runs systemd")
def test_cli_on_this_box_without_systemd(clean_env: dict[str, str], tmp_path: Path) -> None:
    env = {**clean_env, "HOME": str(tmp_path)}
    done = _pendra(["service", "install"], env)
    assert done.returncode == 4
    assert "systemd is not running on this machine" in done.stderr
    assert "pendra --no-ui" in done.stderr and "Traceback" not in done.stderr
    printed = _pendra(["service", "install", "--print"], env)
    assert printed.returncode == 0
    assert "--no-ui" in printed.stdout and "[Install]" in printed.stdout
    assert f"would be written to {tmp_path}/.config/systemd/user/pendra.service" in printed.stderr
    status = _pendra(["service", "status"], env)
    assert status.returncode == 0 and "not available here" in status.stdout
    removed = _pendra(["service", "uninstall"], env)
    assert removed.returncode == 0 and "no service installed" in removed.stdout


@pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="this host runs systemd")
def test_cli_uninstall_removes_only_this_installations_unit(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**clean_env, "HOME": str(tmp_path)}
    unit = tmp_path / ".config" / "systemd" / "user" / "pendra.service"
    unit.parent.mkdir(parents=True)
    other = ServiceSpec(exec_path=tmp_path / "elsewhere" / "bin" / "pendra", home=tmp_path / "e")
    unit.write_text(service.render_systemd_unit(other))
    kept = _pendra(["service", "uninstall"], env)
    assert kept.returncode == 0 and "another installation's worker" in kept.stdout
    assert unit.read_text() == service.render_systemd_unit(other)

    ours = _pendra(["service", "install", "--print"], env)
    unit.write_text(ours.stdout)  # exactly what `service install` writes for this installation
    removed = _pendra(["service", "uninstall"], env)
    assert removed.returncode == 0 and f"removed {unit}" in removed.stdout
    assert not unit.exists()

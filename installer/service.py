"""The worker as a service: a systemd unit (user or system) or a launchd plist running
``<venv>/bin/pendra --no-ui``.

Rendering is pure (``render_systemd_unit``, ``render_launchd_plist``) and unit-tested; the managers
(:class:`Systemd`, :class:`Launchd`) write files under an injectable directory and run
``systemctl``/``launchctl`` through an injectable runner, so tests check every step without a real
init system. User edits live in a systemd drop-in (``pendra.service.d/override.conf``) that install
creates once and never overwrites (Ollama's users lost their edits on every upgrade). The worker key
never appears in a unit: the worker reads it from its 0600 file.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from installer.checks.probes import CommandResult, run_command
from installer.platform import HostInfo
from worker.atomic_files import write_if_changed
from worker.errors import PendraError

UNIT_NAME = "pendra.service"
LAUNCHD_LABEL = "ai.pendra.worker"
EXIT_NO_SERVICE_MANAGER = 4

DROPIN_TEMPLATE = """\
# Your changes to the Pendra worker service. `pendra service install` never overwrites this file.
# After editing: systemctl {ctl}daemon-reload && systemctl {ctl}restart pendra
#
# [Service]
# Environment=PENDRA_LOG_LEVEL=debug
# Environment=OLLAMA_ENDPOINT=http://127.0.0.1:11434
# Environment=CUDA_VISIBLE_DEVICES=0
"""

Runner = Callable[[Sequence[str]], CommandResult]


class NoServiceManager(PendraError):
    """No systemd (or launchd) to install into: not a failure of the worker, a fact of the host."""

    code = "no_service_manager"
    exit_code = EXIT_NO_SERVICE_MANAGER


class ServiceError(PendraError):
    code = "service_error"


@dataclass(frozen=True)
class ServiceSpec:
    """What the service runs: the venv's ``pendra`` with this ``PENDRA_HOME``."""

    exec_path: Path
    home: Path
    system: bool = False
    run_as: str | None = None  # system scope: the user owning the venv (None: root)


def default_run(argv: Sequence[str]) -> CommandResult:
    return run_command(argv, 30.0)


# --------------------------------------------------------------------------------------------------
# Rendering (pure)


def systemd_quote(value: str) -> str:
    """Quote one word for a systemd command line or ``Environment=`` assignment."""
    if value and not any(c in value for c in " \t\"\\'$%;"):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def _ctl_scope(system: bool) -> str:
    return "" if system else "--user "


def render_systemd_unit(spec: ServiceSpec) -> str:
    template = Template(resources.files("installer").joinpath("pendra.service").read_text("utf-8"))
    system_hardening = ""
    if spec.system:
        # Only for system units: user managers lack the privileges these need.
        system_hardening = "ProtectSystem=full\nProtectControlGroups=yes\nPrivateTmp=yes\n"
    return template.substitute(
        dropin=f"{UNIT_NAME}.d/override.conf",
        ctl_scope=_ctl_scope(spec.system),
        user_line=f"User={spec.run_as}\n" if spec.system and spec.run_as else "",
        exec_start=f"{systemd_quote(str(spec.exec_path))} --no-ui",
        home_env=systemd_quote(f"PENDRA_HOME={spec.home}"),
        system_hardening=system_hardening,
        wanted_by="multi-user.target" if spec.system else "default.target",
    )


def render_dropin(system: bool) -> str:
    return DROPIN_TEMPLATE.format(ctl=_ctl_scope(system))


def render_launchd_plist(spec: ServiceSpec) -> bytes:
    logs = spec.home / "logs"
    document: dict[str, Any] = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": [str(spec.exec_path), "--no-ui"],
        "EnvironmentVariables": {"PENDRA_HOME": str(spec.home), "PYTHONUNBUFFERED": "1"},
        "RunAtLoad": True,
        # Restart when it exits with an error, not after a clean drain (exit 0).
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 10,
        "ExitTimeOut": 45,
        "ProcessType": "Background",
        "Umask": 0o077,
        "StandardOutPath": str(logs / "service.out.log"),
        "StandardErrorPath": str(logs / "service.err.log"),
    }
    if spec.system and spec.run_as:
        document["UserName"] = spec.run_as
    return plistlib.dumps(document, sort_keys=False)


# --------------------------------------------------------------------------------------------------
# Files


@dataclass
class InstallReport:
    manager: str
    scope: str
    unit_path: Path
    changed: bool
    messages: list[str]
    dropin_path: Path | None = None


# --------------------------------------------------------------------------------------------------
# Managers


def refuse_foreign_install(manager: Systemd | Launchd, spec: ServiceSpec) -> list[str]:
    """Install over nothing, over our own unit, or over a dead one; never over another live install.

    Returns the notes to show (a replaced dead unit); raises :class:`ServiceError` when the unit
    runs another installation's ``pendra`` that still exists.
    """
    if foreign_unit(manager, spec.exec_path) is None:
        return []
    try:
        program = manager.program_in(manager.unit_path.read_bytes())
    except OSError:
        program = None
    if program is not None and os.access(program, os.X_OK):
        sudo = "sudo " if manager.system else ""
        flag = " --system" if manager.system else ""
        raise ServiceError(
            f"{manager.unit_path} runs another installation's worker ({program}); "
            "this installation leaves it alone",
            hint=f"remove that one first ({sudo}{program} service uninstall{flag}), "
            "or run only one of them",
        )
    return [f"replaced {manager.unit_path}, which ran {program or 'nothing'} (no longer there)"]


class Systemd:
    """``systemctl`` for one scope; ``unit_dir`` is where units live (injectable for tests)."""

    name = "systemd"

    def __init__(self, *, system: bool, unit_dir: Path, user: str = "", run: Runner = default_run):
        self.system = system
        self.unit_dir = unit_dir
        self.user = user
        self.run = run

    @property
    def scope(self) -> str:
        return "system" if self.system else "user"

    @property
    def unit_path(self) -> Path:
        return self.unit_dir / UNIT_NAME

    @property
    def dropin_path(self) -> Path:
        return self.unit_dir / f"{UNIT_NAME}.d" / "override.conf"

    def _ctl(self, *args: str) -> CommandResult:
        argv = ["systemctl"] if self.system else ["systemctl", "--user"]
        return self.run([*argv, *args])

    def _must(self, *args: str) -> None:
        result = self._ctl(*args)
        if not result.ok:
            scope = "" if self.system else "--user "
            lines = (result.stderr or result.stdout).strip().splitlines()
            reason = lines[-1] if lines else "no output"
            raise ServiceError(
                f"`systemctl {scope}{' '.join(args)}` failed: {reason}",
                hint=f"see `journalctl {'-u' if self.system else '--user -u'} pendra` and "
                f"`systemctl {scope}status pendra`",
            )

    def render(self, spec: ServiceSpec) -> str:
        return render_systemd_unit(spec)

    @staticmethod
    def program_in(data: bytes) -> str | None:
        return systemd_unit_program(data.decode("utf-8", "replace"))

    def install(self, spec: ServiceSpec) -> InstallReport:
        messages = refuse_foreign_install(self, spec)
        changed = write_if_changed(self.unit_path, self.render(spec).encode())
        messages.append(f"{'wrote' if changed else 'unchanged'} {self.unit_path}")
        if not self.dropin_path.exists():
            write_if_changed(self.dropin_path, render_dropin(self.system).encode())
            messages.append(f"your settings go in {self.dropin_path} (kept across re-installs)")
        else:
            messages.append(f"kept your {self.dropin_path}")
        self._must("daemon-reload")
        self._must("enable", UNIT_NAME)
        # restart = start when stopped; picks up a new venv or unit when running.
        self._must("restart", UNIT_NAME)
        messages.append(f"enabled and started {UNIT_NAME} ({self.scope})")
        if not self.system:
            messages.extend(self._ensure_linger())
        return InstallReport(
            "systemd", self.scope, self.unit_path, changed, messages, self.dropin_path
        )

    def _ensure_linger(self) -> list[str]:
        """User services stop at logout unless lingering is on; turn it on or say how."""
        if not self.user:
            return []
        shown = self.run(["loginctl", "show-user", self.user, "--property=Linger", "--value"])
        if shown.ok and shown.stdout.strip() == "yes":
            return ["lingering is on: the worker keeps running after you log out"]
        enabled = self.run(["loginctl", "enable-linger", self.user])
        if enabled.ok:
            return ["enabled lingering (loginctl enable-linger): the worker survives logout"]
        return [
            "the worker stops when you log out until lingering is enabled: run "
            f"`sudo loginctl enable-linger {self.user}`"
        ]

    def uninstall(self, exec_path: Path) -> list[str]:
        """Stop and remove the unit if it runs ``exec_path``; another installation's stays."""
        foreign = foreign_unit(self, exec_path)
        if foreign is not None:
            return [f"kept {self.unit_path}: {foreign}"]
        messages: list[str] = []
        if self.unit_path.exists():
            self._ctl("disable", "--now", UNIT_NAME)  # may already be stopped or unknown
            self.unit_path.unlink()
            messages.append(f"stopped and removed {self.unit_path}")
        if self.dropin_path.exists():
            if self.dropin_path.read_text(encoding="utf-8") == render_dropin(self.system):
                self.dropin_path.unlink()
            else:
                messages.append(f"kept your edited {self.dropin_path}")
        with contextlib.suppress(OSError):  # still holds the user's files
            self.dropin_path.parent.rmdir()
        if messages:
            self._ctl("daemon-reload")
        return messages or [f"no {self.scope} service was installed"]

    def status(self) -> dict[str, Any]:
        result = self._ctl(
            "show",
            UNIT_NAME,
            "--property=LoadState,ActiveState,SubState,UnitFileState,MainPID,NRestarts",
        )
        props = parse_properties(result.stdout) if result.ok else {}
        pid = props.get("MainPID", "0")
        return {
            "manager": "systemd",
            "scope": self.scope,
            "unit": str(self.unit_path),
            "installed": self.unit_path.exists(),
            "active": props.get("ActiveState") or "unknown",
            "sub_state": props.get("SubState") or None,
            "enabled": props.get("UnitFileState") or None,
            "pid": int(pid) if pid.isdigit() and pid != "0" else None,
            "restarts": int(props["NRestarts"]) if props.get("NRestarts", "").isdigit() else None,
        }


class Launchd:
    """``launchctl`` for a LaunchAgent (user) or LaunchDaemon (system)."""

    name = "launchd"

    def __init__(self, *, system: bool, plist_dir: Path, uid: int, run: Runner = default_run):
        self.system = system
        self.plist_dir = plist_dir
        self.uid = uid
        self.run = run

    @property
    def scope(self) -> str:
        return "system" if self.system else "user"

    @property
    def unit_path(self) -> Path:
        return self.plist_dir / f"{LAUNCHD_LABEL}.plist"

    @property
    def domain(self) -> str:
        return "system" if self.system else f"gui/{self.uid}"

    def render(self, spec: ServiceSpec) -> bytes:
        return render_launchd_plist(spec)

    @staticmethod
    def program_in(data: bytes) -> str | None:
        return launchd_plist_program(data)

    def install(self, spec: ServiceSpec) -> InstallReport:
        notes = refuse_foreign_install(self, spec)
        (spec.home / "logs").mkdir(parents=True, exist_ok=True)
        changed = write_if_changed(self.unit_path, self.render(spec))
        target = f"{self.domain}/{LAUNCHD_LABEL}"
        self.run(["launchctl", "bootout", target])  # not loaded yet is fine
        booted = self.run(["launchctl", "bootstrap", self.domain, str(self.unit_path)])
        if not booted.ok:
            raise ServiceError(
                f"`launchctl bootstrap {self.domain}` failed: "
                f"{booted.stderr.strip() or 'no output'}",
                hint=f"check {self.unit_path} with `plutil -lint`",
            )
        self.run(["launchctl", "enable", target])
        self.run(["launchctl", "kickstart", "-k", target])
        messages = [
            *notes,
            f"{'wrote' if changed else 'unchanged'} {self.unit_path}",
            f"loaded and started {LAUNCHD_LABEL} ({self.scope}); logs in {spec.home / 'logs'}",
        ]
        return InstallReport("launchd", self.scope, self.unit_path, changed, messages)

    def uninstall(self, exec_path: Path) -> list[str]:
        """Unload and remove the plist if it runs ``exec_path``; another installation's stays."""
        if not self.unit_path.exists():
            return [f"no {self.scope} service was installed"]
        foreign = foreign_unit(self, exec_path)
        if foreign is not None:
            return [f"kept {self.unit_path}: {foreign}"]
        self.run(["launchctl", "bootout", f"{self.domain}/{LAUNCHD_LABEL}"])
        self.unit_path.unlink()
        return [f"stopped and removed {self.unit_path}"]

    def status(self) -> dict[str, Any]:
        result = self.run(["launchctl", "print", f"{self.domain}/{LAUNCHD_LABEL}"])
        props = parse_launchctl_print(result.stdout) if result.ok else {}
        pid = props.get("pid", "")
        return {
            "manager": "launchd",
            "scope": self.scope,
            "unit": str(self.unit_path),
            "installed": self.unit_path.exists(),
            "active": props.get("state", "not loaded" if not result.ok else "unknown"),
            "sub_state": None,
            "enabled": "loaded" if result.ok else None,
            "pid": int(pid) if pid.isdigit() else None,
            "restarts": None,
        }


def parse_properties(text: str) -> dict[str, str]:
    """``systemctl show`` output (``Key=value`` lines)."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def parse_launchctl_print(text: str) -> dict[str, str]:
    """The top-level ``key = value`` lines of ``launchctl print`` (state, pid, last exit code)."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("\t") and not line.startswith("\t\t") and " = " in line:
            key, _, value = line.strip().partition(" = ")
            props.setdefault(key, value)
    return props


def _first_word(value: str) -> str | None:
    """The first word of a systemd command line, with systemd's quoting undone."""
    value = value.strip()
    if not value:
        return None
    if value[0] not in "\"'":
        word = value.split()[0]
    else:
        quote, escaped = value[0], False
        chars: list[str] = []
        for char in value[1:]:
            if escaped:
                chars.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                break
            else:
                chars.append(char)
        word = "".join(chars)
    return word.replace("%%", "%").replace("$$", "$") or None


def systemd_unit_program(text: str) -> str | None:
    """The program a systemd unit runs: the first word of its last ``ExecStart=`` (pure)."""
    program = None
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == "ExecStart":
            # Prefixes like "-" (ignore failure) or "@" (argv[0]) come before the path.
            program = _first_word(value.strip().lstrip("-@:+!"))
    return program


def launchd_plist_program(data: bytes) -> str | None:
    """The program a launchd plist runs: ``Program`` or ``ProgramArguments[0]`` (pure)."""
    try:
        document = plistlib.loads(data)
    except Exception:  # any malformed plist is simply "not ours"
        return None
    if not isinstance(document, dict):
        return None
    program = document.get("Program")
    arguments = document.get("ProgramArguments")
    if not isinstance(program, str) and isinstance(arguments, list) and arguments:
        program = arguments[0]
    return program if isinstance(program, str) and program else None


def same_program(program: str, exec_path: Path) -> bool:
    """Whether a unit's program is ``exec_path`` (through symlinks too)."""
    return program == str(exec_path) or os.path.realpath(program) == os.path.realpath(exec_path)


def foreign_unit(manager: Systemd | Launchd, exec_path: Path) -> str | None:
    """Why the installed unit is not this installation's to touch, or ``None`` (absent or ours).

    A unit belongs to the installation whose ``pendra`` it runs: another user's install, or one
    under another ``PENDRA_HOME``, keeps its own unit whatever this one does.
    """
    try:
        data = manager.unit_path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    program = manager.program_in(data)
    if program is None:
        return "it does not run a pendra this installation knows"
    if same_program(program, exec_path):
        return None
    return f"it runs another installation's worker ({program})"


# --------------------------------------------------------------------------------------------------
# Choosing the manager for this host


def current_spec(home: Path, *, system: bool) -> ServiceSpec:
    """The spec for this environment: its own ``pendra`` executable and ``PENDRA_HOME``."""
    exec_path = Path(sys.prefix) / "bin" / "pendra"
    if not exec_path.exists():
        found = shutil.which("pendra")
        if found is None:
            raise ServiceError(
                "cannot find the `pendra` executable of this installation",
                hint="re-run get.sh, which installs it into ~/.pendra/venv",
            )
        exec_path = Path(found)
    run_as = None
    if system:
        try:
            import pwd

            owner = pwd.getpwuid(exec_path.stat().st_uid).pw_name
            run_as = None if owner == "root" else owner
        except (ImportError, KeyError, OSError):
            run_as = None
    return ServiceSpec(exec_path=exec_path, home=home, system=system, run_as=run_as)


def manager_for(
    host: HostInfo,
    *,
    system: bool,
    environ: dict[str, str] | None = None,
    run: Runner = default_run,
    require_running: bool = True,
) -> Systemd | Launchd:
    """The service manager to use here, or :class:`NoServiceManager` saying why there is none.

    ``require_running=False`` returns the manager whose files would be written (``--print``,
    uninstall) even where it is not running.
    """
    env = dict(os.environ if environ is None else environ)
    home = Path(env.get("HOME") or Path.home())
    if host.os == "darwin":
        directory = Path("/Library/LaunchDaemons") if system else home / "Library" / "LaunchAgents"
        return Launchd(system=system, plist_dir=directory, uid=os.getuid(), run=run)
    if host.os != "linux":
        raise NoServiceManager(
            f"services are supported on Linux (systemd) and macOS (launchd), not {host.os}",
            hint="run the worker in the foreground: pendra --no-ui",
        )
    if system:
        unit_dir = Path("/etc/systemd/system")
    else:
        config = env.get("XDG_CONFIG_HOME") or str(home / ".config")
        unit_dir = Path(config) / "systemd" / "user"
    manager = Systemd(system=system, unit_dir=unit_dir, user=host.user, run=run)
    if not require_running:
        return manager
    if not host.systemd:
        raise NoServiceManager(
            "systemd is not running on this machine (a container, WSL without systemd, or "
            "another init system), so there is no service to install",
            hint="run the worker in the foreground or under your own supervisor: pendra --no-ui "
            "(`pendra service install --print` shows the unit for a systemd host)",
        )
    if system and not host.is_root:
        raise ServiceError(
            "a system service needs root",
            hint="sudo ~/.pendra/venv/bin/pendra service install --system",
        )
    if not system:
        probe = run(["systemctl", "--user", "show-environment"])
        if not probe.ok:
            raise NoServiceManager(
                "systemd runs, but this session has no user manager (typical after `su` or in a "
                "non-login SSH command)",
                hint="log in directly as this user and run it again, or install a system service: "
                "sudo ~/.pendra/venv/bin/pendra service install --system",
            )
    return manager

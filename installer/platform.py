"""What kind of host this is: OS, distribution, CPU architecture, WSL, package manager, init system.

The parsers are pure (they take the text of ``/etc/os-release``, ``uname -r`` …) so each case is
unit-tested without the host; :func:`detect_host` gathers the real inputs once. Nothing here needs a
third-party package: get.sh runs this module before the distribution's dependencies are installed.
"""

from __future__ import annotations

import os
import platform as _platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Architectures the worker supports, normalised from the many spellings `uname -m` uses.
_ARCH_ALIASES = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "aarch64": "arm64",
    "arm64": "arm64",
}

# Package-manager family by /etc/os-release ID or ID_LIKE word; the first match wins.
_PACKAGE_MANAGERS = (
    ("debian", "apt"),
    ("ubuntu", "apt"),
    ("fedora", "dnf"),
    ("rhel", "dnf"),
    ("centos", "dnf"),
    ("rocky", "dnf"),
    ("almalinux", "dnf"),
    ("amzn", "dnf"),
    ("suse", "zypper"),
    ("opensuse", "zypper"),
    ("arch", "pacman"),
    ("alpine", "apk"),
)


@dataclass(frozen=True)
class HostInfo:
    """The facts about this machine that checks, fixes and the build choice depend on."""

    os: str  # "linux" | "darwin" | "windows" | other sys.platform value
    arch: str  # "x86_64" | "arm64" | the raw machine name when unsupported
    distro_id: str = ""  # os-release ID, e.g. "debian", "ubuntu", "fedora"
    distro_like: tuple[str, ...] = ()
    distro_version: str = ""
    distro_name: str = ""
    wsl: int | None = None  # 1 or 2 under WSL, else None
    package_manager: str | None = None  # "apt" | "dnf" | "zypper" | "pacman" | "apk" | "brew"
    systemd: bool = False  # systemd is PID 1 (sd_booted: /run/systemd/system exists)
    is_root: bool = False
    user: str = ""
    rosetta: bool = False  # an x86_64 Python translated on Apple Silicon
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def supported_arch(self) -> bool:
        return self.arch in {"x86_64", "arm64"}

    @property
    def pretty(self) -> str:
        """One line naming the host, e.g. "Debian GNU/Linux 12 (bookworm), x86_64"."""
        if self.os == "darwin":
            name = "macOS"
        elif self.distro_name:
            name = self.distro_name
        else:
            name = self.os.capitalize()
        if self.wsl:
            name += f" under WSL{self.wsl}"
        return f"{name}, {self.arch}"


def normalise_arch(machine: str) -> str:
    """``uname -m`` to the names the project uses; unknown names pass through unchanged."""
    return _ARCH_ALIASES.get(machine.strip().lower(), machine.strip().lower())


def parse_os_release(text: str) -> dict[str, str]:
    """Parse ``/etc/os-release`` (shell-style KEY=value lines, values optionally quoted)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in {'"', "'"}:
            raw = raw[1:-1]
        values[key.strip()] = raw.replace('\\"', '"').replace("\\$", "$").replace("\\\\", "\\")
    return values


def detect_wsl(kernel_release: str, interop_exists: bool = False) -> int | None:
    """WSL generation from ``uname -r``: "microsoft-standard-WSL2" is 2, "Microsoft" is 1."""
    lowered = kernel_release.lower()
    if "microsoft" not in lowered:
        return 2 if interop_exists and "wsl" in lowered else None
    return 2 if "wsl2" in lowered or "microsoft-standard" in lowered else 1


def package_manager_for(os_name: str, distro_id: str, distro_like: tuple[str, ...]) -> str | None:
    """The package manager whose commands the fix hints should use."""
    if os_name == "darwin":
        return "brew"
    words = (distro_id, *distro_like)
    for word in words:
        for key, manager in _PACKAGE_MANAGERS:
            if word == key:
                return manager
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _is_rosetta() -> bool:
    """True when this x86_64 process is translated by Rosetta 2 on an Apple Silicon Mac."""
    if sys.platform != "darwin":
        return False
    import subprocess

    from worker.child_env import child_env

    try:
        out = subprocess.run(
            ["sysctl", "-n", "sysctl.proc_translated"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            stdin=subprocess.DEVNULL,
            env=child_env(),
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return out == "1"


def detect_host() -> HostInfo:
    """Gather the facts of the machine this process runs on."""
    os_name = "darwin" if sys.platform == "darwin" else sys.platform
    if os_name.startswith("linux"):
        os_name = "linux"
    elif os_name.startswith("win"):
        os_name = "windows"
    release = parse_os_release(_read("/etc/os-release")) if os_name == "linux" else {}
    distro_id = release.get("ID", "").lower()
    distro_like = tuple(release.get("ID_LIKE", "").lower().split())
    wsl = None
    if os_name == "linux":
        wsl = detect_wsl(_platform.release(), Path("/proc/sys/fs/binfmt_misc/WSLInterop").exists())
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    if not user and hasattr(os, "getuid"):
        try:
            import pwd

            user = pwd.getpwuid(os.getuid()).pw_name
        except (ImportError, KeyError):
            user = ""
    return HostInfo(
        os=os_name,
        arch=normalise_arch(_platform.machine()),
        distro_id=distro_id,
        distro_like=distro_like,
        distro_version=release.get("VERSION_ID", ""),
        distro_name=release.get("PRETTY_NAME", ""),
        wsl=wsl,
        package_manager=package_manager_for(os_name, distro_id, distro_like)
        or ("brew" if shutil.which("brew") else None),
        systemd=Path("/run/systemd/system").is_dir(),
        is_root=hasattr(os, "geteuid") and os.geteuid() == 0,
        user=user,
        rosetta=_is_rosetta(),
    )

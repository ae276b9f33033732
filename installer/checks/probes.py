"""Everything the checks learn from the outside world, behind one injectable object.

Each check takes a :class:`Probes` and reads the host only through it, so the tests give each check
fake probes for each of its states (no Docker, daemon down, permission denied, GPUs …) while
``pendra doctor`` uses :meth:`Probes.real` on the actual machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from installer.platform import HostInfo, detect_host
from worker.child_env import child_env


@dataclass(frozen=True)
class CommandResult:
    """A finished command. ``returncode`` None means the program does not exist."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@dataclass(frozen=True)
class HttpResult:
    """An HTTP probe: a status when a server answered, else the kind of failure and its text."""

    status: int | None = None
    error: str | None = None  # "dns" | "refused" | "timeout" | "tls" | "other"
    message: str = ""


@dataclass(frozen=True)
class GpuSummary:
    name: str
    memory_total: int | None = None


@dataclass(frozen=True)
class DiskSpace:
    path: Path  # the nearest existing directory that was measured
    free: int
    total: int


@dataclass(frozen=True)
class LlamaBuild:
    version: str
    accel: str | None  # from get.sh's stamp; None when installed some other way


@dataclass
class Probes:
    """The host as the checks see it. Every field has a real default (:meth:`real`)."""

    host: HostInfo
    run: Callable[[Sequence[str], float], CommandResult]
    which: Callable[[str], str | None]
    gpus: Callable[[], list[GpuSummary]]
    nvidia_driver: Callable[[], str | None]  # driver version, None without a working driver
    nvidia_pci: Callable[[], bool]  # an NVIDIA device on the PCI bus (driver or not)
    disk: Callable[[Path], DiskSpace]
    http_get: Callable[[str, float], HttpResult]
    exists: Callable[[Path], bool]
    llama: Callable[[], LlamaBuild | None]
    python_version: tuple[int, int, int] = field(
        default_factory=lambda: (sys.version_info[0], sys.version_info[1], sys.version_info[2])
    )
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def real(cls) -> Probes:
        return cls(
            host=detect_host(),
            run=run_command,
            which=shutil.which,
            gpus=read_gpu_summaries,
            nvidia_driver=nvidia_driver_version,
            nvidia_pci=nvidia_on_pci_bus,
            disk=disk_space,
            http_get=http_get,
            exists=Path.exists,
            llama=llama_build,
        )


# --------------------------------------------------------------------------------------------------
# Real probes


def run_command(argv: Sequence[str], timeout: float) -> CommandResult:
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            env=child_env(),
        )
    except FileNotFoundError:
        return CommandResult(None)
    except subprocess.TimeoutExpired as exc:
        return CommandResult(-1, _text(exc.stdout), _text(exc.stderr), timed_out=True)
    except OSError as exc:
        return CommandResult(None, "", str(exc))
    return CommandResult(done.returncode, done.stdout, done.stderr)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def read_gpu_summaries() -> list[GpuSummary]:
    """NVIDIA GPUs through ``worker.gpu.read_gpus`` (NVML, then nvidia-smi)."""
    try:
        from worker.gpu import read_gpus
    except ImportError:
        return _gpus_from_smi()
    try:
        return [GpuSummary(g.name, g.memory_total) for g in read_gpus()]
    except Exception:  # read_gpus promises never to raise; a doctor must not crash if it does
        return _gpus_from_smi()


def _gpus_from_smi() -> list[GpuSummary]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    result = run_command(
        [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"], 10
    )
    if not result.ok:
        return []
    gpus = []
    for line in result.stdout.splitlines():
        name, _, mem = line.rpartition(",")
        if name.strip():
            mib = mem.strip()
            gpus.append(GpuSummary(name.strip(), int(mib) * 1024 * 1024 if mib.isdigit() else None))
    return gpus


def nvidia_driver_version() -> str | None:
    from installer.accel import detect_nvidia

    info = detect_nvidia()
    return info.driver_version if info else None


def nvidia_on_pci_bus() -> bool:
    """An NVIDIA display/3D controller in sysfs (vendor 0x10de), driver loaded or not."""
    root = Path("/sys/bus/pci/devices")
    if not root.is_dir():
        return False
    for device in root.iterdir():
        try:
            vendor = (device / "vendor").read_text().strip()
            klass = (device / "class").read_text().strip()
        except OSError:
            continue
        # 0x03xxxx = display controllers (VGA 0x0300, 3D 0x0302).
        if vendor == "0x10de" and klass.startswith("0x03"):
            return True
    return False


def disk_space(path: Path) -> DiskSpace:
    """Free space where ``path`` will live: measured at its nearest existing ancestor."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return DiskSpace(probe, usage.free, usage.total)


def http_get(url: str, timeout: float) -> HttpResult:
    request = urllib.request.Request(url, headers={"User-Agent": "pendra-doctor"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpResult(status=response.status)
    except urllib.error.HTTPError as exc:
        return HttpResult(status=exc.code)
    except urllib.error.URLError as exc:
        return _classify(exc.reason)
    except (OSError, ValueError) as exc:
        return _classify(exc)


def _classify(reason: object) -> HttpResult:
    if isinstance(reason, socket.gaierror):
        return HttpResult(error="dns", message=str(reason))
    if isinstance(reason, ConnectionRefusedError):
        return HttpResult(error="refused", message=str(reason))
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return HttpResult(error="timeout", message=str(reason) or "timed out")
    if isinstance(reason, ssl.SSLError):
        return HttpResult(error="tls", message=str(reason))
    return HttpResult(error="other", message=str(reason))


def llama_build() -> LlamaBuild | None:
    """The llama-cpp-python in this environment, without importing it (that loads the library)."""
    from installer.accel import installed_llama_version, read_stamp

    version = installed_llama_version()
    if version is None:
        return None
    stamp = read_stamp()
    accel = stamp.get("accel") if stamp.get("version") == version else None
    return LlamaBuild(version, accel)

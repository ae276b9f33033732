"""Apple Silicon telemetry from ``ioreg -r -d 1 -w 0 -c IOAccelerator -a`` (a plist, no sudo).

The GPU shares the machine's memory, so ``memory_total`` is the system's RAM and ``memory_used`` is
the accelerator's "In use system memory". Temperature and power need ``powermetrics`` (root), so
they stay ``None``.
"""

from __future__ import annotations

import plistlib
import shutil
import subprocess
from collections.abc import Mapping

from worker.gpu.errors import ProbeUnavailable
from worker.gpu.reading import GpuReading, to_float, to_int

IOREG_ARGS = ("-r", "-d", "1", "-w", "0", "-c", "IOAccelerator", "-a")
TIMEOUT_S = 10.0


def parse_ioreg(data: bytes, memory_total: int | None) -> list[GpuReading]:
    """The plist ``ioreg -a`` prints → one reading per accelerator that has statistics."""
    try:
        entries = plistlib.loads(data)
    except Exception:  # InvalidFileException, ExpatError …: output we cannot read
        return []
    if isinstance(entries, Mapping):
        entries = [entries]
    if not isinstance(entries, list):
        return []
    readings = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        stats = entry.get("PerformanceStatistics")
        if not isinstance(stats, Mapping):
            continue
        name = entry.get("model") or entry.get("IOClass") or "Apple GPU"
        if isinstance(name, bytes):
            name = name.rstrip(b"\x00").decode("utf-8", "replace")
        cores = to_int(entry.get("gpu-core-count"))
        label = f"{name} ({cores}-core GPU)" if cores else str(name)
        index = len(readings)
        readings.append(
            GpuReading(
                index=index,
                name=label,
                utilization=to_float(stats.get("Device Utilization %")),
                memory_used=to_int(stats.get("In use system memory")),
                memory_total=memory_total,
                source="ioreg",
            )
        )
    return readings


def _system_memory() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        return None


class IoregProbe:
    name = "ioreg"

    def __init__(self, executable: str = "ioreg", timeout_s: float = TIMEOUT_S) -> None:
        self._executable = executable
        self._timeout_s = timeout_s
        self._path: str | None = None
        self._memory_total: int | None = None

    def open(self) -> None:
        self._path = shutil.which(self._executable)
        if self._path is None:
            raise ProbeUnavailable(f"{self._executable} is not on PATH")
        self._memory_total = _system_memory()
        if not self.read():
            raise ProbeUnavailable("ioreg shows no accelerator statistics")

    def close(self) -> None:
        self._path = None

    def read(self) -> list[GpuReading]:
        if self._path is None:
            raise ProbeUnavailable("the ioreg probe is not open")
        try:
            result = subprocess.run(
                [self._path, *IOREG_ARGS],
                capture_output=True,
                timeout=self._timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProbeUnavailable(f"ioreg failed: {exc}") from None
        if result.returncode != 0:
            raise ProbeUnavailable(f"ioreg exited {result.returncode}")
        return parse_ioreg(result.stdout, self._memory_total)

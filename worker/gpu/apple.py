"""Apple Silicon telemetry from ``ioreg -r -d 1 -w 0 -c IOAccelerator -a`` (a plist, no sudo).

The GPU shares the machine's memory, so ``memory_total`` is the system's RAM and ``memory_used`` is
the accelerator's "In use system memory". Temperature and power need ``powermetrics`` (root), so
they stay ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping

from worker.gpu.command_probe import TIMEOUT_S, CommandProbe
from worker.gpu.reading import GpuReading, to_float, to_int

IOREG_ARGS = ("-r", "-d", "1", "-w", "0", "-c", "IOAccelerator", "-a")


def parse_ioreg(data: bytes, memory_total: int | None) -> list[GpuReading]:
    """The plist ``ioreg -a`` prints → one reading per accelerator that has statistics."""
    try:
        import plistlib  # only on macOS; its XML parser is not loaded elsewhere

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


class IoregProbe(CommandProbe):
    name = "ioreg"
    empty_message = "shows no accelerator statistics"

    def __init__(self, executable: str = "ioreg", timeout_s: float = TIMEOUT_S) -> None:
        super().__init__(executable, timeout_s)
        self._memory_total: int | None = None

    def _prepare(self) -> None:
        self._memory_total = _system_memory()

    def _read(self) -> list[GpuReading]:
        output = self._run(IOREG_ARGS, text=False)
        assert isinstance(output, bytes)
        return parse_ioreg(output, self._memory_total)

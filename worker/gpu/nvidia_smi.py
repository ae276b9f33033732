"""NVIDIA telemetry from the ``nvidia-smi`` CSV queries, for hosts where NVML cannot be loaded
from Python (an unusual driver layout, a stripped container) but the tool works.

Fields that the card does not report come back as ``[N/A]`` or ``[Not Supported]``; they become
``None``. The parsers are pure functions over the tool's text so they are tested without a GPU.
"""

from __future__ import annotations

import csv
import io

from worker.gpu.command_probe import TIMEOUT_S, CommandProbe
from worker.gpu.errors import ProbeUnavailable
from worker.gpu.reading import MIB, GpuProcess, GpuReading, to_float, to_int

GPU_FIELDS = (
    "index",
    "uuid",
    "name",
    "utilization.gpu",
    "memory.total",
    "memory.used",
    "temperature.gpu",
    "power.draw",
)
APP_FIELDS = ("gpu_uuid", "pid", "process_name", "used_memory")


def _rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in row]
        for row in csv.reader(io.StringIO(text))
        if row and any(cell.strip() for cell in row)
    ]


def _mib(value: str) -> int | None:
    number = to_float(value)
    return None if number is None else int(number * MIB)


def parse_apps_csv(text: str) -> dict[str, list[GpuProcess]]:
    """``--query-compute-apps=gpu_uuid,pid,process_name,used_memory`` → processes by GPU uuid."""
    by_gpu: dict[str, list[GpuProcess]] = {}
    for row in _rows(text):
        if len(row) < len(APP_FIELDS):
            continue
        uuid, pid, name, used = row[: len(APP_FIELDS)]
        pid_value = to_int(pid)
        if pid_value is None:
            continue
        by_gpu.setdefault(uuid, []).append(
            GpuProcess(pid=pid_value, memory_used=_mib(used), name=name or None)
        )
    return by_gpu


def parse_gpu_csv(
    text: str, processes: dict[str, list[GpuProcess]] | None = None
) -> list[GpuReading]:
    """``--query-gpu=<GPU_FIELDS> --format=csv,noheader,nounits`` → one reading per row."""
    readings = []
    for position, row in enumerate(_rows(text)):
        if len(row) < len(GPU_FIELDS):
            continue  # a truncated line (the tool killed mid-write) is skipped, not guessed at
        index, uuid, name, util, total, used, temp, power = row[: len(GPU_FIELDS)]
        index_value = to_int(index)
        index_value = position if index_value is None else index_value
        readings.append(
            GpuReading(
                index=index_value,
                name=name or f"GPU {index_value}",
                uuid=uuid if uuid and not uuid.startswith("[") else None,
                utilization=to_float(util),
                memory_used=_mib(used),
                memory_total=_mib(total),
                temperature=to_float(temp),
                power_w=to_float(power),
                processes=tuple((processes or {}).get(uuid, ())),
                source="nvidia-smi",
            )
        )
    return readings


class NvidiaSmiProbe(CommandProbe):
    """Runs ``nvidia-smi`` twice per sample (devices, then compute apps)."""

    name = "nvidia-smi"

    def __init__(self, executable: str = "nvidia-smi", timeout_s: float = TIMEOUT_S) -> None:
        super().__init__(executable, timeout_s)

    def _read(self) -> list[GpuReading]:
        devices = str(
            self._run([f"--query-gpu={','.join(GPU_FIELDS)}", "--format=csv,noheader,nounits"])
        )
        try:
            apps = parse_apps_csv(
                str(
                    self._run(
                        [
                            f"--query-compute-apps={','.join(APP_FIELDS)}",
                            "--format=csv,noheader,nounits",
                        ]
                    )
                )
            )
        except ProbeUnavailable:
            apps = {}  # the device list is still worth having without per-process memory
        return parse_gpu_csv(devices, apps)

"""NVIDIA telemetry from the ``nvidia-smi`` CSV queries, for hosts where NVML cannot be loaded
from Python (an unusual driver layout, a stripped container) but the tool works.

Fields that the card does not report come back as ``[N/A]`` or ``[Not Supported]``; they become
``None``. The parsers are pure functions over the tool's text so they are tested without a GPU.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Sequence

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
TIMEOUT_S = 10.0


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


class NvidiaSmiProbe:
    """Runs ``nvidia-smi`` twice per sample (devices, then compute apps)."""

    name = "nvidia-smi"

    def __init__(self, executable: str = "nvidia-smi", timeout_s: float = TIMEOUT_S) -> None:
        self._executable = executable
        self._timeout_s = timeout_s
        self._path: str | None = None

    def open(self) -> None:
        self._path = shutil.which(self._executable)
        if self._path is None:
            raise ProbeUnavailable(f"{self._executable} is not on PATH")
        if not self.read():
            raise ProbeUnavailable("nvidia-smi lists no GPU")

    def close(self) -> None:
        self._path = None

    def read(self) -> list[GpuReading]:
        if self._path is None:
            raise ProbeUnavailable("the nvidia-smi probe is not open")
        devices = self._run(
            [f"--query-gpu={','.join(GPU_FIELDS)}", "--format=csv,noheader,nounits"]
        )
        try:
            apps = parse_apps_csv(
                self._run(
                    [
                        f"--query-compute-apps={','.join(APP_FIELDS)}",
                        "--format=csv,noheader,nounits",
                    ]
                )
            )
        except ProbeUnavailable:
            apps = {}  # the device list is still worth having without per-process memory
        return parse_gpu_csv(devices, apps)

    def _run(self, args: Sequence[str]) -> str:
        assert self._path is not None
        try:
            result = subprocess.run(
                [self._path, *args],
                capture_output=True,
                text=True,
                timeout=self._timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProbeUnavailable(f"nvidia-smi failed: {exc}") from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise ProbeUnavailable(
                f"nvidia-smi exited {result.returncode}: {detail[0] if detail else 'no output'}"
            )
        return result.stdout

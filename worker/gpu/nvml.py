"""NVIDIA telemetry through NVML (the ``pynvml`` module of ``nvidia-ml-py``).

Each query is isolated: an ``NVMLError`` (NotSupported on a passively cooled card, NoPermission in a
container, GpuIsLost …) turns that one value into ``None`` and the rest of the reading survives —
the gpustat/nvitop pattern. Memory uses the v2 API (``used`` excludes the driver's reserved memory,
matching nvidia-smi) and falls back to v1 on drivers without it.

The library object is injectable so the probe can be tested against a fake on machines without a
GPU; in production it is the real ``pynvml`` module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from worker.gpu.errors import ProbeUnavailable
from worker.gpu.reading import GpuProcess, GpuReading

log = logging.getLogger(__name__)

# NVML reports "not available" process memory as the largest unsigned long long.
_NOT_AVAILABLE = (1 << 64) - 1


def _nvml_library_present() -> bool:
    """Whether the NVIDIA driver's NVML library can be loaded at all: on a machine without it,
    ``pynvml`` is not imported (it would only fail at ``nvmlInit``, after costing memory)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return True  # pynvml knows where to look on Windows; nothing to save elsewhere
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def _load_pynvml() -> Any:
    if not _nvml_library_present():
        raise ProbeUnavailable("NVML is not available: libnvidia-ml.so.1 is not installed")
    try:
        import pynvml
    except ImportError as exc:  # the dependency is declared; a broken venv still must not crash
        raise ProbeUnavailable(f"nvidia-ml-py is not importable: {exc}") from None
    return pynvml


def _process_name(pid: int) -> str | None:
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:  # gone, another namespace (container), or no permission: name unknown
        return None


class NvmlProbe:
    """Every NVIDIA GPU through NVML: ``open`` once, ``read`` per sample, ``close`` at the end."""

    name = "nvml"

    def __init__(
        self,
        lib: Any | None = None,
        process_name: Callable[[int], str | None] = _process_name,
    ) -> None:
        self._lib = lib
        self._process_name = process_name
        self._open = False

    def open(self) -> None:
        lib = self._lib if self._lib is not None else _load_pynvml()
        self._lib = lib
        try:
            lib.nvmlInit()
        except Exception as exc:  # LibraryNotFound / DriverNotLoaded: no NVIDIA GPU usable here
            raise ProbeUnavailable(f"NVML is not available: {exc}") from None
        self._open = True
        count = self._query(lib.nvmlDeviceGetCount)
        if not count:
            self.close()
            raise ProbeUnavailable("NVML found no GPU")

    def close(self) -> None:
        if self._open:
            self._open = False
            self._query(self._lib.nvmlShutdown)

    def read(self) -> list[GpuReading]:
        if not self._open:
            raise ProbeUnavailable("the NVML probe is not open")
        lib = self._lib
        count = self._query(lib.nvmlDeviceGetCount)
        if count is None:
            raise ProbeUnavailable("NVML stopped answering")
        readings = []
        for index in range(int(count)):
            handle = self._query(lib.nvmlDeviceGetHandleByIndex, index)
            if handle is None:
                readings.append(GpuReading(index=index, name=f"GPU {index}", source=self.name))
                continue
            readings.append(self._read_device(index, handle))
        return readings

    # -- one device -----------------------------------------------------------------------------
    def _read_device(self, index: int, handle: Any) -> GpuReading:
        lib = self._lib
        utilization = self._query(lib.nvmlDeviceGetUtilizationRates, handle)
        temperature = self._query(
            lib.nvmlDeviceGetTemperature, handle, getattr(lib, "NVML_TEMPERATURE_GPU", 0)
        )
        power_mw = self._query(lib.nvmlDeviceGetPowerUsage, handle)
        used, total = self._memory(handle)
        return GpuReading(
            index=index,
            name=_text(self._query(lib.nvmlDeviceGetName, handle)) or f"GPU {index}",
            uuid=_text(self._query(lib.nvmlDeviceGetUUID, handle)),
            utilization=float(utilization.gpu) if utilization is not None else None,
            memory_used=used,
            memory_total=total,
            temperature=float(temperature) if temperature is not None else None,
            power_w=round(power_mw / 1000.0, 3) if power_mw is not None else None,
            processes=self._processes(handle),
            source=self.name,
        )

    def _memory(self, handle: Any) -> tuple[int | None, int | None]:
        lib = self._lib
        version = getattr(lib, "nvmlMemory_v2", None)
        info = None
        if version is not None:
            info = self._query(lib.nvmlDeviceGetMemoryInfo, handle, version=version)
        if info is None:
            info = self._query(lib.nvmlDeviceGetMemoryInfo, handle)
        if info is None:
            return None, None
        return _int_or_none(getattr(info, "used", None)), _int_or_none(getattr(info, "total", None))

    def _processes(self, handle: Any) -> tuple[GpuProcess, ...]:
        lib = self._lib
        by_pid: dict[int, GpuProcess] = {}
        for getter in (
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses",
        ):
            function = getattr(lib, getter, None)
            found = self._query(function, handle) if function is not None else None
            for item in found or ():
                pid = _int_or_none(getattr(item, "pid", None))
                if pid is None or pid in by_pid:
                    continue
                memory = _int_or_none(getattr(item, "usedGpuMemory", None))
                if memory == _NOT_AVAILABLE:
                    memory = None
                by_pid[pid] = GpuProcess(pid=pid, memory_used=memory, name=self._process_name(pid))
        return tuple(by_pid[pid] for pid in sorted(by_pid))

    def _query(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One NVML call; any failure is that value being unknown, never an exception."""
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            log.debug("NVML %s failed: %s", getattr(function, "__name__", function), exc)
            return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

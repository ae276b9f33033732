"""A stand-in for the ``pynvml`` module: CI has no NVIDIA GPU or driver, so the NVML probe is
tested against this object. It raises the real ``pynvml.NVMLError`` subclasses, and its numbers are
the ones measured on an H100, so the probe sees what the driver really returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

MIB = 1024 * 1024
NOT_AVAILABLE = (1 << 64) - 1


@dataclass
class FakeDevice:
    name: Any = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-5f0c0a4e-1b2c-4d5e-8f90-123456789abc"
    util: int | None = 37
    total: int = 81559 * MIB
    used_v2: int = 2574 * MIB
    reserved: int = 480 * MIB
    temperature: int | None = 37
    power_mw: int | None = 80108
    compute: list[tuple[int, int]] = field(default_factory=lambda: [(399, 2566 * MIB)])
    graphics: list[tuple[int, int]] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)  # NVML calls that raise NotSupported


def _error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


class FakeNvml:
    """Just the NVML calls the probe makes, with the real signatures and error classes."""

    NVMLError = pynvml.NVMLError
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    nvmlMemory_v2 = pynvml.nvmlMemory_v2

    def __init__(
        self,
        devices: list[FakeDevice],
        *,
        init_error: int | None = None,
        has_memory_v2: bool = True,
    ) -> None:
        self.devices = devices
        self.init_error = init_error
        self.has_memory_v2 = has_memory_v2
        self.initialised = 0
        self.calls: list[str] = []

    def _device(self, handle: int, call: str) -> FakeDevice:
        self.calls.append(call)
        if self.initialised <= 0:
            raise _error(pynvml.NVML_ERROR_UNINITIALIZED)
        device = self.devices[handle]
        if call in device.broken:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return device

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise _error(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        if self.initialised <= 0:
            raise _error(pynvml.NVML_ERROR_UNINITIALIZED)
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        if self.initialised <= 0:
            raise _error(pynvml.NVML_ERROR_UNINITIALIZED)
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._device(index, "handle")
        return index

    def nvmlDeviceGetName(self, handle: int) -> Any:
        return self._device(handle, "name").name

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self._device(handle, "uuid").uuid

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        device = self._device(handle, "util")
        return SimpleNamespace(gpu=device.util, memory=3)

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: int | None = None) -> SimpleNamespace:
        device = self._device(handle, "memory_v2" if version else "memory_v1")
        if version:
            if not self.has_memory_v2:
                raise _error(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
            free = device.total - device.used_v2 - device.reserved
            return SimpleNamespace(
                total=device.total, reserved=device.reserved, used=device.used_v2, free=free
            )
        used = device.used_v2 + device.reserved  # v1 counts reserved memory as used
        return SimpleNamespace(total=device.total, used=used, free=device.total - used)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int | None:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._device(handle, "temperature").temperature

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int | None:
        return self._device(handle, "power").power_mw

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        device = self._device(handle, "compute")
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in device.compute]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        device = self._device(handle, "graphics")
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in device.graphics]

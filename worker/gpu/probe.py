"""Picks the first telemetry source that works on this machine, and the one-shot ``read_gpus``.

Order: NVML, then ``nvidia-smi`` (NVIDIA without a loadable NVML), ``amd-smi``, ``rocm-smi``, and on
macOS ``ioreg``. A machine with none of them has no GPU telemetry: an empty list, never an error.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence
from typing import Protocol

from worker.gpu.amd import AmdSmiProbe, RocmSmiProbe
from worker.gpu.apple import IoregProbe
from worker.gpu.errors import ProbeUnavailable
from worker.gpu.nvidia_smi import NvidiaSmiProbe
from worker.gpu.nvml import NvmlProbe
from worker.gpu.reading import GpuReading

log = logging.getLogger(__name__)


class GpuProbe(Protocol):
    """A telemetry source. ``open``/``read`` raise :class:`ProbeUnavailable` when it cannot work."""

    name: str

    def open(self) -> None: ...

    def read(self) -> list[GpuReading]: ...

    def close(self) -> None: ...


def candidate_probes(platform: str = sys.platform) -> list[GpuProbe]:
    if platform == "darwin":
        return [IoregProbe()]
    return [NvmlProbe(), NvidiaSmiProbe(), AmdSmiProbe(), RocmSmiProbe()]


def open_first(probes: Sequence[GpuProbe]) -> GpuProbe | None:
    """The first probe that opens; the reasons the others did not are logged at debug level."""
    for probe in probes:
        try:
            probe.open()
        except ProbeUnavailable as exc:
            log.debug("GPU source %s unavailable: %s", probe.name, exc)
            continue
        except Exception as exc:  # a source's own bug must not stop the worker starting
            log.warning("GPU source %s failed unexpectedly: %s", probe.name, exc)
            continue
        return probe
    return None


def read_gpus(probes: Sequence[GpuProbe] | None = None) -> list[GpuReading]:
    """Every GPU on this machine, read once. Never raises; ``[]`` when there is none."""
    probe = open_first(candidate_probes() if probes is None else probes)
    if probe is None:
        return []
    try:
        return probe.read()
    except Exception as exc:
        log.debug("GPU source %s failed while reading: %s", probe.name, exc)
        return []
    finally:
        with contextlib.suppress(Exception):
            probe.close()

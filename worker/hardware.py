"""What this machine offers a model: GPU memory, RAM and free disk for the modelstore.

``MachineProfile`` is plain data so :mod:`worker.fit` can judge it without touching hardware (tests
build profiles by hand); :meth:`MachineProfile.detect` is the one place that reads the real machine.
"""

from __future__ import annotations

import logging
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuMemory:
    """One GPU as the fit verdict needs it."""

    name: str
    memory_total: int | None


@dataclass(frozen=True)
class MachineProfile:
    """GPUs, memory and disk, in bytes."""

    gpus: tuple[GpuMemory, ...] = field(default=())
    ram_total: int = 0
    disk_free: int | None = None
    unified_memory: bool = False
    """Apple silicon: the GPU uses system RAM, so RAM is the GPU memory."""

    @property
    def vram_total(self) -> int:
        return sum(g.memory_total or 0 for g in self.gpus)

    @classmethod
    def detect(cls, models_dir: Path) -> MachineProfile:
        """Read this machine. Blocking (NVML, psutil): call it off the event loop in a server."""
        import psutil

        return cls(
            gpus=tuple(GpuMemory(g.name, g.memory_total) for g in _read_gpus()),
            ram_total=int(psutil.virtual_memory().total),
            disk_free=free_disk(models_dir),
            unified_memory=sys.platform == "darwin" and platform.machine() == "arm64",
        )


def _read_gpus() -> list:
    """``worker.gpu.read_gpus()``; no GPU when the telemetry package is missing or fails."""
    try:
        from worker.gpu import read_gpus
    except ImportError:
        return []
    try:
        return list(read_gpus())
    except Exception as exc:  # read_gpus promises not to raise; a bug there must not hide the rest
        log.debug("GPU read failed: %s", exc)
        return []


def free_disk(path: Path) -> int | None:
    """Free bytes on the filesystem that holds ``path`` (or would, once created)."""
    probe = Path(path).absolute()
    while not probe.exists():
        if probe.parent == probe:
            return None
        probe = probe.parent
    try:
        return int(shutil.disk_usage(probe).free)
    except OSError:
        return None


def physical_cores() -> int:
    """Physical CPU cores: decode is memory-bound and hyper-threads only add contention."""
    import os

    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except Exception:  # pragma: no cover - psutil is a dependency; this is belt and braces
        cores = None
    return max(1, cores or os.cpu_count() or 1)

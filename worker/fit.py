"""Will a catalogue variant run on this machine? A pure verdict over a :class:`MachineProfile`.

Verdicts, best first:

* ``gpu`` — the whole model and its working memory fit in GPU memory;
* ``partial`` — it fits GPU + RAM together (some layers offloaded to the CPU: slower);
* ``cpu`` — no usable GPU, but it fits in RAM;
* ``no`` — too big for this machine's memory, or not enough free disk to download it.

The memory a model needs is the catalogue's ``min_vram_bytes`` when given, else an estimate: the
file size plus 20 % (KV cache and compute buffers at a moderate context) plus 512 MiB of runtime
overhead. Only a share of RAM counts (80 %; the OS and the worker need the rest), and on unified
memory (Apple silicon) only 75 % of RAM is usable as GPU memory (macOS's default limit).
Capacity, not current free memory, is judged: the verdict must not flicker with the load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from worker.hardware import MachineProfile
from worker.units import format_bytes

MIB = 1024 * 1024
GIB = 1024 * MIB
OVERHEAD_BYTES = 512 * MIB
WORKING_MEMORY_FACTOR = 1.2
RAM_SHARE = 0.8
UNIFIED_GPU_SHARE = 0.75


class FitKind(str, Enum):
    GPU = "gpu"
    PARTIAL = "partial"
    CPU = "cpu"
    NO = "no"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Fit:
    """A verdict and the reason a person reads next to it."""

    verdict: FitKind
    reason: str
    need_bytes: int | None = None

    @property
    def value(self) -> str:
        return self.verdict.value


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def memory_needed(size_bytes: int, min_vram_bytes: int | None = None) -> int:
    """Bytes of (GPU or system) memory a model of this file size needs to run."""
    if min_vram_bytes:
        return int(min_vram_bytes)
    return int(size_bytes * WORKING_MEMORY_FACTOR) + OVERHEAD_BYTES


def fit_verdict(profile: MachineProfile, variant: Any, *, installed: bool = False) -> Fit:
    """Judge ``variant`` (a CatalogueVariant or its dict) on ``profile``.

    ``installed`` skips the disk check: a model already on disk needs no download space.
    """
    size = _get(variant, "size_bytes")
    if not isinstance(size, int) or size <= 0:
        return Fit(FitKind.UNKNOWN, "the catalogue gives no size for this model")
    need = memory_needed(size, _get(variant, "min_vram_bytes"))

    if not installed and profile.disk_free is not None and size > profile.disk_free:
        return Fit(
            FitKind.NO,
            f"needs {_size(size)} of disk, {_size(profile.disk_free)} free",
            need,
        )

    ram = int(profile.ram_total * RAM_SHARE)
    if profile.unified_memory:
        gpu = int(profile.ram_total * UNIFIED_GPU_SHARE)
        if need <= gpu:
            return Fit(FitKind.GPU, f"needs {_size(need)} of {_size(gpu)} GPU memory", need)
        return Fit(FitKind.NO, f"needs {_size(need)} of memory, {_size(gpu)} usable", need)

    vram = profile.vram_total
    if vram > 0 and need <= vram:
        return Fit(FitKind.GPU, f"needs {_size(need)} of {_size(vram)} VRAM", need)
    if vram > 0 and need <= vram + ram:
        return Fit(
            FitKind.PARTIAL,
            f"needs {_size(need)}: {_size(vram)} VRAM + the rest in RAM (slower)",
            need,
        )
    if vram == 0 and need <= ram:
        return Fit(FitKind.CPU, f"no GPU; needs {_size(need)} of {_size(ram)} RAM", need)
    total = vram + ram
    return Fit(
        FitKind.NO,
        f"needs {_size(need)} of memory, {_size(total)} usable (GPU + RAM)",
        need,
    )


def _size(value: int | None) -> str:
    return format_bytes(value, unknown="?")

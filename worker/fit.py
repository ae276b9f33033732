"""Will a catalogue variant run on this machine? A pure verdict over a :class:`MachineProfile`.

Verdicts, best first:

* ``gpu`` — the whole model and its working memory fit in GPU memory;
* ``partial`` — it fits GPU + RAM together (some layers offloaded to the CPU: slower);
* ``cpu`` — no usable GPU, but it fits in RAM;
* ``no`` — too big for this machine's memory, or not enough free disk to download it.

The memory a model needs is the catalogue's ``min_vram_bytes`` when given, else an estimate:
the weights (the file size), the KV cache of one request at the default context
(``min(context_length, builtin.max_context)`` tokens, f16 unless ``builtin.kv_type`` says q8_0),
and 512 MiB of runtime overhead and compute buffers. The KV bytes per token are estimated from the
parameter count (48 KiB × √billions: 128 KiB for an 8B, 400 KiB for a 70B — grouped-query
attention models of today; the header of an installed GGUF gives the exact figure to the built-in
backend when it loads). Only a share of RAM counts (80 %; the OS and the worker need the rest),
and on unified memory (Apple silicon) only 75 % of RAM is usable as GPU memory (macOS's default
limit). Capacity, not current free memory, is judged: the verdict must not flicker with the load.
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
RAM_SHARE = 0.8
UNIFIED_GPU_SHARE = 0.75
DEFAULT_CONTEXT = 8192  # builtin.max_context's default
KV_BYTES_PER_TOKEN_PER_SQRT_B = 48 * 1024  # f16
PARAMS_PER_BYTE = 1.7  # a Q4_K_M file: ~4.8 bits per parameter
_KV_FACTOR = {"f16": 1.0, "q8_0": 34 / 64}


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


def parse_parameters(text: Any) -> float | None:
    """Billions of parameters from a label like ``"27B"``, ``"270M"`` or ``"8x7B"``."""
    if not isinstance(text, str):
        return None
    label = text.strip().upper().replace(",", ".")
    experts = 1.0
    if "X" in label:
        head, _, label = label.partition("X")
        try:
            experts = float(head)
        except ValueError:
            return None
    scale = {"B": 1.0, "M": 1e-3, "K": 1e-6, "T": 1e3}.get(label[-1:])
    if scale is None:
        return None
    try:
        return experts * float(label[:-1]) * scale
    except ValueError:
        return None


def kv_bytes_estimate(
    size_bytes: int, parameters: str | None, tokens: int, kv_type: str = "f16"
) -> int:
    """KV cache bytes for ``tokens`` of context of a model known by its size and label."""
    billions = parse_parameters(parameters) or size_bytes * PARAMS_PER_BYTE / 1e9
    per_token = KV_BYTES_PER_TOKEN_PER_SQRT_B * billions**0.5 * _KV_FACTOR.get(kv_type, 1.0)
    return int(per_token * tokens)


def memory_needed(
    size_bytes: int,
    min_vram_bytes: int | None = None,
    *,
    context_length: int | None = None,
    parameters: str | None = None,
    max_context: int = DEFAULT_CONTEXT,
    kv_type: str = "f16",
) -> int:
    """Bytes of (GPU or system) memory a model needs to serve one request at the default
    context: weights + its KV cache + runtime overhead."""
    if min_vram_bytes:
        return int(min_vram_bytes)
    tokens = min(context_length or max_context, max_context)
    return size_bytes + kv_bytes_estimate(size_bytes, parameters, tokens, kv_type) + OVERHEAD_BYTES


def fit_verdict(
    profile: MachineProfile,
    variant: Any,
    *,
    installed: bool = False,
    max_context: int = DEFAULT_CONTEXT,
    kv_type: str = "f16",
) -> Fit:
    """Judge ``variant`` (a CatalogueVariant or its dict) on ``profile``.

    ``installed`` skips the disk check: a model already on disk needs no download space.
    ``max_context`` and ``kv_type`` are the worker's settings (``builtin.max_context``,
    ``builtin.kv_type``): the context one request gets, and what its KV cache costs.
    """
    size = _get(variant, "size_bytes")
    if not isinstance(size, int) or size <= 0:
        return Fit(FitKind.UNKNOWN, "the catalogue gives no size for this model")
    context = _get(variant, "context_length")
    need = memory_needed(
        size,
        _get(variant, "min_vram_bytes"),
        context_length=context if isinstance(context, int) else None,
        parameters=_get(variant, "parameters"),
        max_context=max_context,
        kv_type=kv_type,
    )

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

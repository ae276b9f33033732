"""One GPU's telemetry at one moment, whichever source read it.

Units are fixed here so every consumer (status document, TUI, fit verdicts) agrees: memory in bytes,
utilisation in percent (0-100), temperature in °C, power in watts. Every value that a source could
not read is ``None``; a reading is never invented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuProcess:
    """A process holding GPU memory. ``memory_used`` is None where the driver hides it (WDDM)."""

    pid: int
    memory_used: int | None = None
    name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "name": self.name, "memory_used": self.memory_used}


@dataclass(frozen=True)
class GpuReading:
    """A ``gpus`` entry of the status document (docs/status.md)."""

    index: int
    name: str
    uuid: str | None = None
    utilization: float | None = None
    memory_used: int | None = None
    memory_total: int | None = None
    temperature: float | None = None
    power_w: float | None = None
    processes: tuple[GpuProcess, ...] = ()
    source: str = "unknown"

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "utilization": self.utilization,
            "memory_used": self.memory_used,
            "memory_total": self.memory_total,
            "temperature": self.temperature,
            "power_w": self.power_w,
            "processes": [p.as_dict() for p in self.processes],
            "source": self.source,
        }


def to_float(value: Any) -> float | None:
    """A number from a tool's output, or None for anything that is not one (``[N/A]``, "")."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().rstrip("%").strip()
    try:
        return float(text)
    except ValueError:
        return None


def to_int(value: Any) -> int | None:
    number = to_float(value)
    return None if number is None else int(number)

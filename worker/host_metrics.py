"""CPU, memory and the worker process itself: what a CPU-only box shows instead of GPU cards.

psutil reads ``/proc`` (or the platform's equivalent) without blocking. CPU percentages are
measured between two calls, so the first reading of a new :class:`HostProbe` has none (``None``,
never an invented 0). A value the platform cannot give is ``None`` too.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostReading:
    """One reading of the machine and of this process. Memory in bytes, CPU in percent of the
    whole machine (0-100, the way ``top`` shows the system and ``htop`` the total)."""

    cpu_percent: float | None
    cpu_count: int | None
    load_1m: float | None
    memory_used: int | None
    memory_total: int | None
    process_rss: int | None
    process_cpu_percent: float | None
    """This process across all cores, scaled to the machine (100 = every core busy)."""
    process_threads: int | None
    pid: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpu_percent": self.cpu_percent,
            "cpu_count": self.cpu_count,
            "load_1m": self.load_1m,
            "memory_used": self.memory_used,
            "memory_total": self.memory_total,
            "process_rss": self.process_rss,
            "process_cpu_percent": self.process_cpu_percent,
            "process_threads": self.process_threads,
            "pid": self.pid,
        }


class HostProbe:
    """Reads :class:`HostReading`\\ s; keeps the psutil handles that CPU deltas need."""

    def __init__(self) -> None:
        self._psutil: Any = None
        self._process: Any = None
        self._primed = False
        try:
            import psutil

            self._psutil = psutil
            self._process = psutil.Process(os.getpid())
        except Exception as exc:  # psutil is a dependency; an exotic platform must not stop us
            log.debug("host metrics unavailable: %s", exc)

    def read(self) -> HostReading:
        psutil = self._psutil
        pid = os.getpid()
        if psutil is None:
            return HostReading(None, os.cpu_count(), _load(), None, None, None, None, None, pid)
        cpu_count = psutil.cpu_count() or os.cpu_count()
        cpu = process_cpu = None
        rss = threads = None
        memory_used = memory_total = None
        with contextlib.suppress(Exception):
            system = psutil.cpu_percent(interval=None)
            if self._primed:
                cpu = float(system)
        with contextlib.suppress(Exception):
            memory = psutil.virtual_memory()
            memory_total = int(memory.total)
            memory_used = int(memory.total - memory.available)
        with contextlib.suppress(Exception):
            with self._process.oneshot():
                own = self._process.cpu_percent(interval=None)
                rss = int(self._process.memory_info().rss)
                threads = int(self._process.num_threads())
            if self._primed and cpu_count:
                process_cpu = float(own) / cpu_count
        self._primed = True
        return HostReading(
            cpu_percent=cpu,
            cpu_count=cpu_count,
            load_1m=_load(),
            memory_used=memory_used,
            memory_total=memory_total,
            process_rss=rss,
            process_cpu_percent=process_cpu,
            process_threads=threads,
            pid=pid,
        )


def _load() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None

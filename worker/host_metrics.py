"""CPU, memory and the worker process itself: what a CPU-only box shows instead of GPU cards.

On Linux the numbers come straight from ``/proc`` (a few small reads, no extra module in an idle
worker's memory); elsewhere psutil reads the platform's equivalent. CPU percentages are measured
between two reads, so the first reading of a new :class:`HostProbe` has none (``None``, never an
invented 0). A value the platform cannot give is ``None`` too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
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


@dataclass(frozen=True)
class _Raw:
    """Cumulative counters of one read; percentages are differences of two of these."""

    cpu_busy_s: float | None
    cpu_total_s: float | None
    memory_used: int | None
    memory_total: int | None
    process_rss: int | None
    process_cpu_s: float | None
    process_threads: int | None
    wall_s: float


class HostProbe:
    """Reads :class:`HostReading`\\ s; keeps the previous counters that CPU percentages need."""

    def __init__(self) -> None:
        self._read_raw = _proc_reader() or _psutil_reader()
        self._last: _Raw | None = None
        self._cpu_count = os.cpu_count()

    def read(self) -> HostReading:
        pid = os.getpid()
        if self._read_raw is None:
            return HostReading(None, self._cpu_count, _load(), None, None, None, None, None, pid)
        raw = self._read_raw()
        cpu = process_cpu = None
        last, self._last = self._last, raw
        if last is not None:
            cpu = _share(raw.cpu_busy_s, last.cpu_busy_s, raw.cpu_total_s, last.cpu_total_s)
            if raw.process_cpu_s is not None and last.process_cpu_s is not None:
                wall = raw.wall_s - last.wall_s
                if wall > 0 and self._cpu_count:
                    used = max(0.0, raw.process_cpu_s - last.process_cpu_s)
                    process_cpu = min(100.0, 100.0 * used / wall / self._cpu_count)
        return HostReading(
            cpu_percent=cpu,
            cpu_count=self._cpu_count,
            load_1m=_load(),
            memory_used=raw.memory_used,
            memory_total=raw.memory_total,
            process_rss=raw.process_rss,
            process_cpu_percent=process_cpu,
            process_threads=raw.process_threads,
            pid=pid,
        )


def _share(
    busy: float | None, busy_before: float | None, total: float | None, total_before: float | None
) -> float | None:
    """Busy time over all time between two reads, in percent (0 when no time passed)."""
    if None in (busy, busy_before, total, total_before):
        return None
    assert busy is not None and busy_before is not None
    assert total is not None and total_before is not None
    elapsed = total - total_before
    if elapsed <= 0:
        return 0.0
    return min(100.0, max(0.0, 100.0 * (busy - busy_before) / elapsed))


# -- Linux: /proc ---------------------------------------------------------------------------------


def parse_proc_stat_cpu(text: str) -> tuple[float, float]:
    """(busy, total) clock ticks from ``/proc/stat``'s first line, counted as ``top`` does: idle
    and iowait are idle; guest time is already inside user and nice, so it is not added again."""
    fields = text.split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu":
        raise ValueError("no aggregate cpu line")
    ticks = [float(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    ticks += [0.0] * (8 - len(ticks))
    total = sum(ticks)
    return total - ticks[3] - ticks[4], total


def parse_meminfo(text: str) -> tuple[int, int]:
    """(used, total) bytes from ``/proc/meminfo``: used is what is not available, as ``free``'s
    "available" column counts it (page cache that can be dropped is not used)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("MemTotal", "MemAvailable", "MemFree"):
            values[name] = int(rest.split()[0]) * 1024
    total = values["MemTotal"]
    available = values.get("MemAvailable", values.get("MemFree", 0))
    return total - available, total


def parse_proc_self_stat(text: str) -> tuple[int, int, int]:
    """(utime ticks, stime ticks, threads) from ``/proc/<pid>/stat``. The command name may hold
    spaces and parentheses, so the fields are counted from its last ``)``."""
    after = text[text.rindex(")") + 2 :].split()
    return int(after[11]), int(after[12]), int(after[17])


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as handle:
        return handle.read()


def _proc_reader() -> Callable[[], _Raw] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        tick = float(os.sysconf("SC_CLK_TCK"))
        page = int(os.sysconf("SC_PAGE_SIZE"))
        parse_proc_stat_cpu(_read("/proc/stat"))
        parse_meminfo(_read("/proc/meminfo"))
        parse_proc_self_stat(_read("/proc/self/stat"))
    except (OSError, ValueError, KeyError, IndexError) as exc:
        log.debug("/proc is not readable here (%s); using psutil", exc)
        return None

    def read() -> _Raw:
        busy = total = rss = cpu_s = threads = used = mem_total = None
        with contextlib.suppress(OSError, ValueError, IndexError):
            busy_ticks, total_ticks = parse_proc_stat_cpu(_read("/proc/stat"))
            busy, total = busy_ticks / tick, total_ticks / tick
        with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
            used, mem_total = parse_meminfo(_read("/proc/meminfo"))
        with contextlib.suppress(OSError, ValueError, IndexError):
            utime, stime, threads = parse_proc_self_stat(_read("/proc/self/stat"))
            cpu_s = (utime + stime) / tick
        with contextlib.suppress(OSError, ValueError, IndexError):
            rss = int(_read("/proc/self/statm").split()[1]) * page
        return _Raw(busy, total, used, mem_total, rss, cpu_s, threads, time.monotonic())

    return read


# -- elsewhere: psutil ----------------------------------------------------------------------------


def _psutil_reader() -> Callable[[], _Raw] | None:
    try:
        import psutil

        process = psutil.Process(os.getpid())
    except Exception as exc:  # psutil is a dependency; an exotic platform must not stop us
        log.debug("host metrics unavailable: %s", exc)
        return None

    def read() -> _Raw:
        busy = total = rss = cpu_s = threads = used = mem_total = None
        with contextlib.suppress(Exception):
            times = psutil.cpu_times()
            total = float(sum(times))
            for name in ("guest", "guest_nice"):  # already inside user and nice on Linux
                total -= float(getattr(times, name, 0.0))
            busy = total - float(times.idle) - float(getattr(times, "iowait", 0.0))
        with contextlib.suppress(Exception):
            memory = psutil.virtual_memory()
            mem_total = int(memory.total)
            used = int(memory.total - memory.available)
        with contextlib.suppress(Exception), process.oneshot():
            own = process.cpu_times()
            cpu_s = float(own.user + own.system)
            rss = int(process.memory_info().rss)
            threads = int(process.num_threads())
        return _Raw(busy, total, used, mem_total, rss, cpu_s, threads, time.monotonic())

    return read


def _load() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None

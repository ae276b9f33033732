"""Periodic GPU sampling for the dashboard and the status document.

NVML calls and tool subprocesses block, so they run on one dedicated thread: a wedged driver stalls
only that thread (samples stop; the event loop keeps serving), and samples never pile up because the
next one starts only after the previous returned. Each sample is kept in a bounded history (for the
dashboard's sparklines) and published as a ``"gpu"`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from worker.events import EventBus
from worker.gpu.errors import ProbeUnavailable
from worker.gpu.probe import GpuProbe, candidate_probes, open_first
from worker.gpu.reading import GpuReading

log = logging.getLogger(__name__)

DEFAULT_HISTORY = 300  # 10 minutes at the default 2 s interval
REDETECT_S = 60.0  # how often a machine without a working source looks again


@dataclass(frozen=True)
class GpuSample:
    ts: float
    gpus: tuple[GpuReading, ...]

    def as_dict(self) -> dict[str, object]:
        return {"ts": self.ts, "gpus": [g.as_dict() for g in self.gpus]}


class GpuSampler:
    """Samples every ``interval_s`` on its own thread; readers use ``latest()``/``history()``."""

    def __init__(
        self,
        interval_s: float,
        events: EventBus | None = None,
        history: int = DEFAULT_HISTORY,
        probes: Callable[[], Sequence[GpuProbe]] = candidate_probes,
        redetect_s: float = REDETECT_S,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self._events = events
        self._history: deque[GpuSample] = deque(maxlen=max(1, history))
        self._probes = probes
        self._redetect_s = redetect_s
        self._probe: GpuProbe | None = None
        self._next_detect = 0.0
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._published_empty = False

    @property
    def source(self) -> str | None:
        """The name of the source in use (``nvml``, ``nvidia-smi`` …), None when none works."""
        return self._probe.name if self._probe else None

    def latest(self) -> list[GpuReading]:
        return list(self._history[-1].gpus) if self._history else []

    def history(self) -> list[GpuSample]:
        return list(self._history)

    async def start(self) -> None:
        if self._task is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pendra-gpu")
        self._task = asyncio.create_task(self._run(), name="gpu-sampler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        executor, self._executor = self._executor, None
        if executor is not None:
            # Close the probe on its own thread (NVML state is per process, but keep calls serial),
            # without waiting on a thread that a hung driver call may still hold.
            executor.submit(self._close_probe)
            executor.shutdown(wait=False, cancel_futures=False)

    async def sample_once(self) -> GpuSample:
        """Take one sample now (also what the loop does each tick)."""
        loop = asyncio.get_running_loop()
        if self._executor is None:
            readings = await asyncio.to_thread(self._read_blocking)
        else:
            readings = await loop.run_in_executor(self._executor, self._read_blocking)
        sample = GpuSample(time.time(), tuple(readings))
        self._history.append(sample)
        self._publish(sample)
        return sample

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.sample_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let telemetry end the loop
                log.warning("GPU sample failed: %s", exc)
            await asyncio.sleep(max(0.0, self.interval_s - (loop.time() - started)))

    def _publish(self, sample: GpuSample) -> None:
        if self._events is None:
            return
        if not sample.gpus:
            if self._published_empty:
                return  # a GPU-less machine does not need the same empty event every tick
            self._published_empty = True
        else:
            self._published_empty = False
        self._events.publish("gpu", gpus=[g.as_dict() for g in sample.gpus])

    # -- runs on the sampler thread -------------------------------------------------------------
    def _read_blocking(self) -> list[GpuReading]:
        if self._probe is None:
            now = time.monotonic()
            if now < self._next_detect:
                return []
            self._probe = open_first(self._probes())
            if self._probe is None:
                self._next_detect = now + self._redetect_s
                return []
            log.info("GPU telemetry from %s", self._probe.name)
        try:
            return self._probe.read()
        except ProbeUnavailable as exc:
            log.warning(
                "GPU source %s stopped working (%s); looking for another", self._probe.name, exc
            )
        except Exception as exc:
            log.warning("GPU source %s failed (%s); looking for another", self._probe.name, exc)
        self._close_probe()
        return []

    def _close_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            with contextlib.suppress(Exception):
                probe.close()

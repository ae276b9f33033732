"""The worker's recent past: one bounded series of samples the dashboard draws its plots from.

Every ``interval_s`` the :class:`MetricsHistory` takes one sample of what an operator watches —
the request counters and the token rate (read from the router, the one place rates are computed),
each GPU's utilisation and memory, the machine's CPU and memory and the worker process's own —
keeps the last ``window_s`` of them, and publishes each as a ``"metrics"`` event. Because the
history lives in the worker, a dashboard that attaches later (``pendra attach``) draws the last
minutes too, and a rate that fell to zero shows as zero: a sample is published whether or not
anything happened.

The event also carries the models each backend has loaded right now (slots, KV cache,
idle-unload countdown); those change with every request, so they ride along with the sample
instead of waiting for a ``backends`` event. They are not kept in the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from worker.events import EventBus

log = logging.getLogger(__name__)

INTERVAL_S = 2.0
WINDOW_S = 15 * 60.0
"""The dashboard plots show up to the last 15 minutes."""

COUNTERS = ("tokens_per_s", "in_flight", "served", "failed", "cancelled", "tokens_total")
GPU_FIELDS = ("index", "utilization", "memory_used", "memory_total")


def gpu_point(reading: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a GPU reading the history keeps (names and processes are in the status)."""
    return {name: reading.get(name) for name in GPU_FIELDS}


class MetricsHistory:
    """Samples on a timer; ``samples()`` is the bounded past, oldest first."""

    def __init__(
        self,
        *,
        counters: Callable[[], Mapping[str, Any]],
        gpus: Callable[[], list[dict[str, Any]]] = list,
        host: Callable[[], Mapping[str, Any] | None] = lambda: None,
        loaded: Callable[[], Mapping[str, list[Any]]] = dict,
        events: EventBus | None = None,
        interval_s: float = INTERVAL_S,
        window_s: float = WINDOW_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self.window_s = window_s
        self._counters = counters
        self._gpus = gpus
        self._host = host
        self._loaded = loaded
        self._events = events
        self._wall = wall
        self._samples: deque[dict[str, Any]] = deque(maxlen=max(1, round(window_s / interval_s)))
        self._task: asyncio.Task[None] | None = None

    # -- component -------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="metrics-history")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                self.sample_now()
            except Exception as exc:  # telemetry must never end the loop
                log.warning("metrics sample failed: %s", exc)
            await asyncio.sleep(max(0.0, self.interval_s - (loop.time() - started)))

    # -- sampling --------------------------------------------------------------------------------
    def sample_now(self) -> dict[str, Any]:
        """Take one sample, keep it, publish it with the loaded models; returns the sample."""
        counters = self._counters()
        sample: dict[str, Any] = {"ts": round(self._wall(), 3)}
        for name in COUNTERS:
            if name in counters:
                sample[name] = counters[name]
        sample["gpus"] = [gpu_point(reading) for reading in self._gpus()]
        host = self._host()
        if host is not None:
            sample["host"] = dict(host)
        self._samples.append(sample)
        if self._events is not None:
            self._events.publish("metrics", sample=sample, loaded=self._loaded_now())
        return sample

    def _loaded_now(self) -> dict[str, list[Any]]:
        try:
            return {name: list(models) for name, models in self._loaded().items()}
        except Exception as exc:  # a backend mid-reload must not cost the sample
            log.debug("loaded models unavailable for this sample: %s", exc)
            return {}

    # -- reading ---------------------------------------------------------------------------------
    def samples(self) -> list[dict[str, Any]]:
        return list(self._samples)

    def latest(self) -> dict[str, Any] | None:
        return self._samples[-1] if self._samples else None

    def as_dict(self) -> dict[str, Any]:
        """The ``GET /v1/history`` answer."""
        return {
            "interval_s": self.interval_s,
            "window_s": self.window_s,
            "samples": self.samples(),
        }


def loaded_models(backends: Any) -> dict[str, list[Any]]:
    """``{backend name: its "loaded" list}`` for the backends that report loaded models (the
    built-in one: id, memory, slots, KV cache, idle-unload countdown per model)."""
    found: dict[str, list[Any]] = {}
    for backend in list(backends):
        loaded = backend.describe().get("loaded")
        if isinstance(loaded, list):
            found[backend.kind] = loaded
    return found

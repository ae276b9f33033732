"""Which models are loaded: lazy load, LRU bound, idle unload.

At most ``max_loaded`` engines are loaded. A request for another model evicts the least recently
used *idle* one (no request leased, nothing queued); when every loaded model is busy, it waits for
one to become idle rather than over-committing memory. Loading happens in a thread, one at a time,
so the event loop keeps serving while a multi-GB model maps in. A reaper unloads models idle for
``idle_unload_s`` (0 disables it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from worker.modelstore import StoredModel

if TYPE_CHECKING:  # llama.cpp loads with the first model, not with the worker
    from worker.backends.pendra.engines import Engine

log = logging.getLogger(__name__)

Loader = Callable[[StoredModel], "Engine"]


class ModelPool:
    def __init__(self, loader: Loader, *, max_loaded: int, idle_unload_s: float) -> None:
        self._loader = loader
        self.max_loaded = max(1, max_loaded)
        self.idle_unload_s = idle_unload_s
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._identity: dict[str, tuple[str, int]] = {}  # id -> (path, mtime) it was loaded from
        self._stale: set[str] = set()
        self._model_locks: dict[str, asyncio.Lock] = {}
        self._capacity = asyncio.Lock()
        self._released = asyncio.Event()
        self._reaper: asyncio.Task[None] | None = None

    # -- queries --------------------------------------------------------------------------------
    def loaded(self) -> list[str]:
        return list(self._engines)

    def get(self, model_id: str) -> Engine | None:
        return self._engines.get(model_id)

    def busy(self, model_id: str) -> bool:
        """Whether requests are using the model (cancelled jobs still winding down don't count)."""
        engine = self._engines.get(model_id)
        return engine is not None and engine.leases > 0

    # -- leasing --------------------------------------------------------------------------------
    async def acquire(self, model: StoredModel) -> Engine:
        """The engine for ``model``, loading it if needed; pair with :meth:`release`."""
        self._ensure_reaper()
        lock = self._model_locks.setdefault(model.id, asyncio.Lock())
        async with lock:
            engine = self._engines.get(model.id)
            if engine is not None and self._identity.get(model.id) != _identity(model):
                # The file behind this id changed: load the new one once the old one is idle.
                self._stale.add(model.id)
                await self._wait_idle(model.id)
                await self._unload(model.id)
                engine = None
            if engine is None:
                async with self._capacity:
                    await self._make_room()
                    engine = await asyncio.to_thread(self._loader, model)
                    self._engines[model.id] = engine
                    self._identity[model.id] = _identity(model)
                log.info("loaded %s (%s engine)", model.id, engine.kind)
            self._engines.move_to_end(model.id)
            engine.leases += 1
            return engine

    def release(self, engine: Engine) -> None:
        engine.leases -= 1
        engine.last_used = time.monotonic()
        self._released.set()

    # -- unloading ------------------------------------------------------------------------------
    async def unload(self, model_id: str) -> bool:
        """Unload one model now if it is idle; returns whether it was loaded."""
        if model_id not in self._engines:
            return False
        await self._unload(model_id)
        return True

    def mark_stale(self, current: dict[str, StoredModel]) -> None:
        """After a store change: models removed or replaced unload as soon as they are idle."""
        for model_id in list(self._engines):
            model = current.get(model_id)
            if model is None or self._identity.get(model_id) != _identity(model):
                self._stale.add(model_id)
        self._ensure_reaper()
        self._released.set()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for model_id in list(self._engines):
            await self._unload(model_id)

    async def _unload(self, model_id: str) -> None:
        engine = self._engines.pop(model_id, None)
        self._identity.pop(model_id, None)
        self._stale.discard(model_id)
        if engine is not None:
            await asyncio.to_thread(engine.close)
            log.info("unloaded %s", model_id)

    async def _wait_idle(self, model_id: str) -> None:
        while (engine := self._engines.get(model_id)) is not None and not engine.idle:
            self._released.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._released.wait(), 0.25)

    async def _make_room(self) -> None:
        while len(self._engines) >= self.max_loaded:
            victim = next((mid for mid, e in self._engines.items() if e.idle), None)
            if victim is not None:
                log.info("unloading %s to make room (builtin.max_loaded_models)", victim)
                await self._unload(victim)
                continue
            self._released.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._released.wait(), 0.25)

    # -- reaper ---------------------------------------------------------------------------------
    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        idle = self.idle_unload_s
        interval = min(max(idle / 4, 0.05), 30.0) if idle > 0 else 1.0
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for model_id, engine in list(self._engines.items()):
                if not engine.idle:
                    continue
                expired = idle > 0 and now - engine.last_used >= idle
                if model_id in self._stale or expired:
                    lock = self._model_locks.setdefault(model_id, asyncio.Lock())
                    if lock.locked():
                        continue
                    async with lock:
                        if model_id in self._engines and self._engines[model_id].idle:
                            log.info(
                                "unloading %s (%s)", model_id, "stale" if not expired else "idle"
                            )
                            await self._unload(model_id)


def _identity(model: StoredModel) -> tuple[str, int]:
    return (str(model.path), model.mtime_ns)

"""Which models are loaded, where they fit, and who may use them: one runner per loaded model.

* **Lazy load, LRU bound.** A model loads on its first request. At most
  ``builtin.max_loaded_models`` runners exist; a new model evicts the least recently used *idle*
  one. When every loaded model is busy, the request waits up to ``builtin.load_wait_s`` for one
  to become idle, then fails with a 503 that says why (:class:`~worker.errors.ModelBusy`).
* **Memory.** Before loading, the pool measures free memory (RAM, or VRAM when layers are
  offloaded; capped by ``builtin.memory_limit``) and sizes the KV pool from it
  (:func:`~worker.backends.pendra.memory.plan_pool`). If the model does not fit, idle models are
  unloaded first; busy ones are waited for within the same bound.
* **Per-model admission.** Each model takes ``slots`` requests at once and queues up to
  ``builtin.max_queued`` more (in its runner, in arrival order); beyond that a request is refused
  at once with a 429 and a ``Retry-After`` estimated from recent request times. Limits are per
  model: a busy chat model never holds back an embedding request to another model.
* **CPU sharing.** The models serving requests at the same time split ``builtin.threads``
  between them (each runner is told its share between steps), so two busy models do not
  oversubscribe the cores.
* **Files that change.** A model whose file is deleted or replaced (new inode, size or mtime)
  unloads as soon as it is idle; a replaced one loads from the new file on its next request. A
  runner that dies is forgotten at once; the next request starts a new one.
* **Idle unload.** A reaper unloads models idle for ``builtin.idle_unload_s`` (0 disables it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from worker.backends.base import Task
from worker.backends.pendra.memory import (
    MemoryBudget,
    PoolPlan,
    context_cap,
    effective_kv_type,
    micro_batch,
    plan_pool,
)
from worker.backends.pendra.spec import LoadSpec
from worker.backends.pendra.supervisor import Runner
from worker.errors import InsufficientMemory, ModelBusy, ModelLoadError, Overloaded
from worker.modelstore import StoredModel
from worker.settings import Settings

log = logging.getLogger(__name__)

Starter = Callable[[str], Runner]
EMBED_SLOTS = 16


class ModelPool:
    def __init__(
        self,
        settings: Settings,
        starter: Starter,
        *,
        threads: int,
        batched: bool = True,
    ) -> None:
        self.settings = settings
        self._starter = starter
        self.threads = max(1, threads)
        self._batched = batched
        self.max_loaded = max(1, settings.max_loaded_models)
        self.idle_unload_s = settings.idle_unload_s
        self._runners: OrderedDict[str, Runner] = OrderedDict()
        self._plans: dict[str, PoolPlan] = {}
        self._identity: dict[str, tuple[Any, ...]] = {}
        self._stale: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: collections.Counter[str] = collections.Counter()
        self._capacity = asyncio.Lock()
        self._changed = asyncio.Event()
        self._durations: collections.deque[float] = collections.deque(maxlen=32)
        self._reaper: asyncio.Task[None] | None = None
        self._unloading: set[asyncio.Task[None]] = set()
        self._retiring: dict[Runner, PoolPlan | None] = {}
        """Runners told to stop whose process may still hold its memory: no request reaches
        them, but the memory plan counts them until they have exited."""
        self.crashes: collections.Counter[str] = collections.Counter()

    # -- queries --------------------------------------------------------------------------------
    def loaded(self) -> list[str]:
        return list(self._runners)

    def get(self, model_id: str) -> Runner | None:
        return self._runners.get(model_id)

    def busy(self, model_id: str) -> bool:
        runner = self._runners.get(model_id)
        return runner is not None and runner.leases > 0

    def describe(self) -> list[dict[str, Any]]:
        """Per loaded model: the status contract's ``loaded`` entries."""
        now = time.monotonic()
        out = []
        for model_id, runner in self._runners.items():
            plan = self._plans.get(model_id)
            spec = runner.spec
            stats = runner.stats
            in_use = int(stats.get("slots_in_use", 0))
            info = runner.info
            idle_in: float | None = None
            if runner.idle and runner.state == "ready" and self.idle_unload_s > 0:
                idle_in = round(max(0.0, self.idle_unload_s - (now - runner.last_used)), 1)
            out.append(
                {
                    "id": model_id,
                    "pid": runner.pid,
                    "state": "ready" if runner.state == "ready" else "loading",
                    "weights_bytes": runner.weights_bytes or (plan.weights_bytes if plan else 0),
                    "kv_type": spec.kv_type if spec else self.settings.kv_type,
                    "kv_tokens": int(info.get("kv_tokens") or (spec.kv_tokens if spec else 0)),
                    "kv_bytes": int(info.get("kv_bytes") or (plan.kv_bytes if plan else 0)),
                    "kv_tokens_in_use": int(stats.get("kv_tokens_in_use", 0)),
                    "kv_tokens_cached": int(stats.get("kv_tokens_cached", 0)),
                    "context_length": int(
                        info.get("context_length") or (spec.context_length if spec else 0)
                    ),
                    "slots": runner.slots or self.settings.parallel,
                    "slots_in_use": in_use,
                    "queued": max(0, runner.leases - in_use) + self._waiting.get(model_id, 0),
                    "idle_unload_in_s": idle_in,
                    "engine": info.get("engine"),
                    "threads": int(stats.get("threads") or runner.threads),
                    "threads_batch": int(stats.get("threads_batch") or runner.threads),
                    "isolation": runner.isolation,
                    "kv_limited_by": plan.limited_by if plan else None,
                    "crashes": self.crashes.get(model_id, 0),
                    "tokens_generated": int(stats.get("tokens_generated", 0)),
                }
            )
        return out

    # -- leasing --------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lease(self, model: StoredModel) -> AsyncIterator[Runner]:
        """The runner serving ``model`` (loaded if needed) for the length of one request."""
        runner = await self._acquire(model)
        started = time.monotonic()
        try:
            yield runner
        finally:
            self._release(runner, time.monotonic() - started)

    def _admit(self, model_id: str) -> None:
        runner = self._runners.get(model_id)
        slots = (runner.slots if runner is not None else None) or self.settings.parallel
        pending = (runner.leases if runner is not None else 0) + self._waiting[model_id]
        limit = slots + self.settings.max_queued
        if pending >= limit:
            retry = self._retry_after(pending - slots + 1, slots)
            raise Overloaded(
                f"the model {model_id!r} has {pending} requests running or waiting, its limit "
                f"({slots} at once + {self.settings.max_queued} queued)",
                retry_after_s=retry,
                hint=f"retry after {retry:.0f} s, or raise builtin.max_queued / "
                "builtin.parallel if the machine has room",
            )

    def _retry_after(self, ahead: int, slots: int) -> float:
        typical = _median(self._durations) if self._durations else 2.0
        return float(min(60, max(1, round(typical * ahead / max(1, slots)))))

    async def _acquire(self, model: StoredModel) -> Runner:
        self._ensure_reaper()
        self._admit(model.id)
        self._waiting[model.id] += 1
        try:
            lock = self._locks.setdefault(model.id, asyncio.Lock())
            async with lock:
                runner = self._runners.get(model.id)
                if runner is not None and not runner.alive:
                    self._forget(runner)
                    runner = None
                if runner is not None and self._identity.get(model.id) != model.identity:
                    # The file behind this id changed: load the new one once the old one is idle.
                    self._stale.add(model.id)
                    await self._wait_idle(runner, "its file changed and its requests are finishing")
                    await self._unload(model.id, "its file changed")
                    runner = None
                if runner is None:
                    runner = await self._load(model)
                self._runners.move_to_end(model.id)
                runner.leases += 1
                self._rebalance()
                return runner
        finally:
            self._waiting[model.id] -= 1
            if self._waiting[model.id] <= 0:
                del self._waiting[model.id]

    def _release(self, runner: Runner, duration: float) -> None:
        runner.leases -= 1
        runner.last_used = time.monotonic()
        self._durations.append(duration)
        self._changed.set()
        if runner.leases == 0 and runner.model_id in self._stale:
            self._schedule_unload(runner.model_id, "its file changed or was removed")
        self._rebalance()

    def _rebalance(self) -> None:
        """Split the CPU threads between the models serving requests right now."""
        busy = [r for r in self._runners.values() if r.alive and r.leases > 0]
        if not busy:
            return
        share = max(1, self.threads // len(busy))
        for runner in busy:
            runner.set_threads(share)

    # -- loading --------------------------------------------------------------------------------
    async def _load(self, model: StoredModel) -> Runner:
        if model.error:
            raise ModelLoadError(f"the model {model.id!r} cannot be loaded: {model.error}")
        deadline = time.monotonic() + self.settings.load_wait_s
        async with self._capacity:
            await self._make_room(model.id, deadline)
            runner = self._starter(model.id)
            runner.on_exit = self._on_exit
            self._runners[model.id] = runner
            self._identity[model.id] = model.identity
            self._stale.discard(model.id)
            try:
                hello = await runner.spawn()
                on_gpu = self.settings.gpu_layers != 0 and bool(hello.get("gpu_offload"))
                spec, plan = await self._fit(model, deadline, on_gpu)
                self._plans[model.id] = plan
                await runner.load(spec, plan.weights_bytes)
            except BaseException:
                if self._runners.get(model.id) is runner:
                    self._forget(runner)
                with contextlib.suppress(Exception):
                    await runner.stop()
                raise
        log.info(
            "loaded %s (%s engine, pid %s): %d-token KV pool (%s, %s), %d slots, "
            "context %d per request",
            model.id,
            runner.info.get("engine"),
            runner.pid,
            runner.info.get("kv_tokens", spec.kv_tokens),
            spec.kv_type,
            "sized by free memory" if plan.limited_by == "memory" else "at the context cap",
            runner.slots or spec.slots,
            runner.info.get("context_length", spec.context_length),
        )
        slots = runner.slots or spec.slots
        if slots > self.settings.max_concurrent and model.task is not Task.EMBEDDING:
            log.info(
                "%s can run %d requests at once, but max_concurrent is %d: the control plane "
                "sends this worker at most %d at a time; `pendra config set max_concurrent %d` "
                "lets them run side by side",
                model.id,
                slots,
                self.settings.max_concurrent,
                self.settings.max_concurrent,
                slots,
            )
        return runner

    async def _make_room(self, model_id: str, deadline: float) -> None:
        while len(self._runners) >= self.max_loaded:
            victim = self._lru_idle()
            if victim is not None:
                await self._unload(victim, "to make room (builtin.max_loaded_models)")
                continue
            if not await self._wait_change(deadline):
                raise self._busy_error(
                    model_id,
                    f"all {len(self._runners)} loaded models are busy "
                    f"(builtin.max_loaded_models = {self.max_loaded})",
                    "raise builtin.max_loaded_models if memory allows",
                )

    async def _fit(
        self, model: StoredModel, deadline: float, on_gpu: bool
    ) -> tuple[LoadSpec, PoolPlan]:
        """Plan the model's memory, unloading idle models (or waiting for busy ones) to fit it."""
        settings = self.settings
        chat = model.task is not Task.EMBEDDING
        facts = model.facts
        n_ctx_train = model.context_length or (facts.context_length if facts else None)
        shape = facts.kv if facts else None
        # Recurrent and hybrid models run one sequence at a time (their state cannot be shared).
        serial = shape is not None and shape.recurrent
        kv_type = effective_kv_type(shape, settings.kv_type)
        if kv_type != settings.kv_type:
            log.info(
                "%s: its head size is not a multiple of %s's block, so its KV cache stays %s",
                model.id,
                settings.kv_type,
                kv_type,
            )
        while True:
            budget = await self._budget(on_gpu)
            try:
                plan = plan_pool(
                    model_id=model.id,
                    shape=shape,
                    weights_bytes=model.size_bytes,
                    n_ctx_train=n_ctx_train,
                    max_context=settings.max_context,
                    parallel=settings.parallel if chat and not serial else 1,
                    kv_type=kv_type,
                    fraction=settings.memory_fraction,
                    budget=budget,
                    on_gpu=on_gpu,
                )
                break
            except InsufficientMemory as exc:
                victim = self._lru_idle()
                if victim is not None:
                    await self._unload(victim, f"to free memory for {model.id}")
                    continue
                if not self._retiring and not any(
                    r.state == "ready" for r in self._runners.values()
                ):
                    raise  # nothing will free memory by waiting
                if not await self._wait_change(deadline):
                    raise self._busy_error(
                        model.id,
                        f"{exc.message}, and the other loaded models are busy",
                        exc.hint or "",
                    ) from None
        gpu_layers = settings.gpu_layers if settings.gpu_layers is not None else -1
        spec = LoadSpec(
            model_id=model.id,
            path=str(model.path),
            task="embedding" if not chat else "chat",
            kv_tokens=plan.kv_tokens,
            slots=plan.slots if chat else EMBED_SLOTS,
            batched=self._batched and not serial,
            context_length=plan.context_length
            if chat
            else context_cap(n_ctx_train, settings.max_context),
            threads=self.threads,
            gpu_layers=gpu_layers if on_gpu else 0,
            n_ubatch=micro_batch(on_gpu),
            kv_type=kv_type,
            architecture=facts.architecture if facts else None,
            chat_format=model.chat_format,
            pooling_type=facts.pooling_type if facts else None,
            prefix_cache=settings.prefix_cache,
        )
        return spec, plan

    async def _budget(self, on_gpu: bool) -> MemoryBudget:
        # A retiring runner counts whatever its state says: its process may not have exited yet.
        alive = [*(r for r in self._runners.values() if r.alive), *self._retiring]
        if on_gpu:
            free, where = await asyncio.to_thread(_free_vram), "VRAM"
        else:
            import psutil  # on the first load, not at start: the idle worker stays small

            vm = psutil.virtual_memory()
            # Mapped weights of loaded models count as reclaimable cache in "available": they are
            # not, while those models serve.
            mapped = sum(r.weights_bytes for r in alive)
            free, where = max(int(vm.free), int(vm.available) - mapped), "RAM"
        limit = self.settings.memory_limit
        if limit is not None:
            used = sum(p.total_bytes for mid, p in self._plans.items() if mid in self._runners)
            used += sum(p.total_bytes for p in self._retiring.values() if p is not None)
            if limit - used < free:
                return MemoryBudget(max(0, limit - used), where, limited_by_setting=True)
        return MemoryBudget(free, where)

    def _busy_error(self, model_id: str, why: str, hint: str) -> ModelBusy:
        retry = self._retry_after(1, 1)
        return ModelBusy(
            f"cannot load {model_id!r} now: {why}; waited "
            f"{self.settings.load_wait_s:.0f} s (builtin.load_wait_s)",
            retry_after_s=retry,
            hint=f"retry later{'; or ' + hint if hint else ''}",
        )

    def _lru_idle(self) -> str | None:
        return next(
            (mid for mid, r in self._runners.items() if r.idle and r.state == "ready"), None
        )

    async def _wait_change(self, deadline: float) -> bool:
        """Wait for a release or an exit; False when the deadline has passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self._changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
        return True

    async def _wait_idle(self, runner: Runner, why: str) -> None:
        deadline = time.monotonic() + self.settings.load_wait_s
        while runner.alive and not runner.idle:
            if not await self._wait_change(deadline):
                raise self._busy_error(runner.model_id, why, "")

    # -- unloading ------------------------------------------------------------------------------
    async def unload(self, model_id: str) -> bool:
        """Unload one model now; returns whether it was loaded."""
        if model_id not in self._runners:
            return False
        await self._unload(model_id, "on request")
        return True

    def mark_stale(self, current: dict[str, StoredModel]) -> None:
        """After a store change: models removed or replaced unload as soon as they are idle."""
        for model_id in list(self._runners):
            model = current.get(model_id)
            if model is None or self._identity.get(model_id) != model.identity:
                self._stale.add(model_id)
                runner = self._runners[model_id]
                if runner.idle and runner.state == "ready":
                    what = "its file was removed" if model is None else "its file changed"
                    self._schedule_unload(model_id, what)

    def _schedule_unload(self, model_id: str, why: str) -> None:
        task = asyncio.get_running_loop().create_task(self._unload_if_idle(model_id, why))
        self._unloading.add(task)
        task.add_done_callback(self._unloading.discard)

    async def _unload_if_idle(self, model_id: str, why: str) -> None:
        lock = self._locks.setdefault(model_id, asyncio.Lock())
        async with lock:
            runner = self._runners.get(model_id)
            if runner is not None and runner.idle:
                await self._unload(model_id, why)

    async def _unload(self, model_id: str, why: str) -> None:
        runner = self._runners.get(model_id)
        if runner is None:
            return
        # Forgotten first, so no new request leases it, but counted until its process is gone.
        self._retiring[runner] = self._plans.get(model_id)
        self._forget(runner)
        try:
            await runner.stop()
        finally:
            self._retiring.pop(runner, None)
            self._changed.set()
        log.info("unloaded %s (%s)", model_id, why)

    def _forget(self, runner: Runner) -> None:
        model_id = runner.model_id
        if self._runners.get(model_id) is runner:
            del self._runners[model_id]
            self._plans.pop(model_id, None)
            self._identity.pop(model_id, None)
            self._stale.discard(model_id)
        self._changed.set()

    def _on_exit(self, runner: Runner) -> None:
        if runner.state == "dead":
            self.crashes[runner.model_id] += 1
        self._forget(runner)
        self._rebalance()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for task in list(self._unloading):
            task.cancel()
        runners = list(self._runners.values())
        self._runners.clear()
        await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)

    # -- reaper ---------------------------------------------------------------------------------
    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        idle = self.idle_unload_s
        interval = min(max(idle / 4, 0.05), 30.0) if idle > 0 else 5.0
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for model_id, runner in list(self._runners.items()):
                if not runner.idle or runner.state != "ready":
                    continue
                expired = idle > 0 and now - runner.last_used >= idle
                if model_id in self._stale or expired:
                    lock = self._locks.setdefault(model_id, asyncio.Lock())
                    if lock.locked():
                        continue
                    await self._unload_if_idle(model_id, "stale" if not expired else "idle")


def _free_vram() -> int:
    """Free GPU memory summed over the GPUs that report it (NVML, nvidia-smi, amd-smi …)."""
    try:
        from worker.gpu import read_gpus

        readings = read_gpus()
    except Exception:  # no GPU telemetry on this host
        readings = []
    free = 0
    for reading in readings:
        total, used = reading.memory_total, reading.memory_used
        if total and used is not None:
            free += max(0, total - used)
    return free if free > 0 else 1 << 62  # unknown: let llama.cpp decide


def _median(values: Iterable[float]) -> float:
    """The median (the statistics module is not imported for one figure)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2

"""Engines: the one thread that owns a loaded model's context and runs its jobs.

One ``llama_context`` must never be used by two requests at once (it segfaults, runtime.md §1.5).
Each engine therefore has exactly one thread that touches its context, fed by a FIFO queue: jobs
run in arrival order, exclusivity holds by construction, and a job cancelled while queued is
skipped when its turn comes. Engines live in the model's runner process (see
:mod:`~worker.backends.pendra.runner`); their output leaves through an
:class:`~worker.backends.pendra.jobs.Outbox`, flushed once per step.

* :class:`SerialChatEngine` runs one generation at a time (models the batched engine cannot serve:
  recurrent, hybrid, encoder-decoder). It keeps the previous prompt's KV so a follow-up turn
  re-uses the shared prefix; when the memory cannot drop part of a sequence (recurrent state),
  it clears it and reprocesses the prompt instead.
* :class:`EmbedEngine` drains every queued embedding job at once and packs their inputs into as
  few ``llama_decode`` calls as fit; when a packed decode fails, each input is retried alone so
  only the input that caused it fails.
* The continuous-batching chat engine lives in :mod:`worker.backends.pendra.batched`.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import llama_cpp

from worker.backends.pendra.jobs import ChatJob, EmbedJob, Job, Outbox
from worker.backends.pendra.runtime import DecodeError, LlamaRuntime, TokenBatch, decode
from worker.backends.pendra.sequence import Sequence
from worker.errors import PendraError

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 0.5

Stats = dict[str, Any]


class Engine:
    """A model's owner thread and its job queue."""

    kind = "engine"

    def __init__(
        self,
        runtime: LlamaRuntime,
        model_id: str,
        outbox: Outbox,
        *,
        pool_tokens: int | None = None,
        slot_ctx: int | None = None,
        on_stats: Callable[[Stats], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.model_id = model_id
        self.outbox = outbox
        self.pool_tokens = pool_tokens or runtime.n_ctx
        self.slot_ctx = slot_ctx or runtime.n_ctx
        self._on_stats = on_stats
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._threads_wanted: int | None = None
        self.threads = runtime.threads()
        self._last_stats: Stats | None = None
        self._last_stats_at = 0.0
        self._thread = threading.Thread(
            target=self._thread_main, name=f"pendra-{self.kind}-{model_id}", daemon=True
        )
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    # -- other threads --------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        if self._closed:
            raise RuntimeError("engine is closed")
        self._jobs.put(job)

    def set_threads(self, threads: int) -> None:
        """Decode/batch threads from the next step on (the worker shares the CPU among models)."""
        self._threads_wanted = max(1, threads)

    def close(self) -> None:
        """Stop the thread (after the step in progress) and free the model. Blocking."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join()
        self.runtime.close()

    # -- engine thread --------------------------------------------------------------------------
    def _thread_main(self) -> None:
        profile_dir = os.environ.get("PENDRA_RUNNER_PROFILE")
        if profile_dir:  # the benches' --profile: this thread is where a runner spends its time
            import cProfile

            profiler = cProfile.Profile(time.thread_time)  # CPU of this thread, not waits
            try:
                profiler.runcall(self._guarded)
            finally:
                profiler.dump_stats(os.path.join(profile_dir, f"runner-{self.kind}.prof"))
            return
        self._guarded()

    def _guarded(self) -> None:
        try:
            self._run()
        except BaseException:  # never let the thread die silently: fail what is queued
            log.exception("the %s engine of %s stopped", self.kind, self.model_id)
            self._fail_queued(PendraError(f"the engine serving {self.model_id!r} failed"))
        finally:
            self.outbox.flush()

    def _apply_threads(self) -> None:
        wanted = self._threads_wanted
        if wanted is not None:
            self._threads_wanted = None
            self.runtime.set_threads(wanted)
            self.threads = self.runtime.threads()

    def _fail_queued(self, error: BaseException) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.fail(error)
        self.outbox.flush()

    def _report(self, stats: Stats, *, force: bool = False) -> None:
        """Send occupancy to the worker when it changed shape, or every STATS_INTERVAL_S."""
        if self._on_stats is None:
            return
        stats["threads"], stats["threads_batch"] = self.threads
        now = time.monotonic()
        shape_changed = self._last_stats is None or any(
            stats[k] != self._last_stats[k] for k in ("slots_in_use", "queued", "threads")
        )
        if (
            force
            or shape_changed
            or (stats != self._last_stats and now - self._last_stats_at >= STATS_INTERVAL_S)
        ):
            self._last_stats, self._last_stats_at = stats, now
            self._on_stats(stats)

    def _run(self) -> None:
        raise NotImplementedError


class SerialChatEngine(Engine):
    """One generation at a time on a single-sequence context."""

    kind = "serial"

    def __init__(self, runtime: LlamaRuntime, model_id: str, outbox: Outbox, **kw: Any) -> None:
        super().__init__(runtime, model_id, outbox, **kw)
        self._cached: list[int] = []  # tokens whose KV is in sequence 0
        self._batch = TokenBatch(runtime.n_batch, 1)
        self._generated = 0
        self._current: Sequence | None = None

    def _run(self) -> None:
        try:
            while True:
                self._report(self._stats(0))
                job = self._jobs.get()
                if job is None:
                    return
                assert isinstance(job, ChatJob)
                self._apply_threads()
                try:
                    if job.cancelled.is_set():
                        job.discard()
                        continue
                    self._report(self._stats(1))
                    self._generate(job)
                except PendraError as exc:  # this request's own (its grammar …)
                    self._forget()
                    job.fail(exc)
                except Exception as exc:
                    self._forget()
                    log.exception("generation failed on %s", self.model_id)
                    job.fail(PendraError(f"generation failed on {self.model_id!r}: {exc}"))
                finally:
                    self._report(self._stats(0))  # before the output: status never lags it
                    self.outbox.flush()
        finally:
            self._batch.free()

    def _stats(self, busy: int) -> Stats:
        current = self._current.generated if self._current is not None else 0
        return {
            "slots_in_use": busy,
            "queued": self._jobs.qsize(),
            "kv_tokens_in_use": len(self._cached),
            "kv_tokens_reserved": len(self._cached) if busy else 0,
            "tokens_generated": self._generated + current,
        }

    def _forget(self) -> None:
        self._cached = []
        llama_cpp.llama_memory_clear(self.runtime.memory, True)

    def _reuse_prefix(self, prompt: list[int]) -> int:
        """Keep the cached prefix this prompt shares; returns how many tokens are reused."""
        common = _common_prefix(self._cached, prompt)
        if common == len(prompt):
            common -= 1  # the last prompt token must be decoded again to get its logits
        memory, n_swa = self.runtime.memory, self.runtime.n_swa
        # A sliding-window cache keeps only the last window of cells: continuing at `common`
        # needs the window before it, which may have been dropped already (llama-server checks
        # the same).
        window_lost = n_swa > 0 and llama_cpp.llama_memory_seq_pos_min(memory, 0) > max(
            0, common - n_swa
        )
        if common > 0 and window_lost:
            self._forget()
            return 0
        if common < len(self._cached) and not llama_cpp.llama_memory_seq_rm(memory, 0, common, -1):
            # Recurrent/hybrid state (and sliding windows) cannot drop a suffix: start over.
            log.debug("%s: the cache cannot drop a suffix; reprocessing the prompt", self.model_id)
            self._forget()
            return 0
        self._cached = self._cached[:common]
        return common

    def _generate(self, job: ChatJob) -> None:
        runtime, batch = self.runtime, self._batch
        prompt = job.prompt
        pos = self._reuse_prefix(prompt)
        job.cached_tokens = pos
        sequence = self._current = Sequence(runtime, job)
        try:
            while pos < len(prompt):
                if job.cancelled.is_set():
                    sequence.finish("cancelled")
                    return
                batch.clear()
                end = min(len(prompt), pos + runtime.n_batch)
                for i in range(pos, end):
                    batch.add(prompt[i], i, 0, i == len(prompt) - 1)
                decode(runtime, batch)
                self._cached.extend(prompt[pos:end])
                pos = end
            while True:
                if job.cancelled.is_set():
                    sequence.finish("cancelled")
                    return
                token = sequence.next_token(-1)
                if sequence.accept(token):
                    return
                self.outbox.flush()
                self._report(self._stats(1))
                batch.clear()
                batch.add(token, len(self._cached), 0, True)
                decode(runtime, batch)
                self._cached.append(token)
        finally:
            self._generated += sequence.generated
            self._current = None
            sequence.close()


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class EmbedEngine(Engine):
    """Pooled embeddings; concurrent requests are packed into shared batches."""

    kind = "embed"

    def _run(self) -> None:
        batch = TokenBatch(self.runtime.n_batch, 1)
        try:
            while True:
                self._report({"slots_in_use": 0, "queued": 0, "kv_tokens_in_use": 0,
                              "kv_tokens_reserved": 0})  # fmt: skip
                first = self._jobs.get()
                if first is None:
                    return
                jobs: list[EmbedJob] = [first]  # type: ignore[list-item]
                stop = False
                while True:  # drain what else is waiting: those requests batch with this one
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    jobs.append(more)  # type: ignore[arg-type]
                live = [j for j in jobs if not j.cancelled.is_set()]
                for job in jobs:
                    if job.cancelled.is_set():
                        job.discard()
                self._report({"slots_in_use": len(live), "queued": self._jobs.qsize(),
                              "kv_tokens_in_use": 0, "kv_tokens_reserved": 0})  # fmt: skip
                self._apply_threads()
                self._serve(batch, live)
                self._report(
                    {"slots_in_use": 0, "queued": self._jobs.qsize(), "kv_tokens_in_use": 0,
                     "kv_tokens_reserved": 0}
                )  # fmt: skip
                self.outbox.flush()
                if stop:
                    return
        finally:
            batch.free()

    def _serve(self, batch: TokenBatch, jobs: list[EmbedJob]) -> None:
        inputs = [seq for j in jobs for seq in j.inputs]
        try:
            vectors: list[list[float] | BaseException] = list(self._embed(batch, inputs))
        except DecodeError:
            # Something in the packed batch failed: embed each input alone, so an input that
            # llama.cpp rejects fails its own request and not the others packed with it.
            vectors = []
            for tokens in inputs:
                try:
                    vectors.append(self._embed(batch, [tokens])[0])
                except Exception as exc:  # this input's own failure
                    vectors.append(exc)
        except Exception as exc:
            log.exception("embedding failed on %s", self.model_id)
            for job in jobs:
                job.fail(PendraError(f"embedding failed on {self.model_id!r}: {exc}"))
            return
        at = 0
        for job in jobs:
            mine = vectors[at : at + len(job.inputs)]
            at += len(job.inputs)
            failed = next((i for i, v in enumerate(mine) if isinstance(v, BaseException)), None)
            if failed is not None:
                job.fail(
                    PendraError(
                        f"embedding 'input[{failed}]' failed on {self.model_id!r}: {mine[failed]}"
                    )
                )
            else:
                job.result(mine)  # type: ignore[arg-type]

    def _embed(self, batch: TokenBatch, inputs: list[list[int]]) -> list[list[float]]:
        runtime = self.runtime
        n_batch, n_seq = runtime.n_batch, runtime.n_seq_max
        out: list[list[float]] = [[] for _ in inputs]
        start = 0
        while start < len(inputs):
            llama_cpp.llama_memory_clear(runtime.memory, True)
            batch.clear()
            group: list[int] = []
            used = 0
            for i in range(start, len(inputs)):
                tokens = inputs[i]
                if group and (used + len(tokens) > n_batch or len(group) >= n_seq):
                    break
                seq = len(group)
                for pos, token in enumerate(tokens):
                    batch.add(token, pos, seq, True)
                group.append(i)
                used += len(tokens)
            decode(runtime, batch)
            for seq, i in enumerate(group):
                ptr = llama_cpp.llama_get_embeddings_seq(runtime.ctx, seq)
                if not ptr:
                    raise DecodeError(-1)
                out[i] = _normalise(ptr[: runtime.n_embd])
            start += len(group)
        return out


def _normalise(vector: list[float]) -> list[float]:
    """L2-normalise, as OpenAI's embeddings are (cosine similarity = dot product)."""
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else list(vector)

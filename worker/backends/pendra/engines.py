"""Engines: the one thread that owns a loaded model and runs its jobs.

One ``llama_context`` must never be used by two requests at once (it segfaults, runtime.md §1.5).
Each engine therefore has exactly one thread that touches its context, fed by a FIFO queue: jobs
run in arrival order, exclusivity holds by construction, and a job cancelled while queued is
skipped when its turn comes.

* :class:`SerialChatEngine` runs one generation at a time (the fallback; models the batched engine
  cannot serve). It keeps the previous prompt's KV so a follow-up turn re-uses the shared prefix.
* :class:`EmbedEngine` drains every queued embedding job at once and packs their inputs into as
  few ``llama_decode`` calls as fit, so concurrent embedding requests batch together.
* The continuous-batching chat engine lives in :mod:`worker.backends.pendra.batched`.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time

import llama_cpp

from worker.backends.pendra.chat_format import PromptRenderer
from worker.backends.pendra.jobs import ChatJob, EmbedJob, Job, ResultEvent
from worker.backends.pendra.runtime import DecodeError, LlamaRuntime, TokenBatch, decode
from worker.backends.pendra.sequence import Sequence
from worker.errors import PendraError

log = logging.getLogger(__name__)


class Engine:
    """A model's owner thread and its job queue."""

    kind = "engine"

    def __init__(self, runtime: LlamaRuntime, model_id: str) -> None:
        self.runtime = runtime
        self.model_id = model_id
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending = 0
        self.leases = 0  # requests between acquire and submit (event-loop side only)
        self.last_used = time.monotonic()
        self.served = 0
        self.renderer: PromptRenderer | None = None  # chat engines: set by the loader
        self.slot_ctx = getattr(self, "slot_ctx", runtime.n_ctx)  # context of one sequence
        self._thread = threading.Thread(
            target=self._thread_main, name=f"pendra-{self.kind}-{model_id}", daemon=True
        )
        self._closed = False
        self._thread.start()

    # -- event-loop side ------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    @property
    def idle(self) -> bool:
        return self.pending == 0 and self.leases == 0

    def submit(self, job: Job) -> None:
        if self._closed:
            raise RuntimeError("engine is closed")
        with self._lock:
            self._pending += 1
        self._jobs.put(job)

    def close(self) -> None:
        """Stop the thread (after the jobs already queued) and free the model. Blocking."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        self._thread.join()
        self.runtime.close()

    # -- engine thread --------------------------------------------------------------------------
    def _job_done(self, count: int = 1) -> None:
        with self._lock:
            self._pending -= count
            self.served += count
            self.last_used = time.monotonic()

    def _thread_main(self) -> None:
        try:
            self._run()
        except BaseException:  # never let the thread die silently: fail what is queued
            log.exception("the %s engine of %s stopped", self.kind, self.model_id)
            self._fail_queued(PendraError(f"the engine serving {self.model_id!r} failed"))

    def _fail_queued(self, error: BaseException) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.fail(error)
                self._job_done()

    def _run(self) -> None:
        raise NotImplementedError


class SerialChatEngine(Engine):
    """One generation at a time on a single-sequence context."""

    kind = "serial"

    def __init__(self, runtime: LlamaRuntime, model_id: str) -> None:
        self._cached: list[int] = []  # tokens whose KV is in sequence 0
        self._batch = TokenBatch(runtime.n_batch, 1)
        super().__init__(runtime, model_id)

    def _run(self) -> None:
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                assert isinstance(job, ChatJob)
                try:
                    if not job.cancelled.is_set():
                        self._generate(job)
                except Exception as exc:
                    self._cached = []
                    llama_cpp.llama_memory_clear(self.runtime.memory, True)
                    log.exception("generation failed on %s", self.model_id)
                    job.fail(PendraError(f"generation failed on {self.model_id!r}: {exc}"))
                finally:
                    self._job_done()
        finally:
            self._batch.free()

    def _generate(self, job: ChatJob) -> None:
        runtime, batch = self.runtime, self._batch
        prompt = job.prompt
        common = _common_prefix(self._cached, prompt)
        if common == len(prompt):
            common -= 1  # the last prompt token must be decoded again to get its logits
        llama_cpp.llama_memory_seq_rm(runtime.memory, 0, common, -1)
        self._cached = prompt[:common]
        sequence = Sequence(runtime, job)
        try:
            pos = common
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
                batch.clear()
                batch.add(token, len(self._cached), 0, True)
                decode(runtime, batch)
                self._cached.append(token)
        finally:
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
        while True:
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
            try:
                vectors = self._embed([seq for j in live for seq in j.inputs])
                at = 0
                for job in live:
                    job.emit(ResultEvent(vectors[at : at + len(job.inputs)]))
                    at += len(job.inputs)
            except Exception as exc:
                log.exception("embedding failed on %s", self.model_id)
                for job in live:
                    job.fail(PendraError(f"embedding failed on {self.model_id!r}: {exc}"))
            finally:
                self._job_done(len(jobs))
            if stop:
                return

    def _embed(self, inputs: list[list[int]]) -> list[list[float]]:
        runtime = self.runtime
        n_batch, n_seq = runtime.n_batch, runtime.n_seq_max
        batch = TokenBatch(n_batch, 1)
        out: list[list[float]] = [[] for _ in inputs]
        try:
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
        finally:
            batch.free()
        return out


def _normalise(vector: list[float]) -> list[float]:
    """L2-normalise, as OpenAI's embeddings are (cosine similarity = dot product)."""
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else list(vector)

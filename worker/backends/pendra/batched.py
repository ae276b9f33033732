"""Continuous batching: many generations share one context, one ``llama_decode`` per step.

One context is created with ``n_seq_max`` = the model's slots and one unified KV pool of
``pool_tokens`` cells (sized from free memory, see :mod:`~worker.backends.pendra.memory`). Each
request takes a free sequence id (a slot); every step builds one batch holding the next token of
each generating slot plus as much pending prompt as fits (chunked prefill), decodes it once, and
samples each slot from its own logits row with its own native sampler chain. Finished or
cancelled sequences leave between steps and their cells are released with
``llama_memory_seq_rm``.

Admission is by reservation: a request enters only when its prompt plus its answer budget fits in
the cells not reserved by the others, in arrival order (a big request is not overtaken forever by
small ones). Since every answer is capped so that prompt + answer <= the per-request context, the
pool can never overflow mid-answer.

A failed decode fails only the sequence that caused it: the step's cells are rolled back and each
sequence's part is decoded alone; the ones that succeed carry on.

Greedy outputs match the serial engine's up to the floating-point summation order of batched
kernels; llama.cpp promises no bit-identity across batch shapes, so neither does this engine.
"""

from __future__ import annotations

import collections
import logging
import queue
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

from worker.backends.pendra.engines import Engine, Stats
from worker.backends.pendra.jobs import ChatJob, Outbox
from worker.backends.pendra.runtime import DecodeError, LlamaRuntime, TokenBatch, decode
from worker.backends.pendra.sequence import Sequence
from worker.errors import PendraError

log = logging.getLogger(__name__)


def batched_supported(runtime: LlamaRuntime) -> str | None:
    """Why this model cannot use the batched engine, or None when it can."""
    if runtime.n_seq_max < 2:
        return "the context has a single sequence"
    if runtime.has_encoder:
        return "encoder-decoder models run one sequence at a time"
    if runtime.recurrent:
        return "recurrent/hybrid models keep per-sequence state the batched engine does not manage"
    return None


@dataclass
class _Slot:
    seq_id: int
    sequence: Sequence
    prompt: list[int]
    reserve: int
    fed: int = 0  # prompt tokens already in the KV cache
    next_token: int | None = None  # sampled, not yet decoded

    @property
    def pos(self) -> int:
        """Position of ``next_token``: after the prompt and the tokens generated before it."""
        return self.fed + self.sequence.generated - 1

    @property
    def cells(self) -> int:
        return self.fed + max(0, self.sequence.generated - 1)


@dataclass
class _Part:
    """One slot's share of a step's batch."""

    slot: _Slot
    tokens: list[tuple[int, int, bool]] = field(default_factory=list)  # token, pos, logits
    start: int = 0  # first position written this step (for rollback)
    fed_after: int = 0
    logits_index: int = -1


class BatchedChatEngine(Engine):
    """Continuous batching over ``runtime.n_seq_max`` slots sharing one KV pool."""

    kind = "batched"

    def __init__(self, runtime: LlamaRuntime, model_id: str, outbox: Outbox, **kw: Any) -> None:
        super().__init__(runtime, model_id, outbox, **kw)
        self._batch = TokenBatch(runtime.n_batch, 1)
        self._waiting: collections.deque[ChatJob] = collections.deque()
        self._reserved = 0

    def _run(self) -> None:
        runtime = self.runtime
        free = list(range(runtime.n_seq_max - 1, -1, -1))
        active: list[_Slot] = []
        stopping = False
        try:
            while True:
                idle = not active and not self._waiting
                if idle:
                    self._report(self._stats(active))
                stopping = self._pull(block=idle) or stopping
                if not stopping:
                    self._admit(free, active)
                self._report(self._stats(active))
                if not active:
                    # (With nothing running the head of the line is always admitted: a job's
                    # reserve is capped to the pool, so this never spins.)
                    self.outbox.flush()
                    if stopping:
                        return
                    continue
                for slot in [s for s in active if s.sequence.job.cancelled.is_set()]:
                    slot.sequence.finish("cancelled")
                    self._release(slot, active, free)
                if not active:
                    continue
                self._apply_threads()
                self._step(active)
                for slot in [s for s in active if s.sequence.finished]:
                    self._release(slot, active, free)
                self._report(self._stats(active))  # before the output: status never lags it
                self.outbox.flush()
        finally:
            for slot in active:
                slot.sequence.close()
            self._batch.free()
            error = PendraError(f"the model {self.model_id!r} was unloaded")
            for job in self._waiting:
                job.fail(error)
            self._fail_queued(error)

    # -- admission ------------------------------------------------------------------------------
    def _pull(self, *, block: bool) -> bool:
        """Move submitted jobs to the waiting line; returns True when asked to stop."""
        while True:
            try:
                job = self._jobs.get(block=block)
            except queue.Empty:
                return False
            block = False
            if job is None:
                return True
            assert isinstance(job, ChatJob)
            self._waiting.append(job)

    def _admit(self, free: list[int], active: list[_Slot]) -> None:
        waiting = self._waiting
        while waiting and free:
            job = waiting[0]
            if job.cancelled.is_set():
                waiting.popleft()
                job.discard()
                continue
            if self._reserved + job.reserve > self.pool_tokens and active:
                return  # wait for cells, keeping arrival order
            waiting.popleft()
            seq_id = free.pop()
            llama_cpp.llama_memory_seq_rm(self.runtime.memory, seq_id, -1, -1)
            try:
                sequence = Sequence(self.runtime, job)
            except Exception as exc:
                free.append(seq_id)
                job.fail(PendraError(f"could not start generation: {exc}"))
                continue
            active.append(_Slot(seq_id, sequence, job.prompt, job.reserve))
            self._reserved += job.reserve

    def _release(self, slot: _Slot, active: list[_Slot], free: list[int]) -> None:
        active.remove(slot)
        self._reserved -= slot.reserve
        llama_cpp.llama_memory_seq_rm(self.runtime.memory, slot.seq_id, -1, -1)
        free.append(slot.seq_id)
        slot.sequence.close()

    def _stats(self, active: list[_Slot]) -> Stats:
        return {
            "slots_in_use": len(active),
            "queued": len(self._waiting) + self._jobs.qsize(),
            "kv_tokens_in_use": sum(s.cells for s in active),
            "kv_tokens_reserved": self._reserved,
        }

    # -- one step -------------------------------------------------------------------------------
    def _plan(self, active: list[_Slot]) -> list[_Part]:
        """Each generating slot's next token first, then prompt chunks in arrival order."""
        parts: list[_Part] = []
        room = self._batch.capacity
        for slot in active:
            if slot.next_token is not None:
                pos = slot.pos
                parts.append(_Part(slot, [(slot.next_token, pos, True)], pos, slot.fed))
                room -= 1
        for slot in active:
            if slot.next_token is not None or slot.fed >= len(slot.prompt):
                continue
            if room <= 0:
                break
            end = min(len(slot.prompt), slot.fed + room)
            last = len(slot.prompt) - 1
            tokens = [(slot.prompt[i], i, i == last) for i in range(slot.fed, end)]
            parts.append(_Part(slot, tokens, slot.fed, end))
            room -= len(tokens)
        return parts

    def _step(self, active: list[_Slot]) -> None:
        parts = self._plan(active)
        batch = self._batch
        batch.clear()
        for part in parts:
            for token, pos, logits in part.tokens:
                index = batch.add(token, pos, part.slot.seq_id, logits)
                if logits:
                    part.logits_index = index
        try:
            decode(self.runtime, batch)
        except DecodeError as exc:
            log.warning(
                "a batched decode of %d sequence(s) on %s failed (%s); retrying each alone",
                len(parts),
                self.model_id,
                exc,
            )
            self._step_isolated(parts)
            return
        for part in parts:
            self._advance(part)

    def _step_isolated(self, parts: list[_Part]) -> None:
        """Roll the failed step back and decode each sequence's part on its own."""
        memory = self.runtime.memory
        batch = self._batch
        for part in parts:
            slot = part.slot
            if not llama_cpp.llama_memory_seq_rm(memory, slot.seq_id, part.start, -1):
                self._fail(slot, "its cache could not be rolled back after a failed step")
                continue
            batch.clear()
            for token, pos, logits in part.tokens:
                index = batch.add(token, pos, slot.seq_id, logits)
                if logits:
                    part.logits_index = index
            try:
                decode(self.runtime, batch)
            except DecodeError as exc:
                llama_cpp.llama_memory_seq_rm(memory, slot.seq_id, part.start, -1)
                self._fail(slot, str(exc))
                continue
            self._advance(part)

    def _advance(self, part: _Part) -> None:
        slot = part.slot
        slot.fed = part.fed_after
        if part.logits_index < 0:
            return  # still prefilling
        token = slot.sequence.next_token(part.logits_index)
        slot.next_token = None if slot.sequence.accept(token) else token

    def _fail(self, slot: _Slot, reason: str) -> None:
        log.error("generation failed on %s: %s", self.model_id, reason)
        slot.sequence.job.fail(PendraError(f"generation failed on {self.model_id!r}: {reason}"))
        slot.sequence.finish("cancelled")

"""Continuous batching: many generations share one context, one ``llama_decode`` per step.

One context is created with ``n_seq_max`` = ``builtin.parallel`` sequences and a unified KV cache
of ``slot_ctx x parallel`` cells. Each request takes a free sequence id (a slot); every step builds
one batch holding the next token of each generating slot plus as much pending prompt as fits
(chunked prefill), decodes it once, and samples each slot from its own logits row with its own
native sampler chain. New requests join between steps; finished or cancelled ones leave and their
KV cells are released with ``llama_memory_seq_rm``. Since each slot's answer is capped so that
prompt + answer <= ``slot_ctx`` (the backend enforces it), the unified cache can never overflow.

Greedy outputs are the same as the serial engine's up to floating-point summation order of
batched kernels (identical on the tiny test model); sampling with a seed is reproducible per slot.
"""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass

import llama_cpp

from worker.backends.pendra.engines import Engine
from worker.backends.pendra.jobs import ChatJob
from worker.backends.pendra.runtime import LlamaRuntime, TokenBatch, decode
from worker.backends.pendra.sequence import Sequence
from worker.errors import PendraError

log = logging.getLogger(__name__)


def batched_supported(runtime: LlamaRuntime) -> str | None:
    """Why this model cannot use the batched engine, or None when it can."""
    if runtime.n_seq_max < 2:
        return "the context has a single sequence"
    if runtime.has_encoder:
        return "encoder-decoder models run one sequence at a time"
    if llama_cpp.llama_model_is_recurrent(runtime.model) or llama_cpp.llama_model_is_hybrid(
        runtime.model
    ):
        return "recurrent/hybrid models keep per-sequence state the batched engine does not manage"
    return None


@dataclass
class _Slot:
    seq_id: int
    sequence: Sequence
    prompt: list[int]
    fed: int = 0  # prompt tokens already in the KV cache
    next_token: int | None = None  # sampled, not yet decoded
    logits_index: int = -1  # where this slot's logits are in the current batch

    @property
    def pos(self) -> int:
        """Position of ``next_token``: after the prompt and the tokens generated before it."""
        return self.fed + self.sequence.generated - 1


class BatchedChatEngine(Engine):
    """Continuous batching over ``runtime.n_seq_max`` slots."""

    kind = "batched"

    def __init__(self, runtime: LlamaRuntime, model_id: str, *, slot_ctx: int) -> None:
        self.slot_ctx = slot_ctx
        self._batch = TokenBatch(runtime.n_batch, 1)
        super().__init__(runtime, model_id)

    def _run(self) -> None:
        runtime = self.runtime
        free = list(range(runtime.n_seq_max - 1, -1, -1))
        active: list[_Slot] = []
        stopping = False
        try:
            while True:
                # Admit waiting requests into free slots (block only when nothing is running).
                while free and not stopping:
                    try:
                        job = self._jobs.get(block=not active)
                    except queue.Empty:
                        break
                    if job is None:
                        stopping = True
                        break
                    assert isinstance(job, ChatJob)
                    if job.cancelled.is_set():
                        self._job_done()
                        continue
                    seq_id = free.pop()
                    llama_cpp.llama_memory_seq_rm(runtime.memory, seq_id, -1, -1)
                    try:
                        sequence = Sequence(runtime, job)
                    except Exception as exc:
                        free.append(seq_id)
                        job.fail(PendraError(f"could not start generation: {exc}"))
                        self._job_done()
                        continue
                    active.append(_Slot(seq_id, sequence, job.prompt))
                if not active:
                    if stopping:
                        return
                    continue
                for slot in [s for s in active if s.sequence.job.cancelled.is_set()]:
                    slot.sequence.finish("cancelled")
                    self._release(slot, active, free)
                if not active:
                    continue
                try:
                    self._step(active)
                except Exception as exc:
                    log.exception("batched decode failed on %s", self.model_id)
                    for slot in list(active):
                        slot.sequence.job.fail(
                            PendraError(f"generation failed on {self.model_id!r}: {exc}")
                        )
                        slot.sequence.finish("cancelled")
                        self._release(slot, active, free)
                    llama_cpp.llama_memory_clear(runtime.memory, True)
                    continue
                for slot in [s for s in active if s.sequence.finished]:
                    self._release(slot, active, free)
        finally:
            for slot in active:
                slot.sequence.close()
            self._batch.free()
            self._fail_queued(PendraError(f"the model {self.model_id!r} was unloaded"))

    def _release(self, slot: _Slot, active: list[_Slot], free: list[int]) -> None:
        active.remove(slot)
        llama_cpp.llama_memory_seq_rm(self.runtime.memory, slot.seq_id, -1, -1)
        free.append(slot.seq_id)
        slot.sequence.close()
        self._job_done()

    def _step(self, active: list[_Slot]) -> None:
        """One decode: each generating slot's next token, then prompt chunks in arrival order."""
        batch = self._batch
        batch.clear()
        capacity = batch.capacity
        for slot in active:
            slot.logits_index = -1
            if slot.next_token is not None:
                slot.logits_index = batch.add(slot.next_token, slot.pos, slot.seq_id, True)
        for slot in active:
            if slot.next_token is not None or slot.fed >= len(slot.prompt):
                continue
            room = capacity - batch.size
            if room <= 0:
                break
            end = min(len(slot.prompt), slot.fed + room)
            index = -1
            for i in range(slot.fed, end):
                index = batch.add(slot.prompt[i], i, slot.seq_id, i == len(slot.prompt) - 1)
            if end == len(slot.prompt):
                slot.logits_index = index
            slot.fed = end
        decode(self.runtime, batch)
        for slot in active:
            if slot.logits_index < 0:
                continue  # still prefilling
            token = slot.sequence.next_token(slot.logits_index)
            if slot.sequence.accept(token):
                slot.next_token = None
            else:
                slot.next_token = token

"""The per-request token path shared by both engines: sample, detokenise, stop, emit."""

from __future__ import annotations

from worker.backends.pendra.jobs import ChatJob
from worker.backends.pendra.runtime import LlamaRuntime
from worker.backends.pendra.sampling import build_sampler, free_sampler, sample
from worker.backends.pendra.text_stream import StopMatcher, Utf8Decoder


class Sequence:
    """One generation in flight: its sampler chain, its text state and its budget."""

    def __init__(self, runtime: LlamaRuntime, job: ChatJob) -> None:
        assert job.params is not None
        self.runtime = runtime
        self.job = job
        self.sampler = build_sampler(job.params)
        self.decoder = Utf8Decoder()
        self.stops = StopMatcher(job.stops)
        self.generated = 0
        self.finished = False

    def next_token(self, batch_index: int) -> int:
        return sample(self.sampler, self.runtime.ctx, batch_index)

    def accept(self, token: int) -> bool:
        """Handle one sampled token; returns True when the sequence has finished."""
        if self.runtime.is_eog(token):
            self.finish("stop")
            return True
        self.generated += 1
        text, stopped = self.stops.feed(self.decoder.feed(self.runtime.piece(token)))
        self.job.text(text)
        if stopped:
            self.finish("stop")
        elif self.generated >= self.job.max_new:
            self.finish("length")
        return self.finished

    def finish(self, reason: str) -> None:
        if self.finished:
            return
        self.finished = True
        if reason == "cancelled":
            self.job.discard()
        else:
            tail, stopped = self.stops.feed(self.decoder.finish())
            self.job.text(tail)
            if not stopped:
                self.job.text(self.stops.flush())
            self.job.done(reason, self.generated)
        self.close()

    def close(self) -> None:
        if self.sampler is not None:
            free_sampler(self.sampler)
            self.sampler = None  # type: ignore[assignment]

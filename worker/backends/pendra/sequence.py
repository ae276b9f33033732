"""The per-request token path shared by both engines: sample, detokenise, stop, emit."""

from __future__ import annotations

from worker.backends.pendra.jobs import ChatJob
from worker.backends.pendra.runtime import LlamaRuntime
from worker.backends.pendra.sampling import TokenSampler
from worker.backends.pendra.text_stream import StopMatcher, Utf8Decoder


class Sequence:
    """One generation in flight: its sampler, its text state and its budget."""

    def __init__(self, runtime: LlamaRuntime, job: ChatJob) -> None:
        assert job.params is not None
        self.runtime = runtime
        self.job = job
        needs_candidates = job.grammar is not None or job.params.logprobs
        self.sampler = TokenSampler(
            job.params,
            runtime.vocab,
            runtime.n_vocab,
            runtime.candidates() if needs_candidates else None,
            job.grammar,
            runtime.utf8_guard() if job.grammar is not None else None,
        )
        self.decoder = Utf8Decoder()
        self.stops = StopMatcher(job.stops)
        self.generated = 0
        self.finished = False

    def next_token(self, batch_index: int) -> int:
        return self.sampler.sample(self.runtime.ctx, batch_index)

    def accept(self, token: int) -> bool:
        """Handle one sampled token; returns True when the sequence has finished."""
        if self.runtime.is_eog(token):
            self.finish("stop")
            return True
        self.generated += 1
        if token in self.job.visible:
            piece = self.runtime.token_text(token).encode("utf-8")
        else:
            piece = self.runtime.piece(token)
        last = self.sampler.last
        if last is not None:
            self.job.token_info(self._logprobs(piece, last.logprob, last.top))
        text, stopped = self.stops.feed(self.decoder.feed(piece))
        self.job.text(text)
        if stopped:
            self.finish("stop")
        elif self.generated >= self.job.max_new:
            self.finish("length")
        return self.finished

    def _logprobs(self, piece: bytes, logprob: float, top: list[tuple[int, float]]) -> dict:
        special = self.runtime.piece
        return {
            "b": piece.hex(),
            "l": logprob,
            "top": [[special(token, special=True).hex(), value] for token, value in top],
        }

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
            self.sampler.close()
            self.sampler = None  # type: ignore[assignment]

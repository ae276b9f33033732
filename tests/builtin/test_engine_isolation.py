"""A decode error in a batch fails only the sequence that caused it (engine level, real llama.cpp).

The worker checks token ids before they reach a runner, so through the public path a bad id never
gets this far (``test_runner_requests.py`` shows that). This test hands the engines a bad id
directly, as a llama.cpp failure nobody foresaw would arrive: the batched decode fails, each
sequence is retried alone, and only the one that fails again gets the error.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from worker.backends.pendra import wire
from worker.backends.pendra.jobs import ChatJob, EmbedJob, Outbox
from worker.backends.pendra.params import ChatParams


class Collect:
    """A sink that keeps what the engine sends."""

    def __init__(self) -> None:
        self.entries: list[wire.Entry] = []
        self.finished = threading.Event()
        self.expected = 0

    def control(self, message: dict[str, Any]) -> None:
        pass

    def events(self, entries: list[wire.Entry]) -> None:
        self.entries += entries
        if sum(1 for e in self.entries if e[1] != wire.TEXT) >= self.expected:
            self.finished.set()

    def final(self, job: int) -> tuple[int, Any]:
        return next((kind, payload) for j, kind, payload in self.entries if j == job
                    and kind != wire.TEXT)  # fmt: skip


def _params(max_tokens: int) -> ChatParams:
    return ChatParams(model="iso", messages=[], max_tokens=max_tokens, temperature=0)


def test_bad_token_fails_only_its_own_sequence(isolation_gguf: Path) -> None:
    from worker.backends.pendra.batched import BatchedChatEngine
    from worker.backends.pendra.runtime import LlamaRuntime, LoadOptions

    runtime = LlamaRuntime(isolation_gguf, "iso", LoadOptions(n_ctx=1024, n_seq_max=4, threads=1))
    sink = Collect()
    outbox = Outbox(sink)
    engine = BatchedChatEngine(runtime, "iso", outbox, pool_tokens=1024, slot_ctx=256)
    letter = runtime.tokenize("c", add_special=False, parse_special=False)[-1]
    good = ChatJob(1, outbox, params=_params(5), prompt=[1] + [letter] * 30, max_new=5)
    bad = ChatJob(2, outbox, params=_params(5), prompt=[1, letter, runtime.n_vocab + 7], max_new=5)
    other = ChatJob(3, outbox, params=_params(4), prompt=[1] + [letter] * 12, max_new=4)
    sink.expected = 3
    try:
        for job in (good, bad, other):
            engine.submit(job)
        engine.start()
        assert sink.finished.wait(60), f"the jobs did not finish: {sink.entries}"
    finally:
        engine.close()
    kind, payload = sink.final(2)
    assert kind == wire.ERROR and "llama_decode failed" in payload["message"]
    for job, n in ((1, 5), (3, 4)):
        kind, payload = sink.final(job)
        assert kind == wire.DONE, payload
        assert payload["completion_tokens"] == n and payload["finish_reason"] == "length"
        text = "".join(p for j, k, p in sink.entries if j == job and k == wire.TEXT)
        assert text == "c" * n  # the isolation model's own answer: nothing leaked across


def test_bad_input_fails_only_its_own_embedding_request(tiny_embed_gguf: Path) -> None:
    from worker.backends.pendra.engines import EmbedEngine
    from worker.backends.pendra.runtime import LlamaRuntime, LoadOptions

    options = LoadOptions(n_ctx=512, n_seq_max=16, n_batch=512, n_ubatch=512, threads=1,
                          embeddings=True)  # fmt: skip
    runtime = LlamaRuntime(tiny_embed_gguf, "emb", options)
    sink = Collect()
    outbox = Outbox(sink)
    engine = EmbedEngine(runtime, "emb", outbox)
    jobs = [
        EmbedJob(1, outbox, inputs=[[1, 40, 41], [1, 42]]),
        EmbedJob(2, outbox, inputs=[[1, runtime.n_vocab + 3]]),
        EmbedJob(3, outbox, inputs=[[1, 43, 44, 45]]),
    ]
    sink.expected = 3
    try:
        for job in jobs:  # queued before the engine starts: they are packed into one batch
            engine.submit(job)
        engine.start()
        assert sink.finished.wait(60), f"the jobs did not finish: {sink.entries}"
    finally:
        engine.close()
    kind, payload = sink.final(2)
    assert kind == wire.ERROR and "'input[0]'" in payload["message"]
    for job, count in ((1, 2), (3, 1)):
        kind, payload = sink.final(job)
        assert kind == wire.EMBEDDINGS and len(payload.vectors) == count


@pytest.mark.parametrize("kind", ["chat", "embed"])
def test_unknown_job_kind_is_refused(kind: str) -> None:
    from worker.backends.pendra.runner import RunnerCore

    sink = Collect()
    core = RunnerCore(sink)
    core.handle({"op": "job", "job": 9, "spec": {"kind": kind + "-not"}})
    ((job, entry_kind, payload),) = sink.entries
    assert (job, entry_kind) == (9, wire.ERROR) and "unknown job" in payload["message"]

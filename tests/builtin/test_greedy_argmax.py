"""Greedy sampling without the native chain: numpy's argmax over the logits row must pick exactly
what llama.cpp's ``logit_bias → greedy`` chain picks, and step aside whenever it cannot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from worker.backends.pendra.params import ChatParams
from worker.backends.pendra.sampling import GreedyArgmax, biased_argmax

NO_IDS = None
NO_BIASES = np.array([], dtype=np.float32)


def _params(**kw: object) -> ChatParams:
    return ChatParams(model="m", messages=[], **{"temperature": 0, **kw})  # type: ignore[arg-type]


def test_first_of_equal_maxima_wins() -> None:
    row = np.array([0.5, 2.0, -1.0, 2.0, 2.0], dtype=np.float32)
    assert biased_argmax(row, NO_IDS, NO_BIASES) == 1


def test_biases_add_and_a_ban_removes_the_best() -> None:
    row = np.array([0.5, 2.0, -1.0, 1.9], dtype=np.float32)
    ids = np.array([1], dtype=np.intp)
    assert biased_argmax(row, ids, np.array([-math.inf], dtype=np.float32)) == 3
    assert biased_argmax(row, np.array([2], dtype=np.intp), np.array([5.0], np.float32)) == 2
    assert row[1] == 2.0  # the logits llama.cpp owns are never written


def test_a_repeated_id_adds_each_bias() -> None:
    row = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    ids = np.array([2, 2], dtype=np.intp)
    assert biased_argmax(row, ids, np.array([0.6, 0.6], dtype=np.float32)) == 2


def test_every_token_banned_picks_the_first_as_the_native_scan_does() -> None:
    row = np.full(4, -math.inf, dtype=np.float32)
    assert biased_argmax(row, NO_IDS, NO_BIASES) == 0


def test_nan_in_the_row_is_left_to_the_native_chain() -> None:
    row = np.array([0.5, math.nan, 3.0], dtype=np.float32)
    assert biased_argmax(row, NO_IDS, NO_BIASES) is None


@pytest.mark.parametrize(
    ("kw", "applies"),
    [
        ({}, True),
        ({"logit_bias": [[3, 5.0]]}, True),
        ({"temperature": 0.7}, False),
        ({"repeat_penalty": 1.1}, False),
        ({"frequency_penalty": 0.5}, False),
        ({"presence_penalty": -0.5}, False),
    ],
)
def test_applies_only_to_a_stateless_greedy_chain(kw: dict, applies: bool) -> None:
    assert GreedyArgmax.applies(_params(**kw)) is applies


def test_matches_the_native_chain_on_a_real_model(gemma_gguf: Path) -> None:
    """Gemma's 262k-token rows, several batch rows, biases that move and ban the answer."""
    import llama_cpp

    from worker.backends.pendra.runtime import LlamaRuntime, LoadOptions, TokenBatch, decode
    from worker.backends.pendra.sampling import build_chain, free_sampler

    runtime = LlamaRuntime(gemma_gguf, "g", LoadOptions(n_ctx=512, n_seq_max=3, threads=1))
    batch = TokenBatch(64, 1)
    try:
        prompts = ["The capital of France is", "1, 2, 3, 4,", "Once upon a"]
        rows = []
        for seq, text in enumerate(prompts):
            tokens = runtime.tokenize(text, add_special=True, parse_special=False)
            for pos, token in enumerate(tokens):
                index = batch.add(token, pos, seq, pos == len(tokens) - 1)
            rows.append(index)
        decode(runtime, batch)
        n_vocab = runtime.n_vocab
        checked = 0
        for index in rows:
            logits = np.ctypeslib.as_array(
                llama_cpp.llama_get_logits_ith(runtime.ctx, index), shape=(n_vocab,)
            )
            best, second = (int(t) for t in np.argsort(logits)[::-1][:2])
            cases: list[list[list[float]]] = [
                [],
                [[best, -100]],  # banned: the runner-up wins
                [[best, -100], [second, -100], [7, 100]],  # +100 puts a rare token first
                [[second, float(logits[best] - logits[second]) + 1.0]],
                [[n_vocab + 5, 100]],  # an id beyond the vocabulary changes nothing
            ]
            for bias in cases:
                params = _params(logit_bias=bias)
                chain = build_chain(params, n_vocab)
                try:
                    ours = GreedyArgmax(n_vocab, bias).pick(runtime.ctx, index)
                    native = int(llama_cpp.llama_sampler_sample(chain, runtime.ctx, index))
                finally:
                    free_sampler(chain)
                assert ours == native, (index, bias)
                checked += 1
        assert checked == 15
    finally:
        batch.free()
        runtime.close()

"""Native llama.cpp sampling for one request: its sampler chain, grammar and log probabilities.

Sampling runs in C (``llama_sampler_*`` read the logits in place), so no n_vocab-sized work is
done in Python per token (runtime.md §2.1). The chain is the request's: ``logit_bias``, the
repetition penalties, then greedy (temperature 0) or top-k → top-p → min-p → temperature →
a seeded random draw.

Greedy without penalties (:class:`GreedyArgmax`) skips the chain: its answer is the argmax of the
(biased) logits row, which numpy finds in place in a few tens of microseconds. The chain would
first copy the row into an n_vocab-entry candidate array — about 0.6 ms per sequence per step on
a 256k vocabulary, on the thread every next decode waits for.

Two request features need the whole candidate array, which ``llama_sampler_sample`` builds in C
and throws away. A tiny sampler of ours (:class:`CandidateCapture`, a ctypes callback) copies it
with one ``memmove`` into a buffer the engine owns; then:

* **Grammar** (structured output, tool calls): sample with the chain first and check only the
  token it picked against the grammar; only when the grammar refuses it, apply the grammar to a
  fresh copy of the candidates and sample again — llama.cpp's own ``common_sampler`` does this,
  because applying a grammar to every token of a large vocabulary is slow.
* **Valid UTF-8 under a grammar** (:mod:`~worker.backends.pendra.utf8_guard`): a native
  ``logit_bias`` sampler bans, at a character boundary, the few tokens that would break UTF-8;
  inside a character, only the few tokens that continue it are sampled from.
* **Log probabilities**: llama.cpp's ``dist`` sampler normalises a copy of the raw candidates and
  ``top_k`` partially sorts it; the log-probabilities of the chosen token and of the top ones
  come from the raw logits and that normaliser. They describe the model's own distribution
  (before penalties, bias, grammar and temperature), as llama-server and vLLM report them.
"""

from __future__ import annotations

import ctypes
import math
import random
from dataclasses import dataclass

import llama_cpp
import numpy as np

from worker.backends.pendra import utf8_guard
from worker.backends.pendra.params import ChatParams
from worker.backends.pendra.runtime import REQUEST_TEXT, compile_grammar
from worker.errors import BadRequest, PendraError

PENALTY_LAST_N = 64  # tokens the repetition penalties look back over (llama-server's default)
_TOKEN_DATA = ctypes.sizeof(llama_cpp.llama_token_data)
_IMPOSSIBLE = -9999.0  # what OpenAI reports for a token the model gives no chance


def native_seed(seed: int | None) -> int:
    """A request's seed as llama.cpp's 32-bit one (LLAMA_DEFAULT_SEED means "random": avoided)."""
    if seed is None:
        return random.getrandbits(32) & 0xFFFFFFFE
    mixed = (seed ^ (seed >> 32)) & 0xFFFFFFFF
    return mixed if mixed != llama_cpp.LLAMA_DEFAULT_SEED else 0xFFFFFFFE


def build_chain(params: ChatParams, n_vocab: int) -> llama_cpp.llama_sampler_p:
    """The request's sampler chain; free it with :func:`free_sampler`."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    if params.logit_bias:
        biases = (llama_cpp.llama_logit_bias * len(params.logit_bias))()
        for i, (token, bias) in enumerate(params.logit_bias):
            biases[i].token = int(token)
            biases[i].bias = _bias_value(bias)
        add(chain, llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(biases), biases))
    if _has_penalties(params):
        add(
            chain,
            llama_cpp.llama_sampler_init_penalties(
                n_vocab,
                PENALTY_LAST_N,
                params.repeat_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            ),
        )
    if params.temperature <= 0.0:
        add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    if params.top_k > 0:
        add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0.0:
        add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
    add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
    add(chain, llama_cpp.llama_sampler_init_dist(native_seed(params.seed)))
    return chain


def _has_penalties(params: ChatParams) -> bool:
    return bool(params.frequency_penalty or params.presence_penalty or params.repeat_penalty != 1.0)


def _bias_value(bias: float) -> float:
    """A ``logit_bias`` entry as added to the logit. OpenAI: -100 bans the token; an added -100
    does not always (logits can be larger), so it becomes -inf."""
    return -math.inf if bias <= -100 else float(bias)


def free_sampler(chain: llama_cpp.llama_sampler_p) -> None:
    llama_cpp.llama_sampler_free(chain)


class GreedyArgmax:
    """What the chain ``logit_bias → greedy`` picks, computed over the logits row in place.

    Same answer as llama.cpp's greedy sampler: the biases are added in float32 in the request's
    order, and the first of equal maxima wins (numpy's argmax and llama.cpp's strict ``>`` scan
    agree). A row holding NaN is left to the native chain, whose scan skips NaN differently.
    """

    def __init__(self, n_vocab: int, logit_bias: list[list[float]]) -> None:
        self.n_vocab = n_vocab
        biased = [(int(t), _bias_value(b)) for t, b in logit_bias if 0 <= int(t) < n_vocab]
        self._ids = np.array([t for t, _ in biased], dtype=np.intp) if biased else None
        self._biases = np.array([b for _, b in biased], dtype=np.float32)

    @classmethod
    def applies(cls, params: ChatParams) -> bool:
        """Whether the request's chain is ``logit_bias → greedy`` (nothing stateful)."""
        return params.temperature <= 0.0 and not _has_penalties(params)

    def pick(self, ctx: llama_cpp.llama_context_p, index: int) -> int | None:
        """The token, or None to let the native chain decide (no logits row, or NaN in it)."""
        pointer = llama_cpp.llama_get_logits_ith(ctx, index)
        if not pointer:
            return None
        row = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        return biased_argmax(row, self._ids, self._biases)


def biased_argmax(row: np.ndarray, ids: np.ndarray | None, biases: np.ndarray) -> int | None:
    """The first index of the largest ``row[i] + bias[i]`` (``row`` itself is not modified), or
    None when that value is NaN (then the row holds NaN, which numpy ranks above everything)."""
    if ids is not None:
        row = row.copy()
        np.add.at(row, ids, biases)  # a repeated id adds up, as the chain's entries do
    token = int(row.argmax())
    if math.isnan(row[token]):
        return None
    return token


class _Candidates:
    """A ``llama_token_data_array`` over a buffer of ``capacity`` entries."""

    def __init__(self, capacity: int) -> None:
        self.buffer = (llama_cpp.llama_token_data * capacity)()
        self.address = ctypes.addressof(self.buffer)
        self.array = llama_cpp.llama_token_data_array(self.buffer, capacity, -1, False)
        self.pointer = ctypes.pointer(self.array)

    def reset(self, size: int) -> None:
        array = self.array
        array.data = self.buffer
        array.size = size
        array.selected = -1
        array.sorted = False

    def copy_from(self, other: _Candidates, size: int) -> None:
        ctypes.memmove(self.address, other.address, size * _TOKEN_DATA)
        self.reset(size)

    def selected(self) -> llama_cpp.llama_token_data:
        return self.array.data[self.array.selected]


class CandidateCapture:
    """A sampler that copies the candidate array llama.cpp built and picks its first entry.

    One per engine (all its sequences are sampled on its one thread, one after another), with
    the buffers sampling works in. ``llama_sampler_sample(capture.sampler, ctx, i)`` fills
    :attr:`raw` with every token's raw logit, in token order.
    """

    def __init__(self, n_vocab: int) -> None:
        self.n_vocab = n_vocab
        self.raw = _Candidates(n_vocab)
        self.work = _Candidates(n_vocab)
        self.probe = _Candidates(n_vocab)
        self.single = _Candidates(1)
        self.small: _Candidates | None = None
        self.size = 0
        self._name = b"pendra-capture"
        self._apply_cb = llama_cpp.llama_sampler_i_apply(self._apply)
        self._name_cb = llama_cpp.llama_sampler_i_name(lambda _s: self._name)
        self._iface = llama_cpp.llama_sampler_i(name=self._name_cb, apply=self._apply_cb)
        self.sampler = llama_cpp.llama_sampler_init(ctypes.pointer(self._iface), None)
        self._normaliser = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        llama_cpp.llama_sampler_chain_add(self._normaliser, llama_cpp.llama_sampler_init_dist(0))
        self._top: dict[int, llama_cpp.llama_sampler_p] = {}

    def _apply(self, _sampler: object, cur_p: object) -> None:
        array = cur_p.contents  # type: ignore[attr-defined]
        size = min(int(array.size), self.n_vocab)
        ctypes.memmove(self.raw.address, ctypes.addressof(array.data.contents), size * _TOKEN_DATA)
        self.size = size
        array.selected = 0

    def capture(self, ctx: llama_cpp.llama_context_p, index: int) -> int:
        llama_cpp.llama_sampler_sample(self.sampler, ctx, index)
        self.raw.reset(self.size)
        return self.size

    def subset(self, tokens: list[int]) -> _Candidates:
        """The captured raw candidates of ``tokens`` only (the capture is in token order)."""
        if self.small is None or self.small.array.size < len(tokens):
            self.small = _Candidates(max(len(tokens), 64))
        small = self.small
        raw = self.raw.buffer
        for i, token in enumerate(tokens):
            small.buffer[i] = raw[token]
        small.reset(len(tokens))
        return small

    def top(self, k: int) -> tuple[float, list[tuple[int, float]]]:
        """(log of the normaliser, the k most likely tokens with their log-probabilities)."""
        probe = self.probe
        probe.copy_from(self.raw, self.size)
        llama_cpp.llama_sampler_apply(self._normaliser, probe.pointer)
        sampler = self._top.get(k)
        if sampler is None:
            sampler = self._top[k] = llama_cpp.llama_sampler_init_top_k(k)
        llama_cpp.llama_sampler_apply(sampler, probe.pointer)
        data = probe.array.data
        best = data[0]
        # p = exp(logit - lse): lse from the best token, whose p never underflows.
        lse = best.logit - math.log(best.p) if best.p > 0 else best.logit
        entries = []
        for i in range(min(k, int(probe.array.size))):
            entry = data[i]
            entries.append((int(entry.id), _finite(entry.logit - lse)))
        return lse, entries

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self.sampler)
        llama_cpp.llama_sampler_free(self._normaliser)
        for sampler in self._top.values():
            llama_cpp.llama_sampler_free(sampler)
        self._top.clear()


def _piece(vocab: llama_cpp.llama_vocab_p, token: int, size: int = 64) -> bytes:
    """A token's bytes (control tokens: none), with a buffer of this call's own."""
    buffer = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, False)
    if n < 0:
        return _piece(vocab, token, -n)
    return buffer.raw[:n]


class Utf8Guard:
    """A vocabulary's UTF-8 classes as native samplers (built once per model, on first use:
    one pass over the vocabulary, a fraction of a second for 256k tokens)."""

    def __init__(self, vocab: llama_cpp.llama_vocab_p, n_vocab: int) -> None:
        banned, self.allowed = utf8_guard.classify(_piece(vocab, t) for t in range(n_vocab))
        biases = (llama_cpp.llama_logit_bias * max(1, len(banned)))()
        for i, token in enumerate(banned):
            biases[i].token = token
            biases[i].bias = -math.inf
        self.boundary = llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(banned), biases)

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self.boundary)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else _IMPOSSIBLE


def _chosen(candidates: _Candidates) -> int:
    array = candidates.array
    if not 0 <= array.selected < array.size or not math.isfinite(candidates.selected().logit):
        raise PendraError(
            "no token satisfies both the grammar and the request's logit_bias",
            hint="loosen logit_bias (a token the format needs is banned)",
        )
    return int(candidates.selected().id)


@dataclass(frozen=True)
class TokenLogprobs:
    token: int
    logprob: float
    top: list[tuple[int, float]]


class TokenSampler:
    """Samples one sequence's tokens: its chain, its grammar, its log probabilities."""

    def __init__(
        self,
        params: ChatParams,
        vocab: llama_cpp.llama_vocab_p,
        n_vocab: int,
        capture: CandidateCapture | None,
        grammar: str | None = None,
        guard: Utf8Guard | None = None,
    ) -> None:
        self.grammar = None
        if grammar:
            self.grammar = compile_grammar(vocab, grammar)
            if not self.grammar:
                raise BadRequest(
                    "llama.cpp could not compile the grammar for this request's "
                    "response_format or tools",
                    hint="simplify the JSON schema",
                    param="response_format",
                )
        self.chain = build_chain(params, n_vocab)
        self.greedy = (
            GreedyArgmax(n_vocab, params.logit_bias)
            if self.grammar is None and not params.logprobs and GreedyArgmax.applies(params)
            else None
        )
        self.vocab = vocab
        self.top_n = max(1, params.top_logprobs) if params.logprobs else 0
        self.wants_logprobs = params.logprobs
        self.top_logprobs = params.top_logprobs
        self.capture = capture if (self.grammar is not None or params.logprobs) else None
        if (self.grammar is not None or params.logprobs) and capture is None:
            raise RuntimeError("grammar and log probabilities need the engine's CandidateCapture")
        self.last: TokenLogprobs | None = None
        self.guard = guard if self.grammar is not None else None
        self.utf8: utf8_guard.State = None  # where the answer's bytes are inside a character

    def sample(self, ctx: llama_cpp.llama_context_p, index: int) -> int:
        """Sample, and accept, the next token from the logits at batch ``index``."""
        capture = self.capture
        if capture is None:
            if self.greedy is not None:
                token = self.greedy.pick(ctx, index)
                if token is not None:
                    return token  # (the chain is stateless: nothing to accept into it)
            return int(llama_cpp.llama_sampler_sample(self.chain, ctx, index))
        size = capture.capture(ctx, index)
        lse, top = capture.top(self.top_n) if self.wants_logprobs else (0.0, [])
        if self.grammar is None:
            llama_cpp.llama_sampler_apply(self.chain, capture.raw.pointer)
            token = int(capture.raw.selected().id)
        else:
            with REQUEST_TEXT:  # llama.cpp's grammar errors quote the answer so far
                token = self._sample_with_grammar(capture, size)
        llama_cpp.llama_sampler_accept(self.chain, token)
        if self.wants_logprobs:
            raw = llama_cpp.llama_get_logits_ith(ctx, index)[token]  # the model's own logit
            self.last = TokenLogprobs(token, _finite(raw - lse), top[: self.top_logprobs])
        return token

    def _sample_with_grammar(self, capture: CandidateCapture, size: int) -> int:
        guard = self.guard
        if guard is not None and self.utf8 is not None:
            token = self._continue_character(capture, guard)
        else:
            work = capture.work
            work.copy_from(capture.raw, size)
            if guard is not None:
                llama_cpp.llama_sampler_apply(guard.boundary, work.pointer)
            llama_cpp.llama_sampler_apply(self.chain, work.pointer)
            token = int(work.selected().id)
            single = capture.single
            single.reset(1)
            single.buffer[0] = llama_cpp.llama_token_data(token, 1.0, 0.0)
            llama_cpp.llama_sampler_apply(self.grammar, single.pointer)
            if single.buffer[0].logit == -math.inf:
                # The chain's pick breaks the grammar: mask with the grammar first, then sample.
                work.copy_from(capture.raw, size)
                if guard is not None:
                    llama_cpp.llama_sampler_apply(guard.boundary, work.pointer)
                llama_cpp.llama_sampler_apply(self.grammar, work.pointer)
                llama_cpp.llama_sampler_apply(self.chain, work.pointer)
                token = _chosen(work)
        if not llama_cpp.llama_vocab_is_eog(self.vocab, token):
            # (An end-of-generation token is only allowed once the grammar is complete, and
            # accepting it into the grammar would abort llama.cpp.)
            llama_cpp.llama_sampler_accept(self.grammar, token)
            if guard is not None:
                self._track(token)
        return token

    def _continue_character(self, capture: CandidateCapture, guard: Utf8Guard) -> int:
        """Inside a character: sample among the tokens that continue it validly."""
        assert self.utf8 is not None
        tokens = guard.allowed.get(self.utf8) or []
        if not tokens:
            raise PendraError("the model's vocabulary cannot finish a UTF-8 character here")
        small = capture.subset(tokens)
        llama_cpp.llama_sampler_apply(self.grammar, small.pointer)
        llama_cpp.llama_sampler_apply(self.chain, small.pointer)
        return _chosen(small)

    def _track(self, token: int) -> None:
        state = utf8_guard.advance(self.utf8, _piece(self.vocab, token))
        self.utf8 = None if state == utf8_guard.INVALID else state

    def close(self) -> None:
        if self.chain is not None:
            free_sampler(self.chain)
            self.chain = None  # type: ignore[assignment]
        if self.grammar is not None:
            free_sampler(self.grammar)
            self.grammar = None

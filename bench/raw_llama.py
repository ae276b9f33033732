"""The raw baselines: llama.cpp's C API through llama-cpp-python's ctypes bindings, nothing else.

A ``llama_decode`` loop with the native greedy sampler, the way llama.cpp's own examples decode;
no request parsing, no detokenisation, no threads, no event loop. The worker's path is measured
against this in the same run, on the same GGUF, with the same thread count and context settings.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

_BACKEND_READY = False


def _quiet_backend() -> None:
    global _BACKEND_READY
    if _BACKEND_READY:
        return
    llama_cpp.llama_backend_init()

    @llama_cpp.llama_log_callback
    def _drop(level: int, text: bytes, user: ctypes.c_void_p) -> None:
        return None

    globals()["_LOG_SINK"] = _drop  # keep the callback alive for native code
    llama_cpp.llama_log_set(_drop, ctypes.c_void_p(0))
    _BACKEND_READY = True


@dataclass(frozen=True)
class DecodeTiming:
    """One generation: when each token was sampled (seconds from the start of prefill)."""

    prompt_tokens: int
    token_times: list[float]

    @property
    def tokens(self) -> int:
        return len(self.token_times)


class RawModel:
    """One model + one context; ``n_seq`` sequences share a unified KV cache (like the worker)."""

    def __init__(self, path: Path, *, threads: int, n_ctx: int, n_seq: int = 1) -> None:
        _quiet_backend()
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = 0x7FFFFFFF if llama_cpp.llama_supports_gpu_offload() else 0
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = min(512, n_ctx)
        cparams.n_ubatch = min(512, n_ctx)
        cparams.n_seq_max = n_seq
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
        cparams.kv_unified = n_seq > 1
        cparams.swa_full = False  # as the worker and llama-server run it
        cparams.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise RuntimeError("llama.cpp could not create the context")
        self.n_seq = n_seq
        self.n_batch = int(llama_cpp.llama_n_batch(self.ctx))
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(max(512, n_seq), 0, n_seq)
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        self.sampler = chain

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buf = (llama_cpp.llama_token * (len(data) + 8))()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, len(buf), True, True)
        if n < 0:
            raise RuntimeError("tokenize failed")
        return list(buf[:n])

    def _add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        b = self.batch
        i = b.n_tokens
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = logits
        b.n_tokens = i + 1
        return i

    def _decode(self) -> None:
        rc = llama_cpp.llama_decode(self.ctx, self.batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def generate(self, prompts: list[list[int]], n_gen: int) -> list[DecodeTiming]:
        """Greedy-decode ``n_gen`` tokens for each prompt (one sequence each, decoded together in
        one batch per step, EOS ignored so every run does the same work). Times are seconds from
        the start of prefill, per sequence."""
        if not all(prompts) or n_gen < 1:
            raise ValueError("every prompt needs a token and n_gen must be at least 1")
        if len(prompts) > self.n_seq:
            raise ValueError(f"{len(prompts)} prompts but the context holds {self.n_seq}")
        llama_cpp.llama_memory_clear(self.memory, True)
        start = time.perf_counter()
        times: list[list[float]] = [[] for _ in prompts]
        # Prefill each prompt in n_batch-sized pieces; its first token is sampled from the
        # logits of its last piece, before another decode overwrites them.
        first: list[int] = []
        for seq, prompt in enumerate(prompts):
            for lo in range(0, len(prompt), self.n_batch):
                self.batch.n_tokens = 0
                piece = prompt[lo : lo + self.n_batch]
                for offset, token in enumerate(piece):
                    pos = lo + offset
                    index = self._add(token, pos, seq, pos == len(prompt) - 1)
                self._decode()
            first.append(llama_cpp.llama_sampler_sample(self.sampler, self.ctx, index))
            times[seq].append(time.perf_counter() - start)
        positions = [len(p) for p in prompts]
        sampled = first
        for _step in range(n_gen - 1):
            self.batch.n_tokens = 0
            for seq, token in enumerate(sampled):
                self._add(token, positions[seq], seq, True)
                positions[seq] += 1
            self._decode()
            sampled = []
            for seq in range(len(prompts)):  # batch index == seq: one token per sequence
                sampled.append(llama_cpp.llama_sampler_sample(self.sampler, self.ctx, seq))
                times[seq].append(time.perf_counter() - start)
        return [DecodeTiming(len(p), t) for p, t in zip(prompts, times, strict=True)]

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self.sampler)
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)

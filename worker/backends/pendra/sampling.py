"""Native llama.cpp sampler chains built from request parameters.

Sampling runs entirely in C (``llama_sampler_sample`` reads the logits in place), so no n_vocab
candidate array is built in Python per token (runtime.md §2.1).
"""

from __future__ import annotations

import random

import llama_cpp

from worker.backends.pendra.params import ChatParams


def build_sampler(params: ChatParams) -> llama_cpp.llama_sampler_p:
    """A sampler chain for one request; free it with :func:`free_sampler`."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    if params.frequency_penalty or params.presence_penalty or params.repeat_penalty != 1.0:
        add(
            chain,
            llama_cpp.llama_sampler_init_penalties(
                64, params.repeat_penalty, params.frequency_penalty, params.presence_penalty
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
    seed = params.seed if params.seed is not None else random.getrandbits(32)
    add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


def free_sampler(chain: llama_cpp.llama_sampler_p) -> None:
    llama_cpp.llama_sampler_free(chain)


def sample(chain: llama_cpp.llama_sampler_p, ctx: llama_cpp.llama_context_p, index: int) -> int:
    """Sample (and accept) the next token from the logits at batch ``index``."""
    return int(llama_cpp.llama_sampler_sample(chain, ctx, index))

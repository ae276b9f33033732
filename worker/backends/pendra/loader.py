"""Inside a runner: load the model the worker asked for and start the engine that serves it.

The worker has already decided the sizes (KV pool, slots, per-request context: see
:mod:`~worker.backends.pendra.memory`); this module turns that :class:`LoadSpec` into a llama.cpp
model + context, picks the engine (embeddings, continuous batching, or one sequence at a time for
models the batched engine cannot serve) and the chat template.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.backends.pendra.chat_format import (
    PromptRenderer,
    choose_fallback,
    normalise_format_name,
)
from worker.backends.pendra.engines import EmbedEngine, Engine, SerialChatEngine, Stats
from worker.backends.pendra.jobs import Outbox
from worker.backends.pendra.runtime import LlamaRuntime, LoadOptions
from worker.backends.pendra.spec import LoadSpec
from worker.backends.pendra.tool_calls import MARKER_TOKENS, detect_format
from worker.backends.pendra.tool_prompt import TemplateCaps, probe_caps
from worker.errors import ModelLoadError

log = logging.getLogger(__name__)

EMBED_SEQ_MAX = 16
N_BATCH = 512
POOLING_NONE = 0  # llama_pooling_type (as in worker.modelstore.facts; not imported: runner-light)


@dataclass
class Loaded:
    """A loaded model inside a runner: its engine and, for chat models, its template."""

    engine: Engine
    runtime: LlamaRuntime
    renderer: PromptRenderer | None
    caps: TemplateCaps = field(default_factory=TemplateCaps)
    tool_format: str = "hermes"
    markers: frozenset[int] = frozenset()  # tool-call marker tokens that are control tokens

    def info(self) -> dict[str, Any]:
        runtime = self.runtime
        return {
            "engine": self.engine.kind,
            "n_vocab": runtime.n_vocab,
            "n_ctx_train": runtime.n_ctx_train,
            "n_embd": runtime.n_embd,
            "n_ctx": runtime.n_ctx,
            "n_batch": runtime.n_batch,
            "n_seq_max": runtime.n_seq_max,
            "context_length": self.engine.slot_ctx,
            "kv_tokens": self.engine.pool_tokens,
            "template": self.renderer.source if self.renderer else None,
            "tool_format": self.tool_format if self.renderer else None,
            "native_tools": self.caps.native_tools,
        }


def load(spec: LoadSpec, outbox: Outbox, on_stats: Any = None) -> Loaded:
    """Blocking: load the model and start its engine. Raises :class:`ModelLoadError`."""
    if spec.task == "embedding":
        options = LoadOptions(
            n_ctx=spec.context_length,
            n_seq_max=EMBED_SEQ_MAX,
            n_batch=spec.context_length,  # non-causal models need a whole input in one ubatch
            n_ubatch=spec.context_length,
            gpu_layers=spec.gpu_layers,
            threads=spec.threads,
            embeddings=True,
            force_mean_pooling=spec.pooling_type in (None, POOLING_NONE),
            kv_type=spec.kv_type,
        )
        runtime = _runtime(spec, options)
        engine: Engine = EmbedEngine(runtime, spec.model_id, outbox, on_stats=on_stats)
        engine.start()
        return Loaded(engine, runtime, None)
    if spec.batched and spec.slots > 1:
        from worker.backends.pendra.batched import BatchedChatEngine, batched_supported

        options = _chat_options(spec, spec.kv_tokens, spec.slots)
        runtime = _runtime(spec, options)
        reason = batched_supported(runtime)
        if reason is None:
            engine = BatchedChatEngine(
                runtime,
                spec.model_id,
                outbox,
                pool_tokens=spec.kv_tokens,
                slot_ctx=min(spec.context_length, spec.kv_tokens),
                on_stats=on_stats,
                prefix_cache=spec.prefix_cache,
            )
            return _started(engine, runtime, spec)
        log.info("serving %s without batching: %s", spec.model_id, reason)
        runtime.close()
    options = _chat_options(spec, spec.context_length, 1)
    runtime = _runtime(spec, options)
    engine = SerialChatEngine(
        runtime,
        spec.model_id,
        outbox,
        pool_tokens=spec.context_length,
        slot_ctx=spec.context_length,
        on_stats=on_stats,
    )
    return _started(engine, runtime, spec)


def _chat_options(spec: LoadSpec, n_ctx: int, n_seq: int) -> LoadOptions:
    return LoadOptions(
        n_ctx=n_ctx,
        n_seq_max=n_seq,
        n_batch=N_BATCH,
        n_ubatch=spec.n_ubatch,
        gpu_layers=spec.gpu_layers,
        threads=spec.threads,
        kv_type=spec.kv_type,
    )


def _started(engine: Engine, runtime: LlamaRuntime, spec: LoadSpec) -> Loaded:
    renderer = _renderer(runtime, spec)
    caps = probe_caps(lambda messages, **context: renderer.render(messages, **context).text)
    template = renderer.template if renderer.source == "gguf" else None
    tool_format = detect_format(template, caps.native_tools, spec.architecture)
    markers = runtime.special_tokens(MARKER_TOKENS)
    engine.start()
    return Loaded(engine, runtime, renderer, caps, tool_format, markers)


def _runtime(spec: LoadSpec, options: LoadOptions) -> LlamaRuntime:
    try:
        return LlamaRuntime(Path(spec.path), spec.model_id, options)
    except ModelLoadError:
        raise
    except Exception as exc:  # anything native-side that surfaced as a Python error
        raise ModelLoadError(f"loading the model {spec.model_id!r} failed: {exc}") from None


def _renderer(runtime: LlamaRuntime, spec: LoadSpec) -> PromptRenderer:
    if spec.chat_format:
        fallback = normalise_format_name(spec.chat_format)
        template = None  # an explicit format in the sidecar wins over the GGUF's template
    else:
        fallback = choose_fallback(spec.architecture, runtime.is_single_token)
        template = runtime.chat_template()
    renderer = PromptRenderer(
        template,
        fallback,
        bos_token=runtime.token_text(runtime.bos),
        eos_token=runtime.token_text(runtime.eos),
    )
    if not template:
        log.info("%s has no chat template; using the %s format", spec.model_id, fallback)
    return renderer


__all__ = ["EMBED_SEQ_MAX", "LoadSpec", "Loaded", "Stats", "load"]

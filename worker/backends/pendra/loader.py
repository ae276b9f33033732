"""Loading a stored model into an engine: memory check, context sizing, template, engine choice."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psutil

from worker.backends.base import Task
from worker.backends.pendra.chat_format import (
    PromptRenderer,
    choose_fallback,
    normalise_format_name,
)
from worker.backends.pendra.engines import EmbedEngine, Engine, SerialChatEngine
from worker.backends.pendra.runtime import (
    LlamaRuntime,
    LoadOptions,
    default_threads,
    gpu_offload_supported,
)
from worker.errors import ModelLoadError
from worker.modelstore import StoredModel
from worker.modelstore.facts import POOLING_NONE
from worker.settings import Settings

log = logging.getLogger(__name__)

GIB = 1024**3
EMBED_SEQ_MAX = 16


@dataclass(frozen=True)
class EngineConfig:
    """The loading knobs, resolved from settings once."""

    max_context: int
    gpu_layers: int
    threads: int
    parallel: int
    batched: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, *, batched: bool = True) -> EngineConfig:
        if settings.gpu_layers is not None:
            gpu_layers = settings.gpu_layers
        else:
            gpu_layers = -1 if gpu_offload_supported() else 0
        return cls(
            max_context=settings.max_context,
            gpu_layers=gpu_layers,
            threads=settings.threads or default_threads(),
            parallel=max(1, settings.parallel),
            batched=batched,
        )


def check_memory(model: str, size_bytes: int, available_bytes: int, offloading: bool) -> None:
    """Refuse to load a model that cannot fit in RAM (pure). With GPU offload the weights go to
    VRAM, which llama.cpp checks itself, so only the CPU case is checked here."""
    if offloading:
        return
    needed = int(size_bytes * 1.1) + 256 * 1024**2  # weights + KV/compute buffers headroom
    if needed > available_bytes:
        raise ModelLoadError(
            f"the model {model!r} needs about {needed / GIB:.1f} GiB of memory to load, but only "
            f"{available_bytes / GIB:.1f} GiB is available",
            hint="free memory (fewer loaded models: builtin.max_loaded_models), or install a "
            "smaller quantisation of the model",
        )


def context_size(model: StoredModel, n_ctx_train: int | None, max_context: int) -> int:
    """The per-sequence context: the model's own length capped by ``builtin.max_context``."""
    own = model.context_length or n_ctx_train or max_context
    return max(64, min(own, max_context))


def load_engine(model: StoredModel, config: EngineConfig) -> Engine:
    """Blocking: load ``model`` and start its engine. Raises :class:`ModelLoadError`."""
    if model.error:
        raise ModelLoadError(f"the model {model.id!r} cannot be loaded: {model.error}")
    offloading = config.gpu_layers != 0
    check_memory(model.id, model.size_bytes, psutil.virtual_memory().available, offloading)
    n_ctx = context_size(model, None, config.max_context)
    facts = model.facts
    if model.task is Task.EMBEDDING:
        pooling = facts.pooling_type if facts else None
        options = LoadOptions(
            n_ctx=n_ctx,
            n_seq_max=EMBED_SEQ_MAX,
            n_batch=n_ctx,  # non-causal models need a whole input in one micro-batch
            gpu_layers=config.gpu_layers,
            threads=config.threads,
            embeddings=True,
            force_mean_pooling=pooling in (None, POOLING_NONE),
        )
        return EmbedEngine(_runtime(model, options), model.id)
    if config.batched and config.parallel > 1:
        from worker.backends.pendra.batched import BatchedChatEngine, batched_supported

        options = LoadOptions(
            n_ctx=n_ctx * config.parallel,
            n_seq_max=config.parallel,
            n_batch=512,
            gpu_layers=config.gpu_layers,
            threads=config.threads,
        )
        runtime = _runtime(model, options)
        reason = batched_supported(runtime)
        if reason is None:
            engine: Engine = BatchedChatEngine(runtime, model.id, slot_ctx=n_ctx)
            _attach_renderer(engine, model)
            return engine
        log.info("serving %s without batching: %s", model.id, reason)
        runtime.close()
    options = LoadOptions(
        n_ctx=n_ctx, n_seq_max=1, n_batch=512, gpu_layers=config.gpu_layers, threads=config.threads
    )
    engine = SerialChatEngine(_runtime(model, options), model.id)
    _attach_renderer(engine, model)
    return engine


def _runtime(model: StoredModel, options: LoadOptions) -> LlamaRuntime:
    try:
        return LlamaRuntime(model.path, model.id, options)
    except ModelLoadError:
        raise
    except Exception as exc:  # anything native-side that surfaced as a Python error
        raise ModelLoadError(f"loading the model {model.id!r} failed: {exc}") from None


def _attach_renderer(engine: Engine, model: StoredModel) -> None:
    runtime = engine.runtime
    architecture = model.facts.architecture if model.facts else None
    if model.chat_format:
        fallback = normalise_format_name(model.chat_format)
        template = None  # an explicit format in the sidecar wins over the GGUF's template
    else:
        fallback = choose_fallback(architecture, runtime.is_single_token)
        template = runtime.chat_template()
    engine.renderer = PromptRenderer(
        template,
        fallback,
        bos_token=runtime.token_text(runtime.bos),
        eos_token=runtime.token_text(runtime.eos),
    )
    if not template:
        log.info("%s has no chat template; using the %s format", model.id, fallback)

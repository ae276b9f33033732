"""A loaded GGUF on llama.cpp's C API (through llama-cpp-python's ctypes bindings).

Why the low-level API and not ``llama_cpp.Llama``: ``Llama`` runs one sequence per context (its
``n_seq_max`` is fixed at 1 for generation), detokenises the whole completion again on every
streamed token (quadratic, runtime.md §7) and builds an n_vocab candidate array in Python per
token. Here the worker owns the model, the context, the batch and a native sampler chain, so the
same code serves one sequence (the serial engine) or many (the batched engine).

Nothing in this module is thread-safe: a :class:`LlamaRuntime` belongs to exactly one engine
thread, which is the only thread that ever touches its context (llama.cpp crashes otherwise).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llama_cpp

from worker.errors import ModelLoadError

if TYPE_CHECKING:
    from worker.backends.pendra.sampling import CandidateCapture, Utf8Guard

log = logging.getLogger(__name__)
native_log = logging.getLogger("worker.backends.pendra.llama_cpp")

_INIT_LOCK = threading.Lock()
_INITIALISED = False
_LOG_CALLBACK: object | None = None  # kept referenced: llama.cpp calls it from native code


_request_text = threading.local()
"""Set on a thread while llama.cpp works on a request's own text (see :class:`RequestText`)."""


class RequestText:
    """While llama.cpp compiles or runs a request's grammar, its log lines quote the request:
    the grammar, built from the JSON schema or tools (property names, enum values, patterns),
    or the text generated so far. Those lines are dropped, never logged, so that prompts and
    answers stay out of the worker's log (private inference promises as much). A reentrant,
    per-thread scope: llama.cpp calls the log callback on the thread that called into it."""

    __slots__ = ()

    def __enter__(self) -> None:
        _request_text.depth = getattr(_request_text, "depth", 0) + 1

    def __exit__(self, *_exc: object) -> None:
        _request_text.depth -= 1


REQUEST_TEXT = RequestText()


_STDERR_LOCK = threading.Lock()


def compile_grammar(vocab: Any, grammar: str) -> Any:
    """llama.cpp's grammar sampler for ``grammar`` (a null pointer when llama.cpp refuses it),
    with nothing of the grammar logged.

    A grammar llama.cpp cannot parse is printed whole, with the error, straight to the
    process's stderr (not through the log callback), and the runner's stderr is the worker's
    log. So while it compiles, stderr (fd 2) points at /dev/null; under a lock, because the
    redirection is process-wide and each caller restores what it found.
    """
    with REQUEST_TEXT, _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            return llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def native_lines_dropped() -> int:
    """How many llama.cpp log lines this thread dropped because they quoted a request."""
    return int(getattr(_request_text, "dropped", 0))


def _route_native_logs(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    if getattr(_request_text, "depth", 0):
        _request_text.dropped = getattr(_request_text, "dropped", 0) + 1
        return
    # llama.cpp is chatty at load; keep its lines at debug, its errors as warnings.
    message = text.decode("utf-8", errors="replace").rstrip()
    if message:
        # ggml levels: 1 debug, 2 info, 3 warn, 4 error, 5 continuation.
        native_log.log(logging.WARNING if level in (3, 4) else logging.DEBUG, "%s", message)


def init_backend() -> None:
    """Initialise llama.cpp once per process and route its log lines into Python logging."""
    global _INITIALISED, _LOG_CALLBACK
    with _INIT_LOCK:
        if _INITIALISED:
            return
        llama_cpp.llama_backend_init()
        _LOG_CALLBACK = llama_cpp.llama_log_callback(_route_native_logs)
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
        _INITIALISED = True


def gpu_offload_supported() -> bool:
    init_backend()
    return bool(llama_cpp.llama_supports_gpu_offload())


def default_threads() -> int:
    """Physical cores (see :func:`worker.hardware.physical_cores`)."""
    from worker.hardware import physical_cores

    return physical_cores()


KV_TYPES = {"f16": 1, "q8_0": 8}  # ggml_type ids of the KV cache types offered


@dataclass(frozen=True)
class LoadOptions:
    """How to load one model: all explicit, because llama.cpp's defaults are not ours."""

    n_ctx: int
    n_seq_max: int = 1
    n_batch: int = 512
    n_ubatch: int = 512
    gpu_layers: int = 0
    threads: int = 1
    embeddings: bool = False
    force_mean_pooling: bool = False
    kv_type: str = "f16"


class LlamaRuntime:
    """One model + one context + its vocabulary, owned by a single thread."""

    def __init__(self, path: Path, model_name: str, options: LoadOptions) -> None:
        init_backend()
        self.path = path
        self.name = model_name
        self.options = options
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = 0x7FFFFFFF if options.gpu_layers < 0 else options.gpu_layers
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
        if not model:
            raise ModelLoadError(
                f"llama.cpp could not load the model {model_name!r} from {path.name}",
                hint="the file may be corrupt, truncated, of an architecture this llama.cpp build "
                "does not know, or too big for memory; see `pendra logs` for llama.cpp's reason",
            )
        self.model = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(model))
        self.n_embd = int(llama_cpp.llama_model_n_embd(model))
        n_ctx = options.n_ctx
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = min(options.n_batch, n_ctx)
        cparams.n_ubatch = min(options.n_ubatch, options.n_batch, n_ctx)
        cparams.n_seq_max = options.n_seq_max
        cparams.n_threads = options.threads
        cparams.n_threads_batch = options.threads
        cparams.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
        cparams.kv_unified = options.n_seq_max > 1
        # Sliding-window layers keep only the window (per sequence) instead of the whole context:
        # a fraction of the memory on Gemma-style models. Sequences are only ever removed whole,
        # and a partial removal that the cache refuses falls back to reprocessing the prompt.
        cparams.swa_full = False
        cparams.type_k = KV_TYPES[options.kv_type]
        cparams.type_v = KV_TYPES[options.kv_type]
        cparams.no_perf = True
        if options.embeddings:
            cparams.embeddings = True
            if options.force_mean_pooling:
                cparams.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise ModelLoadError(
                f"llama.cpp loaded {model_name!r} but could not create a context of {n_ctx} "
                f"tokens x {options.n_seq_max} sequences",
                hint="lower builtin.max_context or builtin.parallel in config.toml, or free memory",
            )
        self.ctx = ctx
        self.memory = llama_cpp.llama_get_memory(ctx)
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self.n_batch = int(llama_cpp.llama_n_batch(ctx))
        self.n_seq_max = int(llama_cpp.llama_n_seq_max(ctx))
        self.has_encoder = bool(llama_cpp.llama_model_has_encoder(model))
        self.has_decoder = bool(llama_cpp.llama_model_has_decoder(model))
        self.pooling_type = int(llama_cpp.llama_pooling_type(ctx))
        self.bos = int(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos = int(llama_cpp.llama_vocab_eos(self.vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.recurrent = bool(
            llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model)
        )
        self.n_swa = int(llama_cpp.llama_model_n_swa(model))
        self._piece_buf = ctypes.create_string_buffer(256)
        self._candidates: CandidateCapture | None = None
        self._utf8_guard: Utf8Guard | None = None
        self._closed = False

    # -- metadata -------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        size = 1024
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_model_meta_val_str(self.model, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", errors="replace")
            size = n + 1

    def chat_template(self) -> str | None:
        raw = llama_cpp.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8", errors="replace") if raw else None

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        raw = llama_cpp.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    # -- tokens ---------------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 8
        buf = (llama_cpp.llama_token * n_max)()
        n = llama_cpp.llama_tokenize(
            self.vocab, data, len(data), buf, n_max, add_special, parse_special
        )
        if n < 0:
            n_max = -n
            buf = (llama_cpp.llama_token * n_max)()
            n = llama_cpp.llama_tokenize(
                self.vocab, data, len(data), buf, n_max, add_special, parse_special
            )
        return list(buf[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes one token renders to (control tokens render to nothing unless ``special``)."""
        buf = self._piece_buf
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            self._piece_buf = buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def candidates(self) -> CandidateCapture:
        """The buffers grammar and log-probability sampling work in (owner thread only)."""
        if self._candidates is None:
            from worker.backends.pendra.sampling import CandidateCapture

            self._candidates = CandidateCapture(self.n_vocab)
        return self._candidates

    def utf8_guard(self) -> Utf8Guard:
        """The vocabulary's UTF-8 classes for grammar-constrained sampling (owner thread only)."""
        if self._utf8_guard is None:
            from worker.backends.pendra.sampling import Utf8Guard

            self._utf8_guard = Utf8Guard(self.vocab, self.n_vocab)
        return self._utf8_guard

    def special_tokens(self, texts: Iterable[str]) -> frozenset[int]:
        """Ids of those ``texts`` that are one control token of this vocabulary."""
        found = set()
        for text in texts:
            tokens = self.tokenize(text, add_special=False, parse_special=True)
            if len(tokens) == 1 and self.is_control(tokens[0]):
                found.add(tokens[0])
        return frozenset(found)

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def is_control(self, token: int) -> bool:
        """A control (or unknown) token: what only a chat template may produce."""
        attrs = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
        return bool(int(llama_cpp.llama_vocab_get_attr(self.vocab, token)) & attrs)

    def strips(self, token: int) -> tuple[bool, bool]:
        """Whether the tokenizer swallows whitespace left / right of this special token."""
        attr = int(llama_cpp.llama_vocab_get_attr(self.vocab, token))
        return (
            bool(attr & llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP),
            bool(attr & llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP),
        )

    def set_threads(self, threads: int) -> None:
        """Decode and batch threads for the next steps (owner thread only)."""
        llama_cpp.llama_set_n_threads(self.ctx, threads, threads)

    def threads(self) -> tuple[int, int]:
        """(decode threads, batch threads) the context uses now."""
        return int(llama_cpp.llama_n_threads(self.ctx)), int(
            llama_cpp.llama_n_threads_batch(self.ctx)
        )

    def is_single_token(self, text: str) -> bool:
        """Whether ``text`` is one special token of this vocabulary (chat markers)."""
        return len(self.tokenize(text, add_special=False, parse_special=True)) == 1

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._candidates is not None:
            self._candidates.close()
            self._candidates = None
        if self._utf8_guard is not None:
            self._utf8_guard.close()
            self._utf8_guard = None
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


class TokenBatch:
    """A reusable ``llama_batch`` with a Python-friendly ``add``."""

    def __init__(self, capacity: int, n_seq_max: int = 1) -> None:
        self.capacity = capacity
        self.batch = llama_cpp.llama_batch_init(capacity, 0, n_seq_max)
        self._freed = False

    def clear(self) -> None:
        self.batch.n_tokens = 0

    @property
    def size(self) -> int:
        return int(self.batch.n_tokens)

    def add(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        """Append one token; returns its index in the batch (for sampling its logits)."""
        b = self.batch
        i = b.n_tokens
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = logits
        b.n_tokens = i + 1
        return i

    def free(self) -> None:
        if not self._freed:
            self._freed = True
            llama_cpp.llama_batch_free(self.batch)


def decode(runtime: LlamaRuntime, batch: TokenBatch) -> None:
    """Run one batch through the model; a failure becomes a clear error, not a crash."""
    if runtime.has_encoder and not runtime.has_decoder:
        rc = llama_cpp.llama_encode(runtime.ctx, batch.batch)
    else:
        rc = llama_cpp.llama_decode(runtime.ctx, batch.batch)
    if rc != 0:
        raise DecodeError(rc)


class DecodeError(RuntimeError):
    """llama_decode failed (1: no KV slot for the batch; <0: an error)."""

    def __init__(self, rc: int) -> None:
        reason = "no room in the KV cache" if rc == 1 else f"error code {rc}"
        super().__init__(f"llama_decode failed: {reason}")
        self.rc = rc

"""A model runner: the process that owns one loaded model (llama.cpp lives here, not in the worker).

The worker starts ``python -m worker.backends.pendra.runner --fd N`` with one end of a Unix
socket pair as fd N and a scrubbed environment (:func:`worker.child_env.child_env`). The runner
says ``hello`` (what its llama.cpp build can do: the worker sizes the model's memory from it),
then waits for ``load``, loads the model, answers ``ready`` (or ``load_failed``) and serves
``job``/``cancel``/``threads`` until ``shutdown`` or until the worker's end of the socket
closes. Anything that kills llama.cpp — a SIGBUS from a model file overwritten in place, a
``GGML_ABORT`` on an odd GGUF, the OOM killer — kills this process only; the worker sees the
socket close and the exit status, and fails just this model's requests.

Inside, :class:`RunnerCore` is the same whether it runs in its own process (here) or, with
``builtin.isolation = "none"``, on threads of the worker: a reader hands control messages to it,
a prep thread renders and tokenizes requests (so a long prompt never stalls decoding), and the
engine thread decodes and sends output through the sink.

Log lines go to stderr as ``<level letter> <logger>: <message>``; llama.cpp's own lines (and
anything native code prints before dying) are what the worker quotes when the runner crashes.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import socket
import sys
import threading
from typing import Any

from worker.backends.pendra import wire
from worker.backends.pendra.jobs import ChatJob, EmbedJob, Job, Outbox, Sink, error_payload
from worker.errors import BadRequest, ModelLoadError, PendraError

log = logging.getLogger(__name__)

_BUFFER_LINE = re.compile(r"(KV|compute) buffer size\s*=\s*([0-9.]+) MiB")


class RunnerCore:
    """One loaded model: the engine, the prep thread, and the table of live jobs."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.outbox = Outbox(sink)
        self._prep_outbox = Outbox(sink)
        self.loaded: Any = None
        self.model_id = "?"
        self._jobs: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._prep: queue.Queue[tuple[Job, dict[str, Any]] | None] = queue.Queue()
        self._prep_thread = threading.Thread(
            target=self._prep_main, name="pendra-prep", daemon=True
        )
        self.buffers = {"KV": 0.0, "compute": 0.0}

    # -- loading --------------------------------------------------------------------------------
    def load(self, message: dict[str, Any]) -> dict[str, Any]:
        """Load the model; returns the ``ready`` message. Raises :class:`ModelLoadError`."""
        from worker.backends.pendra import loader
        from worker.backends.pendra.runtime import native_log

        spec = loader.LoadSpec.from_message(message)
        self.model_id = spec.model_id
        counter = _BufferCounter(self.buffers)
        native_log.addHandler(counter)
        try:
            self.loaded = loader.load(spec, self.outbox, on_stats=self._stats)
        finally:
            native_log.removeHandler(counter)
        self._prep_thread.start()
        info = self.loaded.info()
        info["kv_bytes"] = int(self.buffers["KV"] * 1024**2) or None
        info["compute_bytes"] = int(self.buffers["compute"] * 1024**2) or None
        return {"op": "ready", **info}

    # -- control messages from the worker -------------------------------------------------------
    def handle(self, message: dict[str, Any]) -> bool:
        """Act on one control message; returns False when the runner should stop."""
        op = message["op"]
        if op == "job":
            self._accept(int(message["job"]), message.get("spec") or {})
        elif op == "cancel":
            with self._lock:
                job = self._jobs.get(int(message["job"]))
            if job is not None:
                job.cancelled.set()
        elif op == "threads":
            if self.loaded is not None:
                self.loaded.engine.set_threads(int(message["threads"]))
        elif op == "shutdown":
            return False
        else:
            log.warning("ignoring an unknown control message %r", op)
        return True

    def close(self) -> None:
        """Cancel whatever is running and free the model."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancelled.set()
        self._prep.put(None)
        if self.loaded is not None:
            self.loaded.engine.close()
            self.loaded = None

    # -- jobs -----------------------------------------------------------------------------------
    def _accept(self, job_id: int, spec: dict[str, Any]) -> None:
        kind = spec.get("kind")
        job: Job
        if kind == "chat":
            job = ChatJob(job_id, self.outbox, self._forget)
        elif kind == "embed":
            job = EmbedJob(job_id, self.outbox, self._forget)
        else:
            self.sink.events(
                [(job_id, wire.ERROR, error_payload(BadRequest(f"unknown job {kind!r}")))]
            )
            return
        with self._lock:
            self._jobs[job_id] = job
        self._prep.put((job, spec))

    def _forget(self, job_id: int) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def _prep_main(self) -> None:
        while True:
            item = self._prep.get()
            if item is None:
                return
            job, spec = item
            if job.cancelled.is_set():
                job.discard()
                continue
            try:
                if isinstance(job, ChatJob):
                    self._prepare_chat(job, spec)
                else:
                    assert isinstance(job, EmbedJob)
                    self._prepare_embed(job, spec)
            except Exception as exc:
                if not isinstance(exc, PendraError):
                    log.exception("preparing a request for %s failed", self.model_id)
                job.outbox = self._prep_outbox  # this thread's outbox, not the engine's
                job.fail(exc)
                self._prep_outbox.flush()
                continue
            self.loaded.engine.submit(job)

    def _prepare_chat(self, job: ChatJob, spec: dict[str, Any]) -> None:
        from worker.backends.pendra.params import ChatParams

        params = ChatParams(**spec["params"])
        loaded = self.loaded
        runtime = loaded.runtime
        stops: tuple[str, ...] = ()
        if params.prompt is not None:
            tokens = self._raw_prompt(params.prompt)
        else:
            tokens, stops = self._chat_prompt(params)
        limit = loaded.engine.slot_ctx
        if len(tokens) >= limit:
            raise BadRequest(
                f"the prompt is {len(tokens)} tokens but {params.model!r} takes at most {limit} "
                "tokens of context here (prompt + answer)",
                hint="shorten the conversation, or raise builtin.max_context if the model and "
                "the memory allow",
            )
        grammar = spec.get("grammar")
        if grammar:
            _check_grammar(runtime, grammar)
        room = limit - len(tokens)
        job.params = params
        job.prompt = tokens
        job.stops = [*params.stop, *stops]
        job.max_new = min(params.max_tokens, room) if params.max_tokens else room
        job.capped = params.max_tokens is not None and params.max_tokens > room
        job.grammar = grammar or None
        job.visible = loaded.markers if params.calls_tools else frozenset()

    def _chat_prompt(self, params: Any) -> tuple[list[int], tuple[str, ...]]:
        from worker.backends.pendra.prompt import render_pieces, tokenize_pieces
        from worker.backends.pendra.tool_prompt import template_inputs

        loaded = self.loaded
        runtime, renderer = loaded.runtime, loaded.renderer
        messages, context = template_inputs(
            params.messages,
            params.tools,
            choice=params.tool_choice,
            name=params.tool_name,
            parallel=params.parallel_tool_calls,
            caps=loaded.caps,
        )
        stops: tuple[str, ...] = ()

        def render(conversation: list[dict[str, Any]]) -> str:
            nonlocal stops
            rendered = renderer.render(conversation, **context)
            stops = rendered.stops
            return rendered.text

        tokens = tokenize_pieces(runtime, render_pieces(render, messages))
        if runtime.add_bos and runtime.bos >= 0 and (not tokens or tokens[0] != runtime.bos):
            tokens.insert(0, runtime.bos)
        return tokens, stops

    def _raw_prompt(self, prompt: str | list[int]) -> list[int]:
        """A legacy completion's prompt: as written (special tokens included), BOS as the
        model wants it; or token ids as given."""
        runtime = self.loaded.runtime
        if isinstance(prompt, str):
            tokens = runtime.tokenize(prompt, add_special=True, parse_special=True)
        else:
            tokens = list(prompt)
            bad = next((i for i, t in enumerate(tokens) if not 0 <= t < runtime.n_vocab), None)
            if bad is not None:
                raise BadRequest(
                    f"'prompt[{bad}]' is {tokens[bad]}, not a token id of {self.model_id!r} "
                    f"(0 to {runtime.n_vocab - 1})",
                    param="prompt",
                )
        if not tokens:
            raise BadRequest("'prompt' is empty: send some text", param="prompt")
        return tokens

    def _prepare_embed(self, job: EmbedJob, spec: dict[str, Any]) -> None:
        runtime = self.loaded.runtime
        inputs: list[list[int]] = []
        for i, item in enumerate(spec.get("inputs") or []):
            if isinstance(item, str):
                tokens = runtime.tokenize(item, add_special=True, parse_special=False)
            else:
                tokens = list(item)
                bad = next(
                    (
                        j
                        for j, t in enumerate(tokens)
                        if not isinstance(t, int) or not 0 <= t < runtime.n_vocab
                    ),
                    None,
                )
                if bad is not None:
                    raise BadRequest(
                        f"'input[{i}][{bad}]' is {tokens[bad]!r}, not a token id of "
                        f"{self.model_id!r} (0 to {runtime.n_vocab - 1})"
                    )
            if not tokens:
                raise BadRequest(f"'input[{i}]' has no tokens")
            if len(tokens) > runtime.n_batch:
                raise BadRequest(
                    f"'input[{i}]' is {len(tokens)} tokens; {self.model_id!r} embeds at most "
                    f"{runtime.n_batch} tokens per input here"
                )
            inputs.append(tokens)
        job.inputs = inputs

    def _stats(self, stats: dict[str, Any]) -> None:
        self.sink.control({"op": "stats", **stats})


def _check_grammar(runtime: Any, grammar: str) -> None:
    """Compile the grammar once here, so one llama.cpp refuses is this request's 400."""
    import llama_cpp

    from worker.backends.pendra.runtime import compile_grammar

    sampler = compile_grammar(runtime.vocab, grammar)
    if not sampler:
        log.warning(
            "llama.cpp could not compile a request's grammar (its messages quote the request's "
            "schema, so they are not logged); the client was told to simplify the schema"
        )
        raise BadRequest(
            "llama.cpp could not compile the grammar of this request's response_format or tools",
            hint="simplify the JSON schema: the pattern, the nesting, or the number of properties",
            param="response_format",
        )
    llama_cpp.llama_sampler_free(sampler)


class _BufferCounter(logging.Handler):
    """Adds up llama.cpp's "KV buffer size" / "compute buffer size" lines while a model loads."""

    def __init__(self, into: dict[str, float]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        match = _BUFFER_LINE.search(record.getMessage())
        if match:
            self.into[match.group(1)] += float(match.group(2))


# --------------------------------------------------------------------------------------------------
# The process: socket, reader loop, exit.


class SocketSink:
    """Frames to the worker over the socket, from any thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def control(self, message: dict[str, Any]) -> None:
        self._send(wire.control_frame(message))

    def events(self, entries: list[wire.Entry]) -> None:
        self._send(wire.events_frame(entries))

    def _send(self, frame: bytes) -> None:
        try:
            with self._lock:
                self.sock.sendall(frame)
        except OSError:
            os._exit(0)  # the worker is gone: nobody to serve


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the worker dies, even by kill -9 (no orphaned runners)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the worker died before the prctl took effect
        os._exit(0)


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname).1s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def llama_unavailable(exc: BaseException) -> ModelLoadError:
    """What a user reads when llama.cpp's shared library cannot be loaded in this environment."""
    detail = str(exc).strip() or type(exc).__name__
    if "libgomp" in detail:
        hint = (
            "install the GNU OpenMP runtime llama.cpp links against (Debian/Ubuntu: "
            "`sudo apt install libgomp1`; Fedora/RHEL: `sudo dnf install libgomp`), then retry"
        )
    elif "libcuda" in detail or "libcublas" in detail or "libcudart" in detail:
        hint = (
            "this llama-cpp-python is the CUDA build and the CUDA libraries are missing: install "
            "the NVIDIA driver, or rerun get.sh so it picks the build this machine can run"
        )
    else:
        hint = (
            "reinstall the built-in backend: rerun get.sh (it installs the llama-cpp-python build "
            "for this machine), or turn it off with builtin.enabled: false"
        )
    return ModelLoadError(
        f"the built-in backend cannot run: llama.cpp could not be loaded ({detail})", hint=hint
    )


def hello() -> dict[str, Any]:
    """What this process's llama.cpp build offers."""
    from worker.backends.pendra.runtime import gpu_offload_supported

    return {"op": "hello", "pid": os.getpid(), "gpu_offload": gpu_offload_supported()}


def serve(sock: socket.socket) -> int:
    sink = SocketSink(sock)
    sink.control(hello())
    core = RunnerCore(sink)
    decoder = wire.FrameDecoder()
    loaded = False
    while True:
        try:
            data = sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            os._exit(0)  # the worker closed its end (or died): stop at once
        for kind, body in decoder.feed(data):
            if kind != wire.CONTROL:
                continue
            message = wire.decode_control(body)
            if not loaded:
                if message["op"] != "load":
                    continue
                try:
                    sink.control(core.load(message))
                except ModelLoadError as exc:
                    sink.control({"op": "load_failed", **error_payload(exc)})
                    return 3
                except Exception as exc:  # a Python-level failure while loading
                    log.exception("loading failed")
                    sink.control({"op": "load_failed", **error_payload(exc)})
                    return 3
                loaded = True
                continue
            if not core.handle(message):
                core.close()
                return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--fd" not in args:
        print("usage: python -m worker.backends.pendra.runner --fd N", file=sys.stderr)
        return 2
    fd = int(args[args.index("--fd") + 1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when a runner stops
    _die_with_parent()
    _setup_logging(os.environ.get("PENDRA_RUNNER_LOG_LEVEL", "debug"))
    from worker.backends.pendra.native import import_bindings

    sock = socket.socket(fileno=fd)
    try:
        import_bindings()  # before anything imports llama_cpp: the C API only, no numpy
    except Exception as exc:  # the library or one it needs is missing: say so, no traceback
        log.error("llama.cpp could not be loaded: %s", exc)
        SocketSink(sock).control({"op": "unavailable", **error_payload(llama_unavailable(exc))})
        sys.stderr.flush()
        os._exit(4)
    code = serve(sock)
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: llama.cpp's threads and buffers go with us


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["RunnerCore", "SocketSink", "main"]

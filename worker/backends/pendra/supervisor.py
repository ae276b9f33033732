"""The worker's side of a model runner: start it, talk to it, notice when it dies.

:class:`ProcessRunner` starts ``python -m worker.backends.pendra.runner`` with one end of a Unix
socket pair and a scrubbed environment, sends ``load``, and then multiplexes jobs over the socket:
each request is a :class:`RunnerJob` whose events (text deltas, the finish, an error, embedding
vectors) arrive from the runner's per-step frames. The runner's stderr is read line by line into
the worker's log, and its last llama.cpp lines are kept: when the process dies — a signal, an
abort inside llama.cpp, the OOM killer — every job still running on it fails with
:class:`~worker.errors.ModelCrashed` quoting the signal and those lines, the death is logged at
ERROR, and the pool starts a fresh runner on the next request. The worker itself never notices
more than a closed socket.

:class:`ThreadRunner` hosts the same :class:`~worker.backends.pendra.runner.RunnerCore` on
threads of the worker (``builtin.isolation = "none"``): no crash isolation, one process fewer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.backends.base import Usage
from worker.backends.pendra import wire
from worker.backends.pendra.spec import LoadSpec
from worker.child_env import child_env
from worker.errors import BadRequest, ModelCrashed, ModelLoadError, PendraError

log = logging.getLogger(__name__)
native_log = logging.getLogger("worker.backends.pendra.llama_cpp")

STOP_GRACE_S = 5.0
TAIL_LINES = 40
LOGGED_LINES = 8  # of llama.cpp's last lines, in the worker's log when a runner dies
QUOTED_LINES = 2  # … and in the error the requests get
_LEVELS = {"D": logging.DEBUG, "I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR,
           "C": logging.CRITICAL}  # fmt: skip


# -- events of one job, as the backend sees them ---------------------------------------------------
@dataclass(frozen=True)
class TextEvent:
    text: str


@dataclass(frozen=True)
class DoneEvent:
    finish_reason: str
    usage: Usage
    capped_max_tokens: int | None = None


@dataclass(frozen=True)
class ErrorEvent:
    error: BaseException


@dataclass(frozen=True)
class ResultEvent:
    value: Any


@dataclass(frozen=True)
class InfoEvent:
    """Per-token extras a job asked for (logprobs …)."""

    value: dict[str, Any]


JobEvent = TextEvent | DoneEvent | ErrorEvent | ResultEvent | InfoEvent


def error_from_payload(payload: dict[str, Any]) -> PendraError:
    """Rebuild the error a runner reported for one job."""
    message = str(payload.get("message") or "the model runner failed")
    hint = payload.get("hint")
    code = str(payload.get("code") or "model_error")
    param = payload.get("param") if isinstance(payload.get("param"), str) else None
    if code == BadRequest.code:
        return BadRequest(message, hint=hint, param=param)
    error = PendraError(message, hint=hint, param=param)
    error.code = code
    status = payload.get("status")
    error.http_status = status if isinstance(status, int) and 400 <= status < 600 else 500
    return error


class RunnerJob:
    """One request on a runner: its events, in order, until a final one."""

    def __init__(self, runner: Runner, job_id: int) -> None:
        self.runner = runner
        self.job_id = job_id
        self.queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self.finished = False

    def deliver(self, event: JobEvent) -> None:
        self.queue.put_nowait(event)

    async def events(self) -> AsyncIterator[JobEvent]:
        while True:
            event = await self.queue.get()
            yield event
            if isinstance(event, (DoneEvent, ErrorEvent, ResultEvent)):
                return

    def cancel(self) -> None:
        """Stop the job (a no-op once it finished): the client went away."""
        if not self.finished:
            self.finished = True
            self.runner.cancel(self.job_id)


class Runner:
    """What the pool holds per loaded model, whatever hosts it."""

    isolation = "process"

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.spec: LoadSpec | None = None
        self.weights_bytes = 0
        self.state = "loading"  # loading → ready → stopped | dead
        self.hello: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        self.stats: dict[str, Any] = {}
        self.threads = 0
        self.leases = 0
        self.last_used = time.monotonic()
        self.on_exit: Callable[[Runner], None] | None = None
        self._jobs: dict[int, RunnerJob] = {}
        self._next_id = 1
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return None

    @property
    def alive(self) -> bool:
        return self.state in ("loading", "ready")

    @property
    def idle(self) -> bool:
        return self.leases == 0

    @property
    def slots(self) -> int | None:
        """Sequences it runs at once (the engine's, once loaded: 1 for the serial engine)."""
        seqs = self.info.get("n_seq_max") if self.info.get("engine") != "embed" else None
        return int(seqs) if seqs else (self.spec.slots if self.spec else None)

    async def spawn(self) -> dict[str, Any]:
        """Start the host; returns its ``hello`` (``gpu_offload`` …)."""
        raise NotImplementedError

    async def load(self, spec: LoadSpec, weights_bytes: int) -> dict[str, Any]:
        """Load the model; returns the ``ready`` information."""
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def _send(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- jobs -----------------------------------------------------------------------------------
    def submit(self, spec: dict[str, Any]) -> RunnerJob:
        if not self.alive:
            raise self._gone_error()
        job_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
        job = RunnerJob(self, job_id)
        self._jobs[job_id] = job
        self._send({"op": "job", "job": job_id, "spec": spec})
        return job

    def cancel(self, job_id: int) -> None:
        if self._jobs.pop(job_id, None) is not None and self.alive:
            self._send({"op": "cancel", "job": job_id})

    def set_threads(self, threads: int) -> None:
        if threads != self.threads and self.alive:
            self.threads = threads
            self._send({"op": "threads", "threads": threads})

    def _gone_error(self) -> PendraError:
        return ModelCrashed(
            f"the runner of {self.model_id!r} is not running",
            hint="retry: the next request starts it again",
        )

    # -- from the runner ------------------------------------------------------------------------
    def on_entries(self, entries: list[wire.Entry]) -> None:
        jobs = self._jobs
        for job_id, kind, payload in entries:
            job = jobs.get(job_id)
            if job is None:
                continue  # cancelled: the runner's last words for it
            if kind == wire.TEXT:
                job.deliver(TextEvent(payload))
                continue
            if kind == wire.TOKEN_INFO:
                job.deliver(InfoEvent(payload))
                continue
            del jobs[job_id]
            job.finished = True
            if kind == wire.DONE:
                usage = Usage(
                    int(payload["prompt_tokens"]),
                    int(payload["completion_tokens"]),
                    int(payload.get("cached_tokens") or 0),
                )
                job.deliver(
                    DoneEvent(payload["finish_reason"], usage, payload.get("capped_max_tokens"))
                )
            elif kind == wire.EMBEDDINGS:
                job.deliver(ResultEvent(payload))
            else:
                job.deliver(ErrorEvent(error_from_payload(payload)))

    def on_control(self, message: dict[str, Any]) -> None:
        if message["op"] == "stats":
            self.stats = message

    def fail_all(self, error: PendraError) -> None:
        jobs, self._jobs = self._jobs, {}
        for job in jobs.values():
            job.finished = True
            job.deliver(ErrorEvent(error))


class ProcessRunner(Runner):
    """A model in its own process (the default)."""

    def __init__(self, model_id: str) -> None:
        super().__init__(model_id)
        self.process: asyncio.subprocess.Process | None = None
        self._process_transport: asyncio.SubprocessTransport | None = None
        self._transport: asyncio.Transport | None = None
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._tasks: list[asyncio.Task[None]] = []
        self._exited = asyncio.Event()
        self._load_failed = False
        self.returncode: int | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def spawn(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # loop.subprocess_exec rather than create_subprocess_exec: the transport is ours to
            # close once the runner is gone, so nothing is left for the garbage collector.
            self._process_transport, protocol = await loop.subprocess_exec(
                lambda: asyncio.subprocess.SubprocessStreamProtocol(limit=1 << 16, loop=loop),
                sys.executable,
                "-m",
                "worker.backends.pendra.runner",
                "--fd",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                # No backtrace on GGML_ABORT: ggml would run gdb, and the assert line itself is
                # what the crash report quotes.
                env=child_env({"PENDRA_RUNNER_LOG_LEVEL": "debug", "GGML_NO_BACKTRACE": "1"}),
                cwd=_package_root(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                **_own_process_group(),
            )
        except OSError as exc:
            ours.close()
            raise ModelLoadError(
                f"could not start a runner process for {self.model_id!r}: {exc}"
            ) from None
        finally:
            theirs.close()
        self.process = asyncio.subprocess.Process(self._process_transport, protocol, loop)
        self._hello = loop.create_future()
        self._ready = loop.create_future()
        self._transport, _ = await loop.create_unix_connection(
            lambda: _RunnerProtocol(self), sock=ours
        )
        self._tasks = [
            asyncio.create_task(self._read_stderr(), name=f"runner-stderr-{self.model_id}"),
            asyncio.create_task(self._wait_exit(), name=f"runner-exit-{self.model_id}"),
        ]
        try:
            self.hello = await self._hello
        except BaseException:
            await self.stop()
            raise
        return self.hello

    async def load(self, spec: LoadSpec, weights_bytes: int) -> dict[str, Any]:
        assert self._ready is not None, "spawn() first"
        self.spec, self.weights_bytes, self.threads = spec, weights_bytes, spec.threads
        self._send(spec.message())
        try:
            self.info = await self._ready
        except BaseException:
            await self.stop()
            raise
        self.state = "ready"
        return self.info

    def _send(self, message: dict[str, Any]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(wire.control_frame(message))

    def on_control(self, message: dict[str, Any]) -> None:
        op = message["op"]
        ready = self._ready
        if op == "hello" and self._hello is not None and not self._hello.done():
            self._hello.set_result(message)
        elif op == "unavailable" and self._hello is not None and not self._hello.done():
            self._load_failed = True  # an exit that is explained, not a crash
            error = error_from_payload(message)
            self._hello.set_exception(ModelLoadError(error.message, hint=error.hint))
        elif op == "ready" and ready is not None and not ready.done():
            ready.set_result(message)
        elif op == "load_failed" and ready is not None and not ready.done():
            self._load_failed = True
            error = error_from_payload(message)
            ready.set_exception(
                ModelLoadError(error.message, hint=error.hint or _llama_hint(self.tail(3)))
            )
        else:
            super().on_control(message)

    def protocol_error(self, exc: Exception) -> None:
        log.error("the runner of %s sent a malformed frame (%s); stopping it", self.model_id, exc)
        self._kill()

    def connection_lost(self) -> None:
        if self._stopping or self.process is None:
            return
        # The socket closed: the process is exiting; _wait_exit reports why.

    # -- stderr and exit ------------------------------------------------------------------------
    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        stream = self.process.stderr
        name = f"worker.backends.pendra.runner.{self.model_id}"
        runner_log = logging.getLogger(name)
        while True:
            try:
                raw = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue  # a line over the limit: skip it
            if not raw:
                return
            line = raw.decode("utf-8", errors="replace").rstrip()
            if not line:
                continue
            level, source, text = _parse_line(line)
            if "possible training context overflow" in text:
                # The unified KV pool is larger than the trained context, but no request's
                # context is (the pool caps each at min(n_ctx_train, max_context)).
                level = logging.DEBUG
            if source is None or source.endswith("llama_cpp"):
                self._tail.append(text)
                native_log.log(level if source else logging.WARNING, "[%s] %s", self.model_id,
                               text)  # fmt: skip
            else:
                runner_log.log(level, "%s", text)

    async def _wait_exit(self) -> None:
        assert self.process is not None
        rc = await self.process.wait()
        self.returncode = rc
        reader = self._tasks[0] if self._tasks else None
        if reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(reader), 2.0)  # its last lines
        was_stopping = self._stopping or self._load_failed
        if self._transport is not None:
            self._transport.close()
        if not was_stopping:
            error = self._crash_error(rc)
            during = "loading" if self.state == "loading" else "serving"
            self.state = "dead"
            for pending in (self._hello, self._ready):
                if pending is not None and not pending.done():
                    pending.set_exception(error)
            in_flight = len(self._jobs)
            log.error(
                "the runner of %s (pid %s) died while %s: %s; %d request(s) failed.%s",
                self.model_id,
                self.pid,
                during,
                _describe_exit(rc),
                in_flight,
                "".join(f"\n    {line}" for line in self.tail(LOGGED_LINES)),
            )
            self.fail_all(error)
        else:
            self.state = "stopped"
            self.fail_all(
                PendraError(f"the model {self.model_id!r} was unloaded", hint="retry the request")
            )
        if self._process_transport is not None and (reader is None or reader.done()):
            self._process_transport.close()
        self._exited.set()
        if self.on_exit is not None:
            self.on_exit(self)

    def tail(self, n: int) -> list[str]:
        return list(self._tail)[-n:]

    def _crash_error(self, rc: int) -> ModelCrashed:
        lines = self.tail(QUOTED_LINES)
        quoted = f"; llama.cpp said: {' | '.join(lines)}" if lines else ""
        during = "while loading" if self.state == "loading" else "while serving"
        return ModelCrashed(
            f"the runner of {self.model_id!r} crashed {during} ({_describe_exit(rc)}){quoted}",
            hint="retry: the next request starts it again; if it keeps crashing, the model file "
            "may be damaged or replaced (see `pendra logs`)",
        )

    async def stop(self) -> None:
        """Ask the runner to stop; kill it after a grace period. Idempotent."""
        if self.process is None:
            return
        self._stopping = True
        if self.process.returncode is None:
            self._send({"op": "shutdown"})
            try:
                await asyncio.wait_for(self._exited.wait(), STOP_GRACE_S)
            except asyncio.TimeoutError:
                log.warning("the runner of %s did not stop in time; killing it", self.model_id)
                self._kill()
        await self._exited.wait()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError, Exception):
                await asyncio.wait_for(task, 2.0)  # the stderr reader ends at the pipe's EOF
        if self._process_transport is not None:
            self._process_transport.close()

    def _kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


class _RunnerProtocol(asyncio.Protocol):
    def __init__(self, runner: ProcessRunner) -> None:
        self.runner = runner
        self.decoder = wire.FrameDecoder()

    def data_received(self, data: bytes) -> None:
        runner = self.runner
        try:
            for kind, body in self.decoder.feed(data):
                if kind == wire.EVENTS:
                    runner.on_entries(list(wire.iter_entries(body)))
                elif kind == wire.CONTROL:
                    runner.on_control(wire.decode_control(body))
        except wire.WireError as exc:
            runner.protocol_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.runner.connection_lost()


class ThreadRunner(Runner):
    """A model on threads of the worker process (``builtin.isolation = "none"``)."""

    isolation = "none"

    def __init__(self, model_id: str) -> None:
        super().__init__(model_id)
        self._core: Any = None

    @property
    def pid(self) -> int | None:
        return os.getpid()

    async def spawn(self) -> dict[str, Any]:
        from worker.backends.pendra.runner import RunnerCore, hello

        self._core = RunnerCore(_LoopSink(asyncio.get_running_loop(), self))
        self.hello = await asyncio.to_thread(hello)
        return self.hello

    async def load(self, spec: LoadSpec, weights_bytes: int) -> dict[str, Any]:
        self.spec, self.weights_bytes, self.threads = spec, weights_bytes, spec.threads
        try:
            ready = await asyncio.to_thread(self._core.load, spec.message())
        except BaseException:
            self.state = "stopped"
            raise
        self.info = ready
        self.state = "ready"
        return ready

    def _send(self, message: dict[str, Any]) -> None:
        self._core.handle(message)

    async def stop(self) -> None:
        if self._core is None or self.state == "stopped":
            self.state = "stopped"
            return
        self.state = "stopped"
        await asyncio.to_thread(self._core.close)
        self.fail_all(PendraError(f"the model {self.model_id!r} was unloaded"))
        if self.on_exit is not None:
            self.on_exit(self)


class _LoopSink:
    """A runner core's output, handed to the event loop (thread-safe)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, runner: Runner) -> None:
        self.loop = loop
        self.runner = runner

    def control(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed
            self.loop.call_soon_threadsafe(self.runner.on_control, message)

    def events(self, entries: list[wire.Entry]) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.runner.on_entries, entries)


# -- helpers -----------------------------------------------------------------------------------
def _own_process_group() -> dict[str, Any]:
    """Popen arguments putting the runner in its own process group, in the worker's session.

    Ctrl-C in the worker's terminal goes to the terminal's foreground process group: the worker
    handles it (it drains) and then stops its runners itself. The same session (not a new one)
    keeps the runner in the worker's scheduling group where the kernel groups CPU time by session
    (``sched_autogroup``), so a model competes for the CPU as part of the worker.
    """
    if sys.version_info >= (3, 11):
        return {"process_group": 0}
    return {"preexec_fn": os.setpgrp}  # pragma: no cover - Python 3.10 only


def _package_root() -> str:
    """The directory holding the ``worker`` package: the runner imports ours, never a ``worker``
    folder that happens to be in the current directory."""
    return str(Path(__file__).resolve().parents[3])


def _parse_line(line: str) -> tuple[int, str | None, str]:
    """``"W worker.x: text"`` → (level, logger, text); anything else is native output."""
    if len(line) > 2 and line[1] == " " and line[0] in _LEVELS:
        head, sep, text = line[2:].partition(": ")
        if sep and head and " " not in head:
            return _LEVELS[line[0]], head, text
    return logging.WARNING, None, line


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        reasons = {
            "SIGBUS": "the model file changed under it",
            "SIGABRT": "llama.cpp aborted",
            "SIGKILL": "killed, e.g. by the out-of-memory killer or kill -9",
            "SIGSEGV": "a crash in native code",
        }
        reason = reasons.get(name)
        return f"{name}: {reason}" if reason else name
    return f"exit status {rc}"


def _llama_hint(lines: list[str]) -> str | None:
    return f"llama.cpp said: {' | '.join(lines)}" if lines else None

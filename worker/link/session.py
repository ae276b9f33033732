"""One authenticated link session: serve the control plane's frames until the socket closes.

Every request runs in its own task, so one slow generation never holds up the others; a ``cancel``
frame cancels that task (which closes the backend stream). Incoming frames that cannot be used are
answered with an ``error`` frame and the session carries on. When the socket goes away, every
request still running is cancelled and counted; nothing waits on a connection that is gone.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from worker.backends.base import InstallProgress, TranscriptionRequest
from worker.errors import BadRequest, PendraError
from worker.events import EventBus
from worker.link.advertise import advertised
from worker.link.cork import corked
from worker.link.streaming import pump_stream
from worker.private_inference.wire import is_sealed
from worker.protocol import (
    MAX_FRAME_BYTES,
    Cancel,
    Drain,
    Draining,
    ErrorFrame,
    FrameError,
    Heartbeat,
    InstallCommand,
    InstallDone,
    InstallProgressFrame,
    Load,
    Ping,
    Pong,
    Request,
    Response,
    ResponseEnd,
    ResponseStart,
    StatusPush,
    UninstallCommand,
    UsageInfo,
    WorkloadKeysAck,
    parse_server_frame,
)
from worker.router import Router

if TYPE_CHECKING:
    from worker.private_inference.service import PrivateInference

log = logging.getLogger(__name__)

MAX_ACTIVE_TASKS = 512
"""Requests and commands one session runs at once; more are refused, never queued without bound."""


class Commands(Protocol):
    """Model install/uninstall on behalf of the control plane (the runtime provides it)."""

    async def install(
        self,
        ref: str,
        backend: str | None,
        progress: Callable[[InstallProgress], Awaitable[None]],
    ) -> str | None: ...

    async def uninstall(self, ref: str, backend: str | None) -> str | None: ...


class FrameTooLarge(PendraError):
    http_status = 502
    code = "response_too_large"


def error_frame(exc: BaseException, request_id: str | None) -> ErrorFrame:
    if isinstance(exc, PendraError):
        return ErrorFrame(
            id=request_id,
            code=exc.code,
            message=exc.message,
            hint=exc.hint,
            status=exc.http_status,
            retry_after=exc.retry_after_s,
            param=exc.param,
        )
    return ErrorFrame(
        id=request_id,
        code="internal_error",
        message=f"the worker failed on this request ({type(exc).__name__})",
        status=500,
    )


class Session:
    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        *,
        router: Router,
        events: EventBus | None = None,
        commands: Commands | None = None,
        heartbeat_interval_s: float = 15.0,
        gpus: Callable[[], list[dict[str, Any]]] = list,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        on_drain_requested: Callable[[], None] | None = None,
        private: PrivateInference | None = None,
    ) -> None:
        self.ws = ws
        self.router = router
        self.events = events
        self.commands = commands
        self.heartbeat_interval_s = heartbeat_interval_s
        self.gpus = gpus
        self.max_frame_bytes = max_frame_bytes
        self.on_drain_requested = on_drain_requested
        self.draining = False
        self._send_lock = asyncio.Lock()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._last_status: str | None = None
        self._replies: set[asyncio.Task[None]] = set()
        self.frames_rejected = 0
        self.private = None
        if private is not None:
            # Imported here: the private-inference serving code builds on this package's streaming.
            from worker.private_inference.link import PrivateLink
            from worker.private_inference.link_channel import LinkChannel

            channel = LinkChannel(router=router, send=self.send, send_safely=self._send_safely)
            self.private = PrivateLink(private, channel)

    # -- sending ---------------------------------------------------------------------------------
    async def send(self, text: str) -> None:
        self._check_size(text)
        async with self._send_lock:
            await self.ws.send_str(text)

    async def send_together(self, texts: Sequence[str]) -> None:
        """Send ``texts`` as consecutive frames in as few TCP segments as possible."""
        for text in texts:
            self._check_size(text)
        async with self._send_lock:
            with corked(self.ws.get_extra_info("socket")):
                for text in texts:
                    await self.ws.send_str(text)

    def _check_size(self, text: str) -> None:
        # len(str) undercounts multi-byte text by at most 4x: encode only when it could matter.
        if len(text) * 4 > self.max_frame_bytes and len(text.encode()) > self.max_frame_bytes:
            raise FrameTooLarge(
                f"a frame of {len(text.encode())} bytes exceeds the link's limit of "
                f"{self.max_frame_bytes} bytes",
                hint="ask for a smaller response (fewer images, lower resolution)",
            )

    async def _send_safely(self, text: str) -> None:
        """Send, ignoring a socket that is already closing (its requests are being cancelled)."""
        with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            await self.send(text)

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def active(self) -> int:
        return len(self._tasks)

    async def serve(self) -> None:
        """Run until the socket closes; then cancel whatever is still running."""
        background = [asyncio.create_task(self._heartbeats())]
        if self.events is not None:
            background.append(asyncio.create_task(self._watch_status()))
        try:
            if self.private is not None:
                await self.private.start()
            await self.push_status(force=True)
            async for message in self.ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await self._on_text(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    self.frames_rejected += 1
                    await self._send_safely(
                        ErrorFrame(
                            code="malformed_frame", message="binary frames are not used"
                        ).dump()
                    )
                elif message.type == aiohttp.WSMsgType.ERROR:
                    log.warning("link error: %s", self.ws.exception() or "connection lost")
                    break
        finally:
            for task in background:
                task.cancel()
            await self.cancel_all()
            if self.private is not None:
                self.private.close()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self, timeout_s: float) -> int:
        """Stop taking requests, tell the control plane, wait (bounded) for in-flight ones.

        Returns how many were still running at the deadline (and were cancelled).
        """
        self.draining = True
        deadline = time.monotonic() + timeout_s
        # Bounded too: a control plane that stopped reading (its socket buffer full) must not
        # hold a stopping worker past its drain deadline.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                self._send_safely(Draining(in_flight=self.active).dump()), timeout_s
            )
        tasks = list(self._tasks.values())
        if tasks:
            left = max(0.0, deadline - time.monotonic())
            _, pending = await asyncio.wait(tasks, timeout=left)
        else:
            pending = set()
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)

    # -- incoming --------------------------------------------------------------------------------
    async def _on_text(self, text: str) -> None:
        try:
            frame = parse_server_frame(text)
        except FrameError as exc:
            self.frames_rejected += 1
            log.warning("rejected a frame from the control plane: %s", exc.code)
            await self._send_safely(
                ErrorFrame(id=exc.request_id, code=exc.code, message=exc.message, status=400).dump()
            )
            return
        if isinstance(frame, Request):
            if is_sealed(frame.body):
                self._start_sealed(frame)
            else:
                self._start(frame.id, self._serve_request(frame))
        elif isinstance(frame, WorkloadKeysAck):
            if self.private is not None:
                self.private.acknowledged(frame)
        elif isinstance(frame, Cancel):
            task = self._tasks.get(frame.id)
            if task is not None:
                task.cancel()
        elif isinstance(frame, Ping):
            await self._send_safely(Pong(ts=frame.ts).dump())
        elif isinstance(frame, (InstallCommand, UninstallCommand)):
            self._start(frame.id, self._serve_command(frame))
        elif isinstance(frame, Drain):
            log.info("the control plane asked this worker to drain")
            self.draining = True
            await self._send_safely(Draining(in_flight=self.active).dump())
            if self.on_drain_requested is not None:
                self.on_drain_requested()
        elif isinstance(frame, ErrorFrame):
            log.warning("the control plane reported an error: %s: %s", frame.code, frame.message)
        else:
            self.frames_rejected += 1
            await self._send_safely(
                ErrorFrame(
                    code="unexpected_frame", message=f"{frame.type} frames are not expected now"
                ).dump()
            )

    def _start(self, request_id: str, work: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Run ``work`` as the task of ``request_id``; None when refused (``work`` is closed)."""
        if request_id in self._tasks:
            work.close()
            self._reject(request_id, "duplicate_id", "a request with this id is already running")
        elif self.draining:
            work.close()
            self._reject(request_id, "worker_draining", "this worker is draining", status=503)
        elif len(self._tasks) >= MAX_ACTIVE_TASKS:
            work.close()
            self._reject(request_id, "worker_busy", "this worker is at capacity", status=503)
        else:
            task = asyncio.create_task(work)
            self._tasks[request_id] = task
            task.add_done_callback(lambda _t: self._tasks.pop(request_id, None))
            return task
        return None

    def _start_sealed(self, frame: Request) -> None:
        """A private-inference request: only the private-inference code may look inside."""
        if self.private is not None:
            self.private.accept(frame, self._start)
        else:
            self._reject(
                frame.id,
                "private_inference_disabled",
                "this worker does not serve private-inference requests",
                status=503,
            )

    def _reject(self, request_id: str, code: str, message: str, status: int = 409) -> None:
        frame = ErrorFrame(id=request_id, code=code, message=message, status=status).dump()
        task = asyncio.create_task(self._send_safely(frame))
        self._replies.add(task)  # keep a reference until sent, so it is neither lost nor leaked
        task.add_done_callback(self._replies.discard)

    # -- requests --------------------------------------------------------------------------------
    async def _serve_request(self, frame: Request) -> None:
        try:
            if frame.kind in ("chat", "completions") and frame.stream:
                await self._serve_stream(frame)
                return
            if frame.kind == "chat":
                result: dict[str, Any] | str = await self.router.chat(frame.body)
            elif frame.kind == "completions":
                result = await self.router.completions(frame.body)
            elif frame.kind == "embeddings":
                result = await self.router.embeddings(frame.body)
            elif frame.kind == "images":
                result = await self.router.images(frame.body)
            else:
                result = await self.router.transcription(transcription_request(frame))
            usage = _usage(result)
            content_type = "application/json" if not isinstance(result, str) else "text/plain"
            await self.send(
                Response(id=frame.id, body=result, content_type=content_type, usage=usage).dump()
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log_failure(frame, exc)
            await self._send_safely(error_frame(exc, frame.id).dump())

    async def _serve_stream(self, frame: Request) -> None:
        if frame.kind == "completions":
            stream = self.router.completions_stream(frame.body)
        else:
            stream = self.router.chat_stream(frame.body)
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException:
            await stream.aclose()
            raise
        start = ResponseStart(id=frame.id).dump()
        if first is None:
            try:
                await self.send(start)
            except BaseException:
                await stream.aclose()  # the link went away before the stream started
                raise
            start = None
        # ``start`` leaves in the same write as the first chunk: one wake-up of the control plane.
        summary = await pump_stream(
            frame.id, stream, self.send, first=first, lead=start, send_together=self.send_together
        )
        usage = None
        if summary.usage is not None:
            usage = UsageInfo(
                prompt_tokens=summary.usage.prompt_tokens,
                completion_tokens=summary.usage.completion_tokens,
                total_tokens=summary.usage.total_tokens,
            )
        await self.send(
            ResponseEnd(id=frame.id, usage=usage, finish_reason=summary.finish_reason).dump()
        )

    def _log_failure(self, frame: Request, exc: Exception) -> None:
        # Never the body: prompts stay on the machine and out of the logs.
        if isinstance(exc, PendraError):
            log.info("request %s (%s) failed: %s", frame.id, frame.kind, exc.code)
        elif isinstance(exc, ConnectionError):  # the link dropped mid-request: expected, no trace
            log.info("request %s (%s) ended: the link went away (%s)", frame.id, frame.kind, exc)
        else:
            log.error("request %s (%s) failed", frame.id, frame.kind, exc_info=exc)

    async def _serve_command(self, frame: InstallCommand | UninstallCommand) -> None:
        try:
            if self.commands is None:
                raise BadRequest("This worker does not take install commands.")
            if isinstance(frame, InstallCommand):

                async def progress(update: InstallProgress) -> None:
                    await self._send_safely(
                        InstallProgressFrame(
                            id=frame.id,
                            phase=update.phase,
                            bytes_done=update.bytes_done,
                            bytes_total=update.bytes_total,
                        ).dump()
                    )

                backend = await self.commands.install(frame.ref, frame.backend, progress)
            else:
                backend = await self.commands.uninstall(frame.ref, frame.backend)
            await self.send(InstallDone(id=frame.id, ref=frame.ref, backend=backend).dump())
            await self.push_status()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s %s failed: %s", frame.type, frame.ref, exc)
            await self._send_safely(error_frame(exc, frame.id).dump())

    # -- periodic --------------------------------------------------------------------------------
    async def push_status(self, *, force: bool = False) -> None:
        backends, models, capabilities = advertised(self.router.registry)
        frame = StatusPush(backends=backends, models=models, capabilities=capabilities).dump()
        if force or frame != self._last_status:
            self._last_status = frame
            await self._send_safely(frame)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            counters = self.router.counters()
            load = Load(
                in_flight=counters.in_flight,
                served=counters.served,
                failed=counters.failed,
                tokens_per_s=counters.tokens_per_s,
            )
            gpus = await asyncio.to_thread(self.gpus)  # a GPU probe may block; never on the loop
            await self._send_safely(Heartbeat(load=load, gpus=gpus).dump())
            await self.push_status()

    async def _watch_status(self) -> None:
        assert self.events is not None
        with self.events.subscribe(kinds={"backends", "models"}, maxsize=16) as sub:
            while True:
                await sub.get()
                await asyncio.sleep(0.2)  # coalesce a burst of changes into one push
                await self.push_status()


def transcription_request(frame: Request) -> TranscriptionRequest:
    if frame.file is None:
        raise BadRequest("A transcription request needs an audio file.", hint="send it as 'file'")
    try:
        data = base64.b64decode(frame.file.data_b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("The audio file is not valid base64.") from None
    model = frame.body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("The request has no model.")
    fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in frame.body.items()}
    return TranscriptionRequest(
        model=model,
        file_name=frame.file.name,
        file_bytes=data,
        content_type=frame.file.content_type,
        fields=fields,
    )


def _usage(result: Any) -> UsageInfo | None:
    if isinstance(result, dict) and isinstance(result.get("usage"), dict):
        with contextlib.suppress(Exception):
            return UsageInfo.model_validate(result["usage"])
    return None

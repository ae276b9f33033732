"""The built-in backend: GGUFs from the modelstore, each loaded model in a supervised runner.

Listing models never loads one (it reads the store). A model loads on its first request into its
own runner process (:mod:`~worker.backends.pendra.supervisor`), with a KV pool sized from the
memory that is free (:mod:`~worker.backends.pendra.memory`); the pool
(:mod:`~worker.backends.pendra.pool`) bounds what is loaded and who may use it. The worker process
keeps only request validation, the OpenAI response shapes and the bookkeeping: llama.cpp never
runs in it, so a crash in llama.cpp costs the requests of one model, never the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from worker.backends.base import (
    Backend,
    BackendStatus,
    Capabilities,
    ModelInfo,
    ProgressCallback,
    StreamChunk,
    Task,
)
from worker.backends.pendra.choices import Choice, Out, TextOut
from worker.backends.pendra.grammar import request_grammar
from worker.backends.pendra.params import (
    ChatParams,
    parse_chat,
    parse_completion,
    parse_embeddings,
)
from worker.backends.pendra.pool import ModelPool
from worker.backends.pendra.responses import (
    ChunkWriter,
    TextChunkWriter,
    chat_choice,
    chat_completion,
    completion_id,
    embedding_response,
    text_choice,
    text_completion,
    text_logprobs,
    tool_call_dicts,
    total_usage,
)
from worker.backends.pendra.spec import LoadSpec
from worker.backends.pendra.supervisor import (
    DoneEvent,
    ErrorEvent,
    InfoEvent,
    JobEvent,
    ProcessRunner,
    ResultEvent,
    Runner,
    RunnerJob,
    TextEvent,
    ThreadRunner,
)
from worker.errors import BadRequest, InstallError, ModelLoadError, ModelNotFound, NotSupported
from worker.events import EventBus
from worker.hardware import physical_cores
from worker.modelstore import ModelStore, StoredModel, sidecar_path
from worker.settings import Settings

log = logging.getLogger(__name__)


class PendraBackend(Backend):
    """The built-in llama.cpp backend (kind ``pendra``)."""

    kind: ClassVar[str] = "pendra"
    capabilities: ClassVar[Capabilities] = Capabilities(
        chat=True, embeddings=True, install=True, uninstall=True
    )
    admits_itself: ClassVar[bool] = True
    """Concurrency is bounded per model by the pool, not per backend kind by the router."""

    def __init__(
        self,
        settings: Settings,
        store: ModelStore | None = None,
        *,
        events: EventBus | None = None,
        watch: bool = True,
        batched: bool = True,
    ) -> None:
        super().__init__(endpoint=None)
        self.settings = settings
        self.store = store if store is not None else ModelStore(settings.models_dir)
        self.events = events
        self._watch_enabled = watch
        starter = ThreadRunner if settings.isolation == "none" else ProcessRunner
        self._pool = ModelPool(
            settings, starter, threads=settings.threads or physical_cores(), batched=batched
        )
        self._stored: dict[str, StoredModel] = {}
        self._all: list[StoredModel] = []
        self._watcher: asyncio.Task[None] | None = None

    # -- model list -----------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Rescan the store (no model is loaded) and start following it for changes."""
        if not self.settings.builtin_enabled:
            self.models = []
            self.mark(BackendStatus.DISABLED, "the built-in backend is off (builtin.enabled)")
            return
        self._apply(await self.store.ascan())
        if self._watch_enabled and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def list_models(self) -> list[StoredModel]:
        """Every GGUF in the store, usable or not (synchronous; loads nothing)."""
        return self.store.scan()

    async def _watch(self) -> None:
        try:
            await self.store.watch(self._on_store_change)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watching the modelstore stopped")

    def _on_store_change(self, models: list[StoredModel]) -> None:
        before = ([m.id for m in self.models], self.unusable())
        self._apply(models)
        if ([m.id for m in self.models], self.unusable()) != before and self.events is not None:
            self.events.publish(
                "models",
                backend=self.kind,
                models=[m.as_dict() for m in self.models],
                unusable=self.unusable(),
            )

    def _apply(self, models: list[StoredModel]) -> None:
        self._all = models
        self._stored = {m.id: m for m in models if m.servable}
        self.models = [_model_info(m) for m in self._stored.values()]
        self._pool.mark_stale(self._stored)
        unusable = len(self.unusable())
        detail = f"{unusable} file(s) in the modelstore cannot be used" if unusable else None
        self.mark(BackendStatus.READY, detail)

    def unusable(self) -> list[dict[str, Any]]:
        """The modelstore's files this backend does not serve, each with the reason."""
        return [
            {
                "file": m.path.name,
                "id": m.id,
                "task": m.task.value if m.task else None,
                "size_bytes": m.size_bytes,
                "error": m.unservable_reason,
            }
            for m in self._all
            if m.unservable_reason is not None
        ]

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["endpoint"] = str(self.store.models_dir)
        out["loaded"] = self._pool.describe()
        out["unusable"] = self.unusable()
        return out

    # -- lifecycle ------------------------------------------------------------------------------
    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._pool.close()

    def loaded_models(self) -> list[str]:
        return self._pool.loaded()

    # -- lookup ---------------------------------------------------------------------------------
    async def _model_for(self, model_id: str, task: Task) -> StoredModel:
        model = self._stored.get(model_id)
        if model is None or _changed_on_disk(model):
            # A file dropped in, replaced or removed just now (the watcher may not have said yet):
            # what loads must be described from the bytes that are there.
            self._apply(await self.store.ascan())
            model = self._stored.get(model_id)
        if model is None:
            broken = next((m for m in self._all if m.id == model_id and not m.usable), None)
            if broken is not None:
                raise ModelLoadError(f"the model {model_id!r} cannot be loaded: {broken.error}")
            served = ", ".join(sorted(self._stored)) or "none yet"
            raise ModelNotFound(
                f"the built-in backend has no model {model_id!r}",
                hint=f"models here: {served}; install one with `pendra models install`",
            )
        if model.task is not task:
            endpoint = "/v1/embeddings" if model.task is Task.EMBEDDING else "/v1/chat/completions"
            raise BadRequest(
                f"the model {model_id!r} is a {model.task.value if model.task else '?'} model; "
                f"send it to {endpoint}"
            )
        return model

    # -- generation -----------------------------------------------------------------------------
    def _specs(
        self,
        runner: Runner,
        params: ChatParams,
        prompts: list[str | list[int]] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The runner jobs of a request (one per choice) and the tool-call syntax to parse."""
        info = runner.info
        n_vocab = int(info.get("n_vocab") or 0)
        for token, _bias in params.logit_bias:
            if n_vocab and not 0 <= token < n_vocab:
                raise BadRequest(
                    f"'logit_bias' names token {int(token)}, not a token id of {params.model!r} "
                    f"(0 to {n_vocab - 1})",
                    param="logit_bias",
                )
        choices = params.n * (len(prompts) if prompts is not None else 1)
        slots = runner.slots or 1
        if choices > slots:
            what = "'n' × prompts" if prompts is not None and len(prompts) > 1 else "'n'"
            raise BadRequest(
                f"{what} asks for {choices} choices; {params.model!r} generates at most {slots} "
                "at once here, one per slot",
                hint="lower 'n' (or send the prompts in separate requests), or raise "
                "builtin.parallel",
                param="n",
            )
        tool_format = str(info.get("tool_format") or "hermes")
        grammar = request_grammar(params, tool_format)
        specs = []
        for prompt in prompts if prompts is not None else [None]:
            for i in range(params.n):
                seed = params.seed + i if params.seed is not None else None
                job_params = dataclasses.replace(params, seed=seed, prompt=prompt)
                specs.append(
                    {"kind": "chat", "params": dataclasses.asdict(job_params), "grammar": grammar}
                )
        return specs, (tool_format if params.calls_tools else None)

    @staticmethod
    def _choices(
        params: ChatParams, count: int, tool_format: str | None, streaming: bool
    ) -> list[Choice]:
        return [
            Choice(
                i,
                tool_format=tool_format,
                parallel=params.parallel_tool_calls,
                logprobs=params.logprobs,
                streaming=streaming,
            )
            for i in range(count)
        ]

    # -- chat -----------------------------------------------------------------------------------
    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        params = parse_chat(body)
        model = await self._model_for(params.model, Task.CHAT)
        async with self._pool.lease(model) as runner:
            specs, tool_format = self._specs(runner, params)
            jobs = [runner.submit(spec) for spec in specs]
            try:
                choices = self._choices(params, len(jobs), tool_format, streaming=False)
                await _collect(jobs, choices)
            finally:
                for job in jobs:
                    job.cancel()  # a no-op when finished; stops generation when we were cancelled
        out = []
        for choice in choices:
            result = choice.result()
            out.append(
                chat_choice(
                    choice.index,
                    result.content,
                    result.finish_reason,
                    tool_calls=tool_call_dicts(result.calls, result.call_ids),
                    logprobs=result.logprobs,
                )
            )
        usage = total_usage([c.usage for c in choices if c.usage is not None])
        return chat_completion(completion_id(), params.model, int(time.time()), out, usage)

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        params = parse_chat({**body, "stream": True})
        model = await self._model_for(params.model, Task.CHAT)
        async with self._pool.lease(model) as runner:
            specs, tool_format = self._specs(runner, params)
            jobs = [runner.submit(spec) for spec in specs]
            events = _events(jobs)
            try:
                # Wait for the first event before the first chunk: a request the runner rejects
                # (a prompt over the context, a template error) fails as a plain error response.
                event = await events.__anext__()
                if isinstance(event[1], ErrorEvent):
                    raise event[1].error
                writer = ChunkWriter(params.model)
                for i in range(len(jobs)):
                    yield writer.role(i)
                choices = self._choices(params, len(jobs), tool_format, streaming=True)
                left = len(jobs)
                while True:
                    index, item = event
                    choice = choices[index]
                    if isinstance(item, TextEvent):
                        for out in choice.feed(item.text):
                            for chunk in _chat_chunks(writer, index, out):
                                yield chunk
                    elif isinstance(item, InfoEvent):
                        choice.info(item.value)
                    elif isinstance(item, DoneEvent):
                        for out in choice.finish(item.finish_reason, item.usage):
                            for chunk in _chat_chunks(writer, index, out):
                                yield chunk
                        left -= 1
                        total = (
                            total_usage([c.usage for c in choices if c.usage is not None])
                            if left == 0
                            else None
                        )
                        reason = choice.finish_reason or item.finish_reason
                        lp = choice.pending_logprobs()
                        if params.include_usage:
                            yield writer.finish(reason, None, index, lp)
                            if total is not None:
                                yield writer.usage(total)
                        else:
                            yield writer.finish(reason, total, index, lp)
                        if left == 0:
                            return
                    elif isinstance(item, ErrorEvent):
                        raise item.error
                    event = await events.__anext__()
            finally:
                for job in jobs:
                    job.cancel()
                await events.aclose()

    # -- legacy completions ---------------------------------------------------------------------
    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        request = parse_completion(body)
        params = request.params
        model = await self._model_for(params.model, Task.CHAT)
        async with self._pool.lease(model) as runner:
            specs, _ = self._specs(runner, params, request.prompts)
            jobs = [runner.submit(spec) for spec in specs]
            try:
                choices = self._choices(params, len(jobs), None, streaming=False)
                await _collect(jobs, choices)
            finally:
                for job in jobs:
                    job.cancel()
        out = []
        for choice in choices:
            result = choice.result()
            prefix = _echo(params, request.prompts, choice.index)
            out.append(
                text_choice(
                    choice.index,
                    prefix + (result.content or ""),
                    result.finish_reason,
                    text_logprobs(result.logprobs),
                )
            )
        usage = total_usage([c.usage for c in choices if c.usage is not None], len(request.prompts))
        return text_completion(completion_id("cmpl"), params.model, int(time.time()), out, usage)

    async def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        request = parse_completion({**body, "stream": True})
        params = request.params
        model = await self._model_for(params.model, Task.CHAT)
        async with self._pool.lease(model) as runner:
            specs, _ = self._specs(runner, params, request.prompts)
            jobs = [runner.submit(spec) for spec in specs]
            events = _events(jobs)
            try:
                event = await events.__anext__()
                if isinstance(event[1], ErrorEvent):
                    raise event[1].error
                writer = TextChunkWriter(params.model)
                choices = self._choices(params, len(jobs), None, streaming=True)
                for choice in choices:
                    prefix = _echo(params, request.prompts, choice.index)
                    if prefix:
                        choice.emitted_chars += len(prefix)
                        yield writer.text(choice.index, prefix)
                left = len(jobs)
                while True:
                    index, item = event
                    choice = choices[index]
                    if isinstance(item, TextEvent):
                        for out in choice.feed(item.text):
                            assert isinstance(out, TextOut)
                            lp = text_logprobs(out.logprobs, choice.emitted_chars)
                            choice.emitted_chars += len(out.text)
                            yield writer.text(index, out.text, lp)
                    elif isinstance(item, InfoEvent):
                        choice.info(item.value)
                    elif isinstance(item, DoneEvent):
                        choice.finish(item.finish_reason, item.usage)
                        left -= 1
                        total = (
                            total_usage(
                                [c.usage for c in choices if c.usage is not None],
                                len(request.prompts),
                            )
                            if left == 0
                            else None
                        )
                        lp = text_logprobs(choice.pending_logprobs(), choice.emitted_chars)
                        reason = item.finish_reason
                        if params.include_usage:
                            yield writer.text(index, "", lp, reason)
                            if total is not None:
                                yield writer.usage(total)
                        else:
                            yield writer.text(index, "", lp, reason, total)
                        if left == 0:
                            return
                    elif isinstance(item, ErrorEvent):
                        raise item.error
                    event = await events.__anext__()
            finally:
                for job in jobs:
                    job.cancel()
                await events.aclose()

    # -- embeddings -----------------------------------------------------------------------------
    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        params = parse_embeddings(body)
        model = await self._model_for(params.model, Task.EMBEDDING)
        async with self._pool.lease(model) as runner:
            info = runner.info
            n_embd, n_vocab = int(info.get("n_embd", 0)), int(info.get("n_vocab", 0))
            if params.dimensions is not None and params.dimensions != n_embd:
                raise BadRequest(
                    f"'dimensions' must be {n_embd} for {params.model!r} (the model's "
                    f"embedding size), got {params.dimensions}"
                )
            _check_token_ids(params.inputs, n_vocab, params.model)
            job = runner.submit({"kind": "embed", "inputs": params.inputs})
            try:
                async for event in job.events():
                    if isinstance(event, ResultEvent):
                        return embedding_response(
                            params.model,
                            event.value.vectors,
                            event.value.prompt_tokens,
                            params.encoding_format,
                        )
                    if isinstance(event, ErrorEvent):
                        raise event.error
                raise RuntimeError("the runner ended a job without a result")  # pragma: no cover
            finally:
                job.cancel()

    # -- install / uninstall --------------------------------------------------------------------
    async def install(self, model_ref: str, progress: ProgressCallback) -> None:
        raise NotSupported(
            "the built-in backend installs through the install manager, which downloads the GGUF "
            "into the modelstore",
            hint=f"run `pendra models install {model_ref}`",
        )

    async def uninstall(self, model_ref: str) -> None:
        """Delete a model's GGUF and sidecar; refused while the model is serving."""
        models = await self.store.ascan()
        model = next((m for m in models if model_ref in (m.id, m.ref, m.path.name)), None)
        if model is None:
            raise ModelNotFound(
                f"the built-in backend has no model {model_ref!r} to remove",
                hint="`pendra models` lists the installed ones",
            )
        if self._pool.busy(model.id):
            raise InstallError(
                f"the model {model.id!r} is serving requests right now; it was not removed",
                hint="try again when its requests have finished",
            )
        await self._pool.unload(model.id)
        try:
            model.path.unlink(missing_ok=True)
            sidecar_path(model.path).unlink(missing_ok=True)
        except OSError as exc:
            raise InstallError(
                f"could not delete {model.path}: {exc.strerror or exc}",
                hint="check the file's permissions in the models directory",
            ) from None
        self._apply(await self.store.ascan())


def _chat_chunks(writer: ChunkWriter, index: int, out: Out) -> list[StreamChunk]:
    if isinstance(out, TextOut):
        return [writer.content(out.text, index, out.logprobs)]
    return writer.tool_call(index, out.call_index, out.call_id, out.call, out.logprobs)


def _echo(params: ChatParams, prompts: list[str | list[int]], index: int) -> str:
    """The prompt a choice repeats before its answer (``echo``)."""
    if not params.echo:
        return ""
    prompt = prompts[index // params.n]
    return prompt if isinstance(prompt, str) else ""


_FINAL = (DoneEvent, ErrorEvent, ResultEvent)


async def _events(jobs: list[RunnerJob]) -> AsyncIterator[tuple[int, JobEvent]]:
    """The events of several jobs as they come, each with its job's index, until all end."""
    if len(jobs) == 1:
        queue = jobs[0].queue
        while True:
            event = await queue.get()
            yield 0, event
            if isinstance(event, _FINAL):
                return
    waiting = {asyncio.ensure_future(job.queue.get()): i for i, job in enumerate(jobs)}
    try:
        while waiting:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: waiting[t]):
                index = waiting.pop(task)
                event = task.result()
                yield index, event
                if not isinstance(event, _FINAL):
                    waiting[asyncio.ensure_future(jobs[index].queue.get())] = index
    finally:
        for task in waiting:
            task.cancel()


async def _collect(jobs: list[RunnerJob], choices: list[Choice]) -> None:
    """Run the jobs to their end into ``choices``; the first error is raised."""
    events = _events(jobs)
    try:
        async for index, event in events:
            choice = choices[index]
            if isinstance(event, TextEvent):
                choice.feed(event.text)
            elif isinstance(event, InfoEvent):
                choice.info(event.value)
            elif isinstance(event, DoneEvent):
                choice.finish(event.finish_reason, event.usage)
            elif isinstance(event, ErrorEvent):
                raise event.error
    finally:
        await events.aclose()


def _changed_on_disk(model: StoredModel) -> bool:
    try:
        st = os.stat(model.path)
    except OSError:
        return True
    on_disk = (st.st_ino, st.st_size, st.st_mtime_ns)
    return on_disk != (model.inode, model.size_bytes, model.mtime_ns)


def _check_token_ids(inputs: list[str | list[int]], n_vocab: int, model: str) -> None:
    """Token-id inputs are checked before they reach a batch: one bad id must not fail others."""
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            continue
        for j, token in enumerate(item):
            if not 0 <= token < n_vocab:
                raise BadRequest(
                    f"'input[{i}][{j}]' is {token}, not a token id of {model!r} "
                    f"(valid ids are 0 to {n_vocab - 1})"
                )


def _model_info(model: StoredModel) -> ModelInfo:
    facts = model.facts
    details: dict[str, Any] = {"file": model.path.name, "source": model.source, "ref": model.ref}
    if facts is not None:
        details.update(
            architecture=facts.architecture,
            quantisation=facts.quantisation,
            name=facts.name,
            has_chat_template=facts.has_chat_template,
        )
    return ModelInfo(
        id=model.id,
        task=model.task,
        context_length=model.context_length,
        size_bytes=model.size_bytes,
        details=details,
    )


__all__ = ["LoadSpec", "PendraBackend", "Runner"]

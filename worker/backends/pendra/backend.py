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
from worker.backends.pendra.params import ChatParams, parse_chat, parse_embeddings
from worker.backends.pendra.pool import ModelPool
from worker.backends.pendra.responses import (
    ChunkWriter,
    chat_completion,
    completion_id,
    embedding_response,
)
from worker.backends.pendra.spec import LoadSpec
from worker.backends.pendra.supervisor import (
    DoneEvent,
    ErrorEvent,
    ProcessRunner,
    ResultEvent,
    Runner,
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
        self.store = store or ModelStore(settings.models_dir)
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
        before = [m.id for m in self.models]
        self._apply(models)
        if [m.id for m in self.models] != before and self.events is not None:
            self.events.publish(
                "models", backend=self.kind, models=[m.as_dict() for m in self.models]
            )

    def _apply(self, models: list[StoredModel]) -> None:
        self._all = models
        self._stored = {m.id: m for m in models if m.servable}
        self.models = [_model_info(m) for m in self._stored.values()]
        self._pool.mark_stale(self._stored)
        unusable = sum(not m.usable for m in models)
        detail = f"{unusable} file(s) in the modelstore cannot be used" if unusable else None
        self.mark(BackendStatus.READY, detail)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["endpoint"] = str(self.store.models_dir)
        out["loaded"] = self._pool.describe()
        out["unusable"] = [
            {"file": m.path.name, "id": m.id, "error": m.error} for m in self._all if not m.usable
        ]
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

    # -- chat -----------------------------------------------------------------------------------
    @staticmethod
    def _chat_spec(params: ChatParams) -> dict[str, Any]:
        return {"kind": "chat", "params": dataclasses.asdict(params)}

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        params = parse_chat(body)
        model = await self._model_for(params.model, Task.CHAT)
        async with self._pool.lease(model) as runner:
            job = runner.submit(self._chat_spec(params))
            try:
                parts: list[str] = []
                async for event in job.events():
                    if isinstance(event, TextEvent):
                        parts.append(event.text)
                    elif isinstance(event, DoneEvent):
                        return chat_completion(
                            completion_id(),
                            params.model,
                            int(time.time()),
                            "".join(parts),
                            event.finish_reason,
                            event.usage,
                        )
                    elif isinstance(event, ErrorEvent):
                        raise event.error
                raise RuntimeError("the runner ended a job without a result")  # pragma: no cover
            finally:
                job.cancel()  # a no-op when finished; stops the generation when we were cancelled

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        params = parse_chat(body)
        model = await self._model_for(params.model, Task.CHAT)
        async with self._pool.lease(model) as runner:
            job = runner.submit(self._chat_spec(params))
            try:
                # Wait for the first event before the first chunk: a request the runner rejects
                # (a prompt over the context, a template error) fails as a plain error response.
                event = await job.queue.get()
                if isinstance(event, ErrorEvent):
                    raise event.error
                writer = ChunkWriter(params.model)
                yield writer.role()
                events = job.events()
                while True:
                    if isinstance(event, TextEvent):
                        yield writer.content(event.text)
                    elif isinstance(event, DoneEvent):
                        if params.include_usage:
                            yield writer.finish(event.finish_reason, None)
                            yield writer.usage(event.usage)
                        else:
                            yield writer.finish(event.finish_reason, event.usage)
                        return
                    elif isinstance(event, ErrorEvent):
                        raise event.error
                    event = await events.__anext__()
            finally:
                job.cancel()

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

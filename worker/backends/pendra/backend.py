"""The built-in backend: GGUFs from the modelstore served in-process on llama.cpp.

Listing models never loads one (it reads the store). A model loads on its first request, in a
thread, and unloads when idle (see :mod:`~worker.backends.pendra.pool`). Requests for a loaded chat
model run on its engine: continuous batching when the model allows it, one at a time otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from worker.backends.base import (
    Backend,
    BackendStatus,
    Capabilities,
    ModelInfo,
    ProgressCallback,
    StreamChunk,
    Task,
)
from worker.backends.pendra.jobs import (
    ChatJob,
    DoneEvent,
    EmbedJob,
    ErrorEvent,
    ResultEvent,
    TextEvent,
)
from worker.backends.pendra.params import ChatParams, parse_chat, parse_embeddings
from worker.backends.pendra.pool import ModelPool
from worker.backends.pendra.responses import (
    ChunkWriter,
    chat_completion,
    completion_id,
    embedding_response,
)
from worker.errors import BadRequest, InstallError, ModelLoadError, ModelNotFound, NotSupported
from worker.events import EventBus
from worker.modelstore import ModelStore, StoredModel, sidecar_path
from worker.settings import Settings

if TYPE_CHECKING:  # llama.cpp (and numpy) load with the first model, not with the worker
    from worker.backends.pendra.engines import Engine
    from worker.backends.pendra.loader import EngineConfig

log = logging.getLogger(__name__)


class PendraBackend(Backend):
    """The built-in llama.cpp backend (kind ``pendra``)."""

    kind: ClassVar[str] = "pendra"
    capabilities: ClassVar[Capabilities] = Capabilities(
        chat=True, embeddings=True, install=True, uninstall=True
    )

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
        self._batched = batched
        self._config: EngineConfig | None = None
        self._pool = ModelPool(
            self._load, max_loaded=settings.max_loaded_models, idle_unload_s=settings.idle_unload_s
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
        out["loaded"] = self._pool.loaded()
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

    def _load(self, model: StoredModel) -> Engine:
        from worker.backends.pendra.loader import EngineConfig, load_engine

        if self._config is None:
            self._config = EngineConfig.from_settings(self.settings, batched=self._batched)
        return load_engine(model, self._config)

    # -- lookup ---------------------------------------------------------------------------------
    async def _model_for(self, model_id: str, task: Task) -> StoredModel:
        model = self._stored.get(model_id)
        if model is None:
            self._apply(await self.store.ascan())  # a file dropped in just now
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
    async def _prepare(self, engine: Engine, params: ChatParams) -> ChatJob:
        renderer = engine.renderer
        runtime = engine.runtime
        assert renderer is not None

        def build() -> tuple[list[int], tuple[str, ...]]:
            rendered = renderer.render(params.messages)
            tokens = runtime.tokenize(rendered.text, add_special=False, parse_special=True)
            if runtime.add_bos and runtime.bos >= 0 and (not tokens or tokens[0] != runtime.bos):
                tokens.insert(0, runtime.bos)
            return tokens, rendered.stops

        prompt, template_stops = await asyncio.to_thread(build)
        limit = engine.slot_ctx
        if len(prompt) >= limit:
            raise BadRequest(
                f"the prompt is {len(prompt)} tokens but {params.model!r} takes at most {limit} "
                "tokens of context here (prompt + answer)",
                hint="shorten the conversation, or raise builtin.max_context if the model allows",
            )
        room = limit - len(prompt)
        max_new = min(params.max_tokens, room) if params.max_tokens else room
        return ChatJob(
            loop=asyncio.get_running_loop(),
            params=params,
            prompt=prompt,
            stops=[*params.stop, *template_stops],
            max_new=max_new,
        )

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        params = parse_chat(body)
        model = await self._model_for(params.model, Task.CHAT)
        engine = await self._pool.acquire(model)
        job: ChatJob | None = None
        try:
            job = await self._prepare(engine, params)
            engine.submit(job)
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
            raise RuntimeError("the engine ended a job without a result")  # pragma: no cover
        finally:
            if job is not None:
                job.cancel()  # a no-op when finished; stops the generation when we were cancelled
            self._pool.release(engine)

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        params = parse_chat(body)
        model = await self._model_for(params.model, Task.CHAT)
        engine = await self._pool.acquire(model)
        job: ChatJob | None = None
        try:
            job = await self._prepare(engine, params)
            engine.submit(job)
            writer = ChunkWriter(params.model)
            yield writer.role()
            async for event in job.events():
                if isinstance(event, TextEvent):
                    yield writer.content(event.text)
                elif isinstance(event, DoneEvent):
                    if params.include_usage:
                        yield writer.finish(event.finish_reason, None)
                        yield writer.usage(event.usage)
                    else:
                        yield writer.finish(event.finish_reason, event.usage)
                elif isinstance(event, ErrorEvent):
                    raise event.error
        finally:
            if job is not None:
                job.cancel()
            self._pool.release(engine)

    # -- embeddings -----------------------------------------------------------------------------
    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        params = parse_embeddings(body)
        model = await self._model_for(params.model, Task.EMBEDDING)
        engine = await self._pool.acquire(model)
        job: EmbedJob | None = None
        try:
            runtime = engine.runtime
            if params.dimensions is not None and params.dimensions != runtime.n_embd:
                raise BadRequest(
                    f"'dimensions' must be {runtime.n_embd} for {params.model!r} (the model's "
                    f"embedding size), got {params.dimensions}"
                )

            def tokenize_all() -> list[list[int]]:
                out = []
                for item in params.inputs:
                    if isinstance(item, str):
                        out.append(runtime.tokenize(item, add_special=True, parse_special=False))
                    else:
                        out.append(list(item))
                return out

            inputs = await asyncio.to_thread(tokenize_all)
            for i, tokens in enumerate(inputs):
                if len(tokens) > runtime.n_batch:
                    raise BadRequest(
                        f"'input[{i}]' is {len(tokens)} tokens; {params.model!r} embeds at most "
                        f"{runtime.n_batch} tokens per input here"
                    )
                if not tokens:
                    raise BadRequest(f"'input[{i}]' has no tokens")
            job = EmbedJob(loop=asyncio.get_running_loop(), inputs=inputs)
            engine.submit(job)
            async for event in job.events():
                if isinstance(event, ResultEvent):
                    return embedding_response(
                        params.model,
                        event.value,
                        sum(len(t) for t in inputs),
                        params.encoding_format,
                    )
                if isinstance(event, ErrorEvent):
                    raise event.error
            raise RuntimeError("the engine ended a job without a result")  # pragma: no cover
        finally:
            if job is not None:
                job.cancel()
            self._pool.release(engine)

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

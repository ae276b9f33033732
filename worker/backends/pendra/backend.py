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
import functools
import logging
import os
from collections.abc import AsyncIterator
from types import ModuleType
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
from worker.errors import BadRequest, InstallError, ModelLoadError, ModelNotFound, NotSupported
from worker.events import EventBus
from worker.modelstore import ModelStore, StoredModel, sidecar_path
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.backends.pendra.pool import ModelPool

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
        self._batched = batched
        self._stored: dict[str, StoredModel] = {}
        self._all: list[StoredModel] = []
        self._watcher: asyncio.Task[None] | None = None

    @functools.cached_property
    def _pool(self) -> ModelPool:
        """The runners of loaded models, made with the first request (its modules with it: an
        idle worker that has loaded nothing stays small)."""
        from worker.backends.pendra.pool import ModelPool
        from worker.backends.pendra.supervisor import ProcessRunner, ThreadRunner
        from worker.hardware import physical_cores

        starter = ThreadRunner if self.settings.isolation == "none" else ProcessRunner
        threads = self.settings.threads or physical_cores()
        return ModelPool(self.settings, starter, threads=threads, batched=self._batched)

    def _pool_if_made(self) -> ModelPool | None:
        pool: ModelPool | None = self.__dict__.get("_pool")
        return pool

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
        pool = self._pool_if_made()
        if pool is not None:
            pool.mark_stale(self._stored)
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
        pool = self._pool_if_made()
        out["loaded"] = pool.describe() if pool is not None else []
        out["unusable"] = self.unusable()
        return out

    # -- lifecycle ------------------------------------------------------------------------------
    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        pool = self._pool_if_made()
        if pool is not None:
            await pool.close()

    def loaded_models(self) -> list[str]:
        pool = self._pool_if_made()
        return pool.loaded() if pool is not None else []

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
                f"send it to {endpoint}",
                param="model",
            )
        return model

    # -- requests (their code loads with the first one: see serving.py) -----------------------
    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return await _serving().chat(self, body)

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        # Closed explicitly: closing this stream releases the model's slot before aclose()
        # returns, not whenever the inner generator happens to be finalised. (The request is
        # checked when the stream is first read, inside this generator, as before.)
        async with contextlib.aclosing(_serving().chat_stream(self, body)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        return await _serving().completions(self, body)

    async def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        async with contextlib.aclosing(_serving().completions_stream(self, body)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        return await _serving().embeddings(self, body)

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
        model = next((m for m in models if m.answers_to(model_ref)), None)
        if model is None:
            raise ModelNotFound(
                f"the built-in backend has no model {model_ref!r} to remove",
                hint="`pendra models` lists the installed ones",
            )
        pool = self._pool_if_made()
        if pool is not None and pool.busy(model.id):
            raise InstallError(
                f"the model {model.id!r} is serving requests right now; it was not removed",
                hint="try again when its requests have finished",
            )
        if pool is not None:
            await pool.unload(model.id)
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


def _serving() -> ModuleType:
    """The request paths, imported with the first request."""
    from worker.backends.pendra import serving

    return serving


__all__ = ["PendraBackend"]

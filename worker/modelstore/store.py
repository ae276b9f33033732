"""The built-in backend's model directory: what GGUFs are there, what they are, and changes.

A scan lists every finished ``*.gguf`` in the directory (and its first-level sub-directories),
reads each one's sidecar or, without one, classifies it from its own header. Results are cached per
file (size + mtime), so rescanning after every change costs only a few ``stat`` calls. Files that
cannot be used (corrupt, truncated, not a GGUF, a duplicate id) are listed with the reason, never
served and never a crash. Partial downloads are invisible.

:meth:`ModelStore.watch` follows the directory with inotify on Linux
(:mod:`~worker.modelstore.inotify`), ``watchfiles`` (FSEvents, ReadDirectoryChangesW) elsewhere,
and falls back to polling when the OS watcher cannot be used, so a GGUF dropped in appears, and a
deleted one disappears, without restarting the worker.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from worker.backends.base import Task
from worker.modelstore.facts import ModelFacts, facts_from_header
from worker.modelstore.gguf_header import GGUFHeaderError, read_gguf_header
from worker.modelstore.inotify import DirectoryWatch
from worker.modelstore.naming import (
    is_model_file,
    is_partial,
    sidecar_path,
    split_parts,
    stem_id,
)
from worker.modelstore.sidecar import Sidecar, SidecarError, read_sidecar

log = logging.getLogger(__name__)

USE_INOTIFY = sys.platform.startswith("linux")
"""Follow the directory with inotify read on the event loop; elsewhere, with ``watchfiles``."""

SERVABLE_TASKS = frozenset({Task.CHAT, Task.EMBEDDING})
OnChange = Callable[[list["StoredModel"]], Awaitable[None] | None]


@dataclass(frozen=True)
class StoredModel:
    """One GGUF in the store, usable or not."""

    path: Path
    id: str
    task: Task | None
    context_length: int | None
    size_bytes: int
    sha256: str | None = None
    ref: str | None = None
    source: str = "header"  # "sidecar" | "header"
    facts: ModelFacts | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()
    chat_format: str | None = None
    mtime_ns: int = 0
    inode: int = 0

    @property
    def identity(self) -> tuple[str, int, int, int]:
        """Which bytes this is: a file replaced in place or by a rename changes it."""
        return (str(self.path), self.inode, self.size_bytes, self.mtime_ns)

    def answers_to(self, name: str) -> bool:
        """Whether ``name``, as a user typed it, picks this file: its served id, its file
        name, or the ref it was installed as (a GGUF copied in by hand has no ref)."""
        name = name.strip()
        return bool(name) and name in (self.id, self.path.name, self.ref)

    @property
    def usable(self) -> bool:
        return self.error is None

    @property
    def servable(self) -> bool:
        """Usable and of a task the built-in backend serves (chat or embeddings)."""
        return self.usable and self.task in SERVABLE_TASKS

    @property
    def unservable_reason(self) -> str | None:
        """Why the built-in backend does not serve this file, or ``None`` when it does."""
        if self.error is not None:
            return self.error
        if self.task not in SERVABLE_TASKS:
            kind = f"a {self.task.value} model" if self.task else "a model of no known task"
            return f"{kind}; the built-in backend serves chat and embedding models"
        return None

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.path)

    def as_dict(self) -> dict[str, Any]:
        facts = self.facts
        return {
            "id": self.id,
            "file": self.path.name,
            "path": str(self.path),
            "task": self.task.value if self.task else None,
            "context_length": self.context_length,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "ref": self.ref,
            "source": self.source,
            "usable": self.usable,
            "error": self.error,
            "architecture": facts.architecture if facts else None,
            "quantisation": facts.quantisation if facts else None,
            "name": facts.name if facts else None,
            "has_chat_template": facts.has_chat_template if facts else None,
            "notes": list(self.notes),
        }


@dataclass
class _CacheEntry:
    key: tuple[int, ...]
    model: StoredModel


@dataclass
class ModelStore:
    """The GGUF directory of the built-in backend."""

    models_dir: Path
    _cache: dict[Path, _CacheEntry] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    last_scan: list[StoredModel] = field(default_factory=list, repr=False)
    _os_watcher_failure: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.models_dir = Path(self.models_dir)

    # -- scanning -------------------------------------------------------------------------------
    def gguf_files(self) -> list[Path]:
        """Finished GGUF files in the directory and its first-level sub-directories, sorted."""
        found: list[Path] = []
        try:
            top = list(os.scandir(self.models_dir))
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("cannot list the models directory %s: %s", self.models_dir, exc)
            return []
        for entry in top:
            if entry.is_dir(follow_symlinks=True) and not is_partial(entry.name):
                try:
                    found += [
                        Path(sub.path)
                        for sub in os.scandir(entry.path)
                        if is_model_file(sub.name) and sub.is_file(follow_symlinks=True)
                    ]
                except OSError:
                    continue
            elif is_model_file(entry.name) and entry.is_file(follow_symlinks=True):
                found.append(Path(entry.path))
        return sorted(found)

    def scan(self) -> list[StoredModel]:
        """Every GGUF in the store with its classification; never raises for a bad file."""
        with self._lock:
            models: list[StoredModel] = []
            seen: set[Path] = set()
            for path in self.gguf_files():
                seen.add(path)
                model = self._describe_cached(path)
                if model is not None:
                    models.append(model)
            for stale in set(self._cache) - seen:
                del self._cache[stale]
            models = _resolve_duplicates(models)
            self.last_scan = models
            return models

    async def ascan(self) -> list[StoredModel]:
        """:meth:`scan` off the event loop (reading a new big header takes a moment)."""
        return await asyncio.to_thread(self.scan)

    def find(self, model_id: str) -> StoredModel | None:
        """A model by id (or by file name), from a fresh scan."""
        for model in self.scan():
            if model.id == model_id or model.path.name == model_id:
                return model
        return None

    def _describe_cached(self, path: Path) -> StoredModel | None:
        try:
            st = path.stat()
        except OSError:
            return None  # vanished between listing and stat
        side = sidecar_path(path)
        try:
            side_mtime = side.stat().st_mtime_ns
        except OSError:
            side_mtime = 0
        parts = _other_part_sizes(path)
        key = (st.st_size, st.st_mtime_ns, st.st_ino, side_mtime, *parts)
        entry = self._cache.get(path)
        if entry and entry.key == key:
            return entry.model
        model = describe_file(path, st.st_size, st.st_mtime_ns, st.st_ino)
        self._cache[path] = _CacheEntry(key, model)
        return model

    # -- watching -------------------------------------------------------------------------------
    async def watch(
        self,
        on_change: OnChange,
        *,
        poll_interval_s: float = 2.0,
        force_polling: bool = False,
        debounce_ms: int = 150,
    ) -> None:
        """Call ``on_change(models)`` now and whenever the store's model list changes; runs until
        cancelled. Uses the OS file watcher, or polling every ``poll_interval_s`` without one."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        current = await self.ascan()
        await _call(on_change, current)
        signature = _signature(current)
        while True:
            async for _ in self._changes(poll_interval_s, force_polling, debounce_ms):
                models = await self.ascan()
                new_signature = _signature(models)
                if new_signature != signature:
                    signature = new_signature
                    try:
                        await _call(on_change, models)
                    except Exception:
                        log.exception("modelstore change handler failed")

    async def _changes(self, poll_interval_s: float, force_polling: bool, debounce_ms: int) -> Any:
        """Yield once per batch of filesystem changes (or per poll tick in polling mode)."""
        if not force_polling and USE_INOTIFY:
            try:
                watch = DirectoryWatch(self.models_dir)
                try:
                    async for _ in watch.changes(debounce_ms / 1000):
                        yield None
                finally:
                    watch.close()
                # the directory went away: recreate it, fall through to a poll.
            except OSError as exc:  # inotify limits, unsupported filesystems, removed dir
                self._os_watcher_failed("inotify", exc, poll_interval_s)
        elif not force_polling:
            try:
                import watchfiles

                async for _ in watchfiles.awatch(
                    self.models_dir,
                    debounce=debounce_ms,
                    step=50,
                    recursive=True,
                    ignore_permission_denied=True,
                ):
                    yield None
                # awatch ends when the directory goes away: recreate it, fall through to a poll.
            except Exception as exc:  # inotify limits, unsupported filesystems, removed dir
                self._os_watcher_failed("the OS file watcher", exc, poll_interval_s)
        while True:
            await asyncio.sleep(poll_interval_s)
            self.models_dir.mkdir(parents=True, exist_ok=True)
            yield None
            if not force_polling:
                return  # try the OS watcher again

    def _os_watcher_failed(self, watcher: str, exc: BaseException, poll_interval_s: float) -> None:
        """Say once (not at every retry) that the directory is polled instead, and why."""
        reason = f"{watcher}: {exc}"
        level = logging.DEBUG if reason == self._os_watcher_failure else logging.WARNING
        self._os_watcher_failure = reason
        log.log(
            level,
            "watching %s with %s failed (%s); polling every %.0fs",
            self.models_dir,
            watcher,
            exc,
            poll_interval_s,
        )


async def _call(callback: OnChange, models: list[StoredModel]) -> None:
    result = callback(models)
    if inspect.isawaitable(result):
        await result


def _signature(models: list[StoredModel]) -> tuple[tuple[Any, ...], ...]:
    return tuple((m.path, m.id, m.task, m.error, m.size_bytes, m.mtime_ns, m.inode) for m in models)


def _resolve_duplicates(models: list[StoredModel]) -> list[StoredModel]:
    """Two usable files with the same id: the first (sorted by path) wins, the other says why."""
    owners: dict[str, Path] = {}
    out: list[StoredModel] = []
    for model in models:
        owner = owners.get(model.id)
        if model.usable and owner is not None:
            model = replace(
                model,
                error=f"another file ({owner.name}) already provides the model id {model.id!r}; "
                "rename one of them",
            )
        elif model.usable:
            owners[model.id] = model.path
        out.append(model)
    return out


def _other_part_sizes(path: Path) -> tuple[int, ...]:
    """The sizes of parts 2+ of a split GGUF (-1 for a missing part); ``()`` for one file."""
    sizes = []
    for part in split_parts(path)[1:]:
        try:
            sizes.append(part.stat().st_size)
        except OSError:
            sizes.append(-1)
    return tuple(sizes)


def describe_file(path: Path, size: int, mtime_ns: int, inode: int = 0) -> StoredModel:
    """Classify one GGUF: the sidecar when present and valid, else the header (never raises).

    A split GGUF is described by its first part; its size is that of all parts, and a missing
    part makes it unusable (llama.cpp would fail to load it)."""
    notes: list[str] = []
    sidecar: Sidecar | None = None
    side = sidecar_path(path)
    if side.exists():
        try:
            sidecar = read_sidecar(side)
        except (SidecarError, OSError) as exc:
            notes.append(f"sidecar {side.name} ignored: {exc}")
            log.warning("ignoring the sidecar %s: %s", side, exc)
    facts: ModelFacts | None = None
    error: str | None = None
    try:
        facts = facts_from_header(read_gguf_header(path))
    except GGUFHeaderError as exc:
        error = str(exc)
    except OSError as exc:
        error = f"cannot read the file: {exc.strerror or exc}"
    if facts is not None and facts.architecture is None:
        error = "the GGUF header has no general.architecture; llama.cpp cannot load it"
    others = _other_part_sizes(path)
    missing = [
        part.name
        for part, part_size in zip(split_parts(path)[1:], others, strict=True)
        if part_size < 0
    ]
    if missing and error is None:
        error = f"split GGUF with missing part(s): {', '.join(missing)}"
    size += sum(part_size for part_size in others if part_size > 0)
    model_id = sidecar.ref if sidecar else stem_id(path)
    task = (sidecar.task if sidecar and sidecar.task else None) or (facts.task if facts else None)
    context = (sidecar.context_length if sidecar else None) or (
        facts.context_length if facts else None
    )
    return StoredModel(
        path=path,
        id=model_id,
        task=task,
        context_length=context,
        size_bytes=size,
        sha256=sidecar.sha256 if sidecar else None,
        ref=sidecar.ref if sidecar else None,
        source="sidecar" if sidecar else "header",
        facts=facts,
        error=error,
        notes=tuple(notes),
        chat_format=sidecar.chat_format if sidecar else None,
        mtime_ns=mtime_ns,
        inode=inode,
    )

"""Install and uninstall jobs for every backend that can install, with live progress.

One :class:`InstallManager` per process (the running worker, or a direct ``pendra models install``
when none runs). A job installs one catalogue ref into one backend; asking again for the same ref
and backend while it runs joins the same job. Progress goes to the EventBus as ``"install"``
events (the admin API and the control plane relay them) and is kept on the job for
:meth:`InstallManager.snapshot` (the ``installs`` part of the status document, docs/status.md).

Built-in backend: the GGUF is downloaded straight into the modelstore (:mod:`.builtin`). External
backends (Ollama, LM Studio, Speaches): their own ``Backend.install``/``uninstall`` with the name
the catalogue gives for that backend (``ollama_tag``, ``lmstudio_id``, ``speaches_id``).

Hugging Face refs (``hf.co/OWNER/REPO[:QUANT]``) install into the built-in backend: the job first
resolves the ref on the Hub (phase ``resolving``: the quantisation, the files, their LFS SHA-256,
the commit), then downloads every file pinned to that hash (:mod:`.hf`). The job's ``ref`` becomes
the resolved one (``hf.co/OWNER/REPO:Q4_K_M``), the id the model is served under. A catalogue
variant may name an HF repository and file instead of a URL; its pin is checked against the Hub's
LFS hash before anything is downloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.backends.base import BackendStatus, InstallProgress
from worker.backends.registry import BackendRegistry
from worker.catalogue import Catalogue, CatalogueClient
from worker.catalogue.refs import ModelRef
from worker.catalogue.schema import CatalogueModel, CatalogueVariant
from worker.errors import BadRequest, InstallError, ModelNotFound, PendraError
from worker.events import EventBus
from worker.hf.refs import HFRef
from worker.installs.rate import RateMeter
from worker.installs.refs import parse_install_ref
from worker.settings import Settings

if TYPE_CHECKING:  # the install machinery loads with the first install, not with the worker
    from worker.installs.hf import InstallRecord
    from worker.modelstore import StoredModel

log = logging.getLogger(__name__)

BUILTIN = "pendra"
BACKEND_ID_FIELD = {"ollama": "ollama_tag", "lmstudio": "lmstudio_id", "speaches": "speaches_id"}
"""Which catalogue field names a variant for each external backend that installs."""
FINAL_PHASES = frozenset({"done", "failed", "cancelled"})
EVENT_INTERVAL_S = 0.25
"""At most this often per job for byte-progress events; phase changes are always sent."""
KEEP_FINISHED_S = 60.0

CatalogueLoader = Callable[[], Awaitable[Catalogue]]


@dataclass(eq=False)
class InstallJob:
    """One install of ``ref`` into ``backend``; :meth:`wait` for the end, read ``phase``."""

    ref: str
    backend: str
    target: str
    """The name the backend knows it by (a file name, an Ollama tag, an LM Studio id …)."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    phase: str = "queued"
    bytes_done: int = 0
    bytes_total: int | None = None
    rate_bps: float | None = None
    eta_s: float | None = None
    detail: str | None = None
    error: str | None = None
    hint: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    requested: str = ""
    """The ref as asked for (a Hugging Face ref's ``ref`` changes once it is resolved)."""
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _meter: RateMeter = field(default_factory=RateMeter, repr=False)
    _last_event: float = field(default=0.0, repr=False)

    @property
    def finished(self) -> bool:
        return self.phase in FINAL_PHASES

    @property
    def ok(self) -> bool:
        return self.phase == "done"

    async def wait(self) -> InstallJob:
        """Wait for the job to end (in any final phase); never raises its error."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)
        return self

    def as_dict(self) -> dict[str, Any]:
        """The docs/status.md ``installs`` entry plus id, rate, ETA, error and timing."""
        return {
            "id": self.id,
            "ref": self.ref,
            "backend": self.backend,
            "target": self.target,
            "phase": self.phase,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "rate_bps": self.rate_bps,
            "eta_s": self.eta_s,
            "detail": self.detail,
            "error": self.error,
            "hint": self.hint,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def backend_target(backend: str, variant: CatalogueVariant) -> str | None:
    """The id ``backend`` installs ``variant`` by, or ``None`` when the catalogue gives none."""
    if backend == BUILTIN:
        if not variant.installs_into_pendra:
            return None
        return variant.gguf_url or f"hf.co/{variant.hf_repo}/{variant.hf_file}"
    field_name = BACKEND_ID_FIELD.get(backend)
    return getattr(variant, field_name) if field_name else None


def choose_backend(variant: CatalogueVariant, available: list[str], requested: str | None) -> str:
    """Where to install (pure): the requested backend if the variant lists it and it is here;
    otherwise the built-in backend when it can, then the variant's backends in catalogue order."""
    listed = [b for b in variant.backends if backend_target(b, variant)]
    if requested is not None:
        if requested not in variant.backends or requested not in listed:
            where = ", ".join(listed) or "no backend"
            raise BadRequest(
                f"This model cannot be installed into {requested!r}.",
                hint=f"it installs into: {where}",
            )
        if requested not in available:
            raise InstallError(
                f"The {requested} backend is not running on this machine.",
                hint="start it (see `pendra backends`), or pick another with --backend",
            )
        return requested
    for name in listed:
        if name in available:
            return name
    raise InstallError(
        "No backend on this machine can install this model.",
        hint=f"it installs into: {', '.join(listed) or 'none'}; start one of them "
        "(see `pendra backends`)",
    )


class InstallManager:
    """Runs install jobs and uninstalls; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        registry: BackendRegistry | None = None,
        events: EventBus | None = None,
        *,
        catalogue_loader: CatalogueLoader | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else BackendRegistry()
        self.events = events if events is not None else EventBus()
        self._load_catalogue = (
            catalogue_loader if catalogue_loader is not None else CatalogueClient(settings).load
        )
        self._jobs: dict[str, InstallJob] = {}

    # -- queries ----------------------------------------------------------------------------------
    async def load_catalogue(self) -> Catalogue:
        """The catalogue installs are resolved against (the control plane's, or the cache)."""
        return await self._load_catalogue()

    def jobs(self) -> list[InstallJob]:
        return list(self._jobs.values())

    def job(self, job_id: str) -> InstallJob | None:
        return self._jobs.get(job_id)

    def snapshot(self) -> list[dict[str, Any]]:
        """Running jobs plus those that ended in the last minute, oldest first."""
        now = time.time()
        for job_id, job in list(self._jobs.items()):
            if job.finished_at is not None and now - job.finished_at > KEEP_FINISHED_S:
                del self._jobs[job_id]
        return [job.as_dict() for job in self._jobs.values()]

    def available_backends(self) -> list[str]:
        names = [b.kind for b in self.registry.ready() if b.capabilities.install]
        if self.settings.builtin_enabled and BUILTIN not in names:
            names.insert(0, BUILTIN)  # the built-in install is a download; no backend object needed
        return names

    # -- commands ---------------------------------------------------------------------------------
    async def start(self, ref: str, backend: str | None = None) -> InstallJob:
        """Start installing ``ref`` (or join the running job for the same ref and backend)."""
        parsed = parse_install_ref(ref)
        if isinstance(parsed, HFRef):
            return self._start_hf(parsed, backend)
        catalogue = await self._load_catalogue()
        model, variant = catalogue.find(parsed)
        chosen = choose_backend(variant, self.available_backends(), backend)
        for job in self._jobs.values():
            if job.ref == str(parsed) and job.backend == chosen and not job.finished:
                return job
        target = backend_target(chosen, variant) or ""
        job = InstallJob(ref=str(parsed), backend=chosen, target=target, requested=str(parsed))
        self._jobs[job.id] = job
        self._publish(job, force=True)
        job._task = asyncio.create_task(
            self._guarded(job, lambda: self._run(job, parsed, model, variant))
        )
        return job

    def _start_hf(self, ref: HFRef, backend: str | None) -> InstallJob:
        if backend not in (None, BUILTIN):
            raise BadRequest(
                f"Hugging Face refs install into the built-in backend ({BUILTIN}), not {backend}.",
                hint=f"drop --backend; for Ollama use `ollama pull {ref}`",
            )
        if not self.settings.builtin_enabled:
            raise InstallError(
                "The built-in backend is disabled on this worker, and Hugging Face refs install "
                "into it.",
                hint="enable it (builtin.enabled in the config), or use another backend's tools",
            )
        for job in self._jobs.values():
            if job.requested == str(ref) and job.backend == BUILTIN and not job.finished:
                return job
        job = InstallJob(ref=str(ref), backend=BUILTIN, target=ref.base, requested=str(ref))
        self._jobs[job.id] = job
        self._publish(job, force=True)
        job._task = asyncio.create_task(self._guarded(job, lambda: self._run_hf(job, ref)))
        return job

    async def install(self, ref: str, backend: str | None = None) -> InstallJob:
        """Start (or join) and wait; the finished job (check ``job.ok``)."""
        return await (await self.start(ref, backend)).wait()

    async def cancel(self, job_id: str) -> dict[str, Any]:
        job = self._jobs.get(job_id)
        if job is None:
            raise ModelNotFound(f"No install job {job_id!r}.", hint="see `pendra status`")
        if job._task is not None and not job.finished:
            job._task.cancel()
            await job.wait()
        return job.as_dict()

    async def uninstall(self, ref: str, backend: str | None = None) -> dict[str, Any]:
        """Remove ``ref`` from ``backend`` (default: wherever it is installed)."""
        if backend in (None, BUILTIN):
            dropped = await self._dropped_in(ref)
            if dropped is not None:
                return await self._uninstall_dropped_in(dropped)
        parsed = parse_install_ref(ref)
        for job in self._jobs.values():
            asked = str(parsed) in (job.ref, job.requested)
            if asked and not job.finished and backend in (None, job.backend):
                raise InstallError(
                    f"{parsed} is being installed into {job.backend} right now.",
                    hint=f"cancel the install first (job {job.id})",
                )
        shown = str(parsed)
        if isinstance(parsed, HFRef):
            if backend not in (None, BUILTIN):
                raise BadRequest(
                    f"Hugging Face refs are installed in the built-in backend ({BUILTIN}).",
                    hint="drop --backend",
                )
            chosen = BUILTIN
            shown, removed = await self._uninstall_hf(parsed)
            target = ", ".join(removed) or shown
        else:
            variant = await self._variant_or_none(parsed)
            chosen = backend or self._installed_where(parsed, variant)
            if chosen == BUILTIN:
                removed = await self._uninstall_builtin(parsed, variant)
                target = ", ".join(removed) or str(parsed)
            else:
                target = await self._uninstall_external(parsed, chosen, variant)
        return self._removed(shown, chosen, target)

    def _removed(self, ref: str, backend: str, what: str) -> dict[str, Any]:
        """Tell the app and the control plane a model is gone; the answer for the caller."""
        self.events.publish("models", backend=backend, ref=ref)
        self.events.publish(
            "install",
            ref=ref,
            backend=backend,
            phase="removed",
            bytes_done=0,
            bytes_total=None,
            rate_bps=None,
            eta_s=None,
            error=None,
        )
        return {"ref": ref, "backend": backend, "removed": what}

    async def close(self) -> None:
        """Cancel every running job (partials stay for a later resume)."""
        tasks = [j._task for j in self._jobs.values() if j._task and not j.finished]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- running a job ----------------------------------------------------------------------------
    async def _run(
        self, job: InstallJob, ref: ModelRef, model: CatalogueModel, variant: CatalogueVariant
    ) -> None:
        self._progress(job, "starting", 0, variant.size_bytes)
        if job.backend == BUILTIN and variant.hf_source:
            await self._install_catalogued_hf(job, ref, model, variant)
        elif job.backend == BUILTIN:
            from worker.installs.builtin import install_into_store

            result = await install_into_store(
                self.settings.models_dir,
                ref,
                model,
                variant,
                lambda phase, done, total: self._progress(job, phase, done, total),
            )
            job.target = result.path.name
            job.detail = "downloaded" if result.downloaded else "already installed"
            await self._refresh_builtin()
        else:
            backend = self.registry.get(job.backend)
            if backend is None or backend.status is not BackendStatus.READY:
                raise InstallError(f"The {job.backend} backend is not available any more.")

            def on_progress(event: InstallProgress) -> None:
                if event.phase != "done":
                    self._progress(
                        job, event.phase, event.bytes_done, event.bytes_total, event.detail
                    )

            await backend.install(job.target, on_progress)
            await backend.refresh()  # list the new model now, not at the next discovery tick

    async def _refresh_builtin(self) -> None:
        builtin = self.registry.get(BUILTIN)
        if builtin is not None:
            await builtin.refresh()

    async def _run_hf(self, job: InstallJob, ref: HFRef) -> None:
        from worker.hf.resolve import hub_endpoint, hub_offline, hub_token, offline_error, resolve

        self._progress(job, "resolving", 0, None, f"asking {hub_endpoint()}")
        if hub_offline():
            existing = installed_ref_of(self.settings.models_dir, ref)
            if existing is None:
                raise offline_error(str(ref))
            job.ref, job.detail = existing, "already installed (HF_HUB_OFFLINE is set)"
            return
        token = await asyncio.to_thread(hub_token)
        resolved = await asyncio.to_thread(resolve, ref, token=token)
        job.ref, job.detail = resolved.ref, resolved.note
        if resolved.note:
            log.info("install of %s: %s", ref, resolved.note)
        await self._download_resolved(job, resolved, token, job.ref, None, None)
        job.detail = (job.detail or "") + (f"; {resolved.note}" if resolved.note else "")

    async def _install_catalogued_hf(
        self, job: InstallJob, ref: ModelRef, model: CatalogueModel, variant: CatalogueVariant
    ) -> None:
        """A catalogue variant naming an HF file: its pin must be the Hub's LFS hash."""
        from worker.hf.resolve import hub_token, resolve

        assert variant.hf_repo and variant.hf_file and variant.gguf_sha256
        self._progress(job, "resolving", 0, variant.size_bytes, f"hf.co/{variant.hf_repo}")
        hf = HFRef(variant.hf_repo, revision=variant.hf_revision, file=variant.hf_file)
        token = await asyncio.to_thread(hub_token)
        resolved = await asyncio.to_thread(resolve, hf, token=token, pin_sha256=variant.gguf_sha256)
        job.detail = None
        await self._download_resolved(
            job, resolved, token, str(ref), model.task, variant.context_length
        )

    async def _download_resolved(
        self,
        job: InstallJob,
        resolved: Any,
        token: str | None,
        ref: str,
        task: str | None,
        context_length: int | None,
    ) -> None:
        from worker.hardware import free_disk
        from worker.installs.builtin import FREE_SPACE_MARGIN
        from worker.installs.download import free_space_error, partial_path
        from worker.installs.hf import install_folder, install_resolved

        models_dir = self.settings.models_dir
        folder = install_folder(models_dir, resolved)
        have = sum(
            path.stat().st_size
            for item in resolved.files
            for path in (folder / item.name, partial_path(folder / item.name))
            if path.is_file()
        )
        free = free_disk(models_dir)
        needed = max(0, resolved.size - have)
        if free is not None and needed + FREE_SPACE_MARGIN > free:
            raise free_space_error(
                folder / resolved.parts[0].name, needed + FREE_SPACE_MARGIN, free
            )
        result = await install_resolved(
            models_dir,
            resolved,
            lambda phase, done, total: self._progress(job, phase, done, total),
            ref=ref,
            token=token,
            task=task,
            context_length=context_length,
        )
        job.target = result.path.name
        job.detail = "downloaded" if result.downloaded else "already installed"
        await self._refresh_builtin()

    async def _guarded(self, job: InstallJob, work: Callable[[], Awaitable[None]]) -> None:
        """Run a job's work; every way it can end becomes the job's final phase."""
        try:
            await work()
            self._finish(job, "done")
            # The dashboard and the link re-read the model lists on this event.
            self.events.publish("models", backend=job.backend, ref=job.ref)
        except asyncio.CancelledError:
            self._finish(job, "cancelled")
            raise
        except PendraError as exc:
            self._finish(job, "failed", exc.message, exc.hint)
        except OSError as exc:
            self._finish(job, "failed", f"File system error: {exc.strerror or exc}.")
        except Exception as exc:  # a bug must end the job visibly, not hang it
            log.exception("install of %s into %s crashed", job.ref, job.backend)
            self._finish(job, "failed", f"Unexpected error: {exc}")

    def _progress(
        self,
        job: InstallJob,
        phase: str,
        done: int,
        total: int | None,
        detail: str | None = None,
    ) -> None:
        now = time.monotonic()
        changed = phase != job.phase
        if phase == "resuming" or (changed and phase == "downloading"):
            job._meter.reset(now, done)
        else:
            job._meter.update(now, done)
        job.phase, job.bytes_done = phase, done
        job.bytes_total = total if total is not None else job.bytes_total
        job.rate_bps = job._meter.rate_bps if phase == "downloading" else None
        job.eta_s = job._meter.eta_s(done, job.bytes_total) if phase == "downloading" else None
        if detail is not None:
            job.detail = detail
        self._publish(job, force=changed)

    def _finish(
        self, job: InstallJob, phase: str, error: str | None = None, hint: str | None = None
    ) -> None:
        job.phase, job.error, job.hint = phase, error, hint
        job.rate_bps = job.eta_s = None
        if phase == "done" and job.bytes_total is not None:
            job.bytes_done = job.bytes_total
        job.finished_at = time.time()
        if error:
            log.warning("install of %s into %s failed: %s", job.ref, job.backend, error)
        else:
            log.info("install of %s into %s: %s", job.ref, job.backend, phase)
        self._publish(job, force=True)

    def _publish(self, job: InstallJob, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - job._last_event < EVENT_INTERVAL_S:
            return
        job._last_event = now
        self.events.publish(
            "install",
            job_id=job.id,
            ref=job.ref,
            backend=job.backend,
            phase=job.phase,
            bytes_done=job.bytes_done,
            bytes_total=job.bytes_total,
            rate_bps=job.rate_bps,
            eta_s=job.eta_s,
            detail=job.detail,
            error=job.error,
            hint=job.hint,
        )

    # -- uninstall helpers ------------------------------------------------------------------------
    async def _variant_or_none(self, ref: ModelRef) -> CatalogueVariant | None:
        """The catalogue entry when reachable; uninstall works offline without it for pendra."""
        try:
            return (await self._load_catalogue()).find(ref)[1]
        except PendraError:
            return None

    async def _dropped_in(self, name: str) -> StoredModel | None:
        """The built-in store's model with this id or file name that no install recorded (a GGUF
        the user copied in), if there is one."""
        from worker.modelstore import ModelStore

        backend = self.registry.get(BUILTIN)
        store = getattr(backend, "store", None) or ModelStore(self.settings.models_dir)
        models = await store.ascan()
        return next((m for m in models if m.ref is None and m.answers_to(name)), None)

    async def _uninstall_dropped_in(self, model: StoredModel) -> dict[str, Any]:
        backend = self.registry.get(BUILTIN)
        if backend is not None and backend.capabilities.uninstall:
            await backend.uninstall(model.path.name)  # refuses a model that is serving
        else:  # no worker is running (`pendra rm` on its own): nothing serves the file
            try:
                await asyncio.to_thread(model.path.unlink, missing_ok=True)
            except OSError as exc:
                raise InstallError(
                    f"could not delete {model.path}: {exc.strerror or exc}",
                    hint="check the file's permissions in the models directory",
                ) from None
        return self._removed(model.id, BUILTIN, model.path.name)

    def _installed_where(self, ref: ModelRef, variant: CatalogueVariant | None) -> str:
        from worker.installs.builtin import installed_files

        if installed_files(self.settings.models_dir, ref):
            return BUILTIN
        if variant is not None:
            for backend in self.registry.ready():
                target = backend_target(backend.kind, variant)
                if target and any(m.id == target for m in backend.models):
                    return backend.kind
        raise ModelNotFound(
            f"{ref} is not installed on any backend here.",
            hint="see what is installed with `pendra models`",
        )

    async def _uninstall_builtin(
        self, ref: ModelRef, variant: CatalogueVariant | None
    ) -> list[str]:
        from worker.installs.builtin import remove_from_store
        from worker.installs.hf import find_installs

        backend = self.registry.get(BUILTIN)
        if backend is not None and backend.capabilities.uninstall:
            records = find_installs(self.settings.models_dir, str(ref))
            await backend.uninstall(str(ref))  # refuses a model that is serving
            await asyncio.to_thread(_remove_leftovers, records)
            return [str(ref)]
        url = variant.gguf_url if variant else None
        removed = await asyncio.to_thread(remove_from_store, self.settings.models_dir, ref, url)
        return [p.name for p in removed]

    async def _uninstall_hf(self, ref: HFRef) -> tuple[str, list[str]]:
        """Remove an installed Hugging Face model (all its files); the ref removed and names."""
        from worker.installs.hf import find_installs

        records = find_installs(self.settings.models_dir, str(ref))
        refs = sorted({r.ref for r in records})
        if len(refs) > 1:
            raise InstallError(
                f"{len(refs)} quantisations of {ref.base} are installed: {', '.join(refs)}.",
                hint=f"name the one to remove, e.g. `pendra rm {refs[0]}`",
            )
        if not records:
            raise ModelNotFound(
                f"{ref} is not installed in the built-in modelstore ({self.settings.models_dir}).",
                hint="see what is installed with `pendra models`",
            )
        shown = refs[0]
        backend = self.registry.get(BUILTIN)
        if (
            backend is not None
            and backend.capabilities.uninstall
            and any(r.complete for r in records)
        ):
            await backend.uninstall(shown)  # unloads it; refuses a model that is serving
        removed = await asyncio.to_thread(_remove_leftovers, records)
        return shown, [shown] if backend is not None else [p.name for p in removed]

    async def _uninstall_external(
        self, ref: ModelRef, kind: str, variant: CatalogueVariant | None
    ) -> str:
        backend = self.registry.get(kind)
        if backend is None or backend.status is not BackendStatus.READY:
            raise InstallError(
                f"The {kind} backend is not running here.", hint="see `pendra backends`"
            )
        target = backend_target(kind, variant) if variant else None
        if not target:
            raise BadRequest(
                f"The catalogue does not say what {ref} is called in {kind}.",
                hint=f"remove it with {kind}'s own tools",
            )
        await backend.uninstall(target)
        return target


def _remove_leftovers(records: list[InstallRecord]) -> list[Path]:
    """What is left of installs after the backend removed their GGUF and sidecar: split parts,
    projectors, partial downloads, the install folder."""
    from worker.installs.hf import remove_record

    removed: list[Path] = []
    for record in records:
        removed += remove_record(record)
    return removed


def installed_ref_of(models_dir: Path, ref: HFRef) -> str | None:
    """The ref of a complete install of ``ref`` (its only quantisation when it names none)."""
    from worker.installs.hf import find_installs

    complete = sorted({r.ref for r in find_installs(models_dir, str(ref)) if r.complete})
    if ref.quant is None and len(complete) > 1:
        return None
    return complete[0] if complete else None

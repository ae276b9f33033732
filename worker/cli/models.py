"""``pendra models``: list, install and remove models on every backend; ``models dir``.

With a worker running, every command goes through its admin API so the two never fight over the
modelstore (an install then shows the worker's own job and its progress events). Without one,
the command acts directly on the same ``PENDRA_HOME``. ``--json`` prints only JSON on stdout.

Exit codes: 0 done; 1 failed (the message says why and what to do); 130 interrupted. An install
interrupted by Ctrl-C keeps its partial download: running it again resumes.

REF is a catalogue ref (``qwen3.6:27b``) or, for the built-in backend, a Hugging Face ref
(``hf.co/OWNER/REPO[:QUANT]``). ``pendra pull``, ``list``/``ls`` and ``rm`` (:mod:`.verbs`) are the
same commands under the names Ollama users type.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

ORDER = 30
FINAL = frozenset({"done", "failed", "cancelled"})
INSTALL_DESCRIPTION = (
    "Install REF into the built-in backend (a verified download into the modelstore) or into "
    "another backend with --backend. REF is a catalogue ref (<id>:<tag>, see `pendra catalogue`) "
    "or a Hugging Face GGUF repository: hf.co/OWNER/REPO[:QUANT] (default quantisation Q4_K_M; "
    "also hf://… and huggingface.co URLs). HF_TOKEN (or `hf auth login`) is used for gated and "
    "private repositories, HF_ENDPOINT for a mirror."
)
REF_HELP = "e.g. gemma3:270m or hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="models on every backend; install / rm / dir",
        description="List the models on every backend, or install and remove them.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run_list)
    sub = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND")

    install = sub.add_parser(
        "install",
        help="install a catalogue model, with live progress",
        description=INSTALL_DESCRIPTION,
    )
    install.add_argument("ref", metavar="REF", help=REF_HELP)
    install.add_argument("--backend", metavar="B", help="pendra, ollama, lmstudio or speaches")
    install.add_argument("--json", action="store_true", help="print the finished job as JSON")
    install.set_defaults(handler=run_install)

    remove = sub.add_parser(
        "rm",
        help="remove an installed model",
        description="Remove REF from the backend it is installed in (or from --backend B).",
    )
    remove.add_argument("ref", metavar="REF")
    remove.add_argument("--backend", metavar="B")
    remove.add_argument("--json", action="store_true", help="machine-readable output")
    remove.set_defaults(handler=run_rm)

    directory = sub.add_parser("dir", help="print the built-in modelstore path")
    directory.set_defaults(handler=run_dir)


# -- pendra models dir ----------------------------------------------------------------------------
def run_dir(args: argparse.Namespace) -> int:
    from worker.settings import load_settings

    print(load_settings().models_dir)
    return 0


# -- pendra models [--json] -----------------------------------------------------------------------
def run_list(args: argparse.Namespace) -> int:
    from worker.settings import load_settings

    rows, source = asyncio.run(list_models(load_settings()))
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_models(rows, source))
    return 0


def rows_from_backends(backends: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (backend, model) from status-document backend entries (pure).

    Served models have ``"usable": true``. Files in the modelstore the built-in backend cannot
    serve (a truncated or hostile GGUF, a model of another task) follow with ``"usable": false``,
    their ``file`` and the reason in ``error``.
    """
    rows = []
    for entry in backends:
        if not isinstance(entry, dict):
            continue
        for model in entry.get("models") or []:
            if isinstance(model, dict) and model.get("id"):
                rows.append(
                    {
                        "backend": entry.get("name"),
                        "id": model["id"],
                        "task": model.get("task"),
                        "context_length": model.get("context_length"),
                        "size_bytes": model.get("size_bytes"),
                        "usable": True,
                    }
                )
        for bad in entry.get("unusable") or []:
            if isinstance(bad, dict) and (bad.get("file") or bad.get("id")):
                rows.append(
                    {
                        "backend": entry.get("name"),
                        "id": bad.get("id") or bad.get("file"),
                        "task": bad.get("task"),
                        "context_length": None,
                        "size_bytes": bad.get("size_bytes"),
                        "usable": False,
                        "file": bad.get("file"),
                        "error": bad.get("error") or "cannot be used",
                    }
                )
    return rows


async def list_models(settings: Any) -> tuple[list[dict[str, Any]], str]:
    from worker.admin.client import call_running_worker

    status = await call_running_worker(settings, lambda client: client.status())
    if isinstance(status, dict):
        return rows_from_backends(status.get("backends") or []), "the running worker"
    from worker.backends.snapshot import describe_backends_once

    backends = await describe_backends_once(settings)
    return rows_from_backends(backends), "this machine (no worker running)"


def render_models(rows: list[dict[str, Any]], source: str) -> str:
    from worker.units import format_bytes

    served = [row for row in rows if row.get("usable", True)]
    unusable = [row for row in rows if not row.get("usable", True)]
    if not served:
        text = (
            f"No models on any backend ({source}).\n"
            "Install one with `pendra models install REF` (see `pendra catalogue`).\n"
        )
        return text + _render_unusable(unusable)
    table = [("BACKEND", "MODEL", "TASK", "CONTEXT", "SIZE")]
    for row in served:
        table.append(
            (
                str(row["backend"]),
                str(row["id"]),
                str(row.get("task") or "-"),
                str(row.get("context_length") or "-"),
                format_bytes(row["size_bytes"]) if row.get("size_bytes") else "-",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in table]
    return "\n".join([*lines, f"({source})"]) + "\n" + _render_unusable(unusable)


def _render_unusable(rows: list[dict[str, Any]]) -> str:
    """The files that are not served, each with the reason (pure)."""
    if not rows:
        return ""
    lines = ["", "Not served (fix or remove these files):"]
    for row in rows:
        where = f"{row['backend']}: " if row.get("backend") not in (None, "pendra") else ""
        lines.append(f"  {where}{row.get('file') or row['id']} — {row.get('error')}")
    return "\n".join(lines) + "\n"


# -- pendra models install ------------------------------------------------------------------------
class ProgressPrinter:
    """Redraws one progress line on a terminal; prints phase changes only when not a terminal."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_phase: str | None = None
        self._drawn = False

    def show(self, event: dict[str, Any]) -> None:
        from worker.installs.progress_text import progress_line

        phase = event.get("phase")
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r\x1b[2K" + progress_line(event, width))
            self._drawn = True
            if phase in FINAL:
                self.stream.write("\n")
                self._drawn = False
        elif phase != self._last_phase:
            self.stream.write(progress_line(event, 120) + "\n")
        self._last_phase = phase
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def normalised_ref(text: str) -> str:
    """``text`` checked; a catalogue ref in its full form (``llama3.2`` → ``llama3.2:latest``), a
    Hugging Face ref as typed (a pasted URL keeps its revision or file)."""
    from worker.catalogue.refs import ModelRef
    from worker.installs.refs import parse_install_ref

    parsed = parse_install_ref(text)
    return str(parsed) if isinstance(parsed, ModelRef) else text.strip()


def run_install(args: argparse.Namespace) -> int:
    from worker.settings import load_settings

    ref = normalised_ref(args.ref)  # a bad ref is an error before anything else happens
    settings = load_settings()
    printer = ProgressPrinter()
    try:
        job = asyncio.run(install(settings, ref, args.backend, printer))
    except KeyboardInterrupt:
        printer.close()
        print(
            "pendra: install interrupted; the partial download is kept — run the same command "
            "to resume.",
            file=sys.stderr,
        )
        return 130
    finally:
        printer.close()
    if args.json:
        json.dump(job, sys.stdout, indent=2)
        sys.stdout.write("\n")
    if job.get("phase") == "done":
        if not args.json:
            print(f"Installed {job['ref']} into {job['backend']} ({job.get('detail') or 'done'}).")
        return 0
    from worker.errors import InstallError, split_rendered

    hint = job.get("hint") or None
    message = split_rendered(job.get("error") or f"it ended as {job.get('phase')}", hint)
    raise InstallError(f"Installing {job.get('ref')} failed: {message}", hint=hint)


async def install(
    settings: Any, ref: str, backend: str | None, printer: ProgressPrinter
) -> dict[str, Any]:
    """Install through the running worker when there is one, else directly; the final job."""
    via_worker = await _install_via_worker(settings, ref, backend, printer)
    if via_worker is not None:
        return via_worker
    return await _install_directly(settings, ref, backend, printer)


async def _install_via_worker(
    settings: Any, ref: str, backend: str | None, printer: ProgressPrinter
) -> dict[str, Any] | None:
    try:
        from worker.admin.client import AdminClient
    except ImportError:
        return None
    from worker.errors import NoWorkerRunning

    client = AdminClient.for_settings(settings)
    try:
        stream = await client.open_events({"install"})  # subscribe first: no event is missed
    except NoWorkerRunning:
        return None
    try:
        job = await client.install(ref, backend)
        printer.show(job)
        if job.get("phase") in FINAL:
            return job
        async for event in stream:
            if event.get("job_id") != job.get("id"):
                continue
            printer.show(event)
            if event.get("phase") in FINAL:
                return {**job, **{k: v for k, v in event.items() if k not in {"kind", "ts"}}}
    finally:
        await stream.aclose()
    raise NoWorkerRunning("The Pendra worker stopped during the install.")


async def _install_directly(
    settings: Any, ref: str, backend: str | None, printer: ProgressPrinter
) -> dict[str, Any]:
    from worker.backends.registry import BackendRegistry
    from worker.catalogue import Catalogue, CatalogueClient
    from worker.events import EventBus
    from worker.hf.refs import looks_like_hf_ref
    from worker.installs import InstallManager

    if looks_like_hf_ref(ref):  # resolved on the Hub by the job; no catalogue needed
        catalogue, builtin_only = Catalogue(models=()), True
    else:
        catalogue = await CatalogueClient(settings).load()
        if catalogue.cached:
            print(f"pendra: using the cached catalogue ({catalogue.stale_reason})", file=sys.stderr)
        _, variant = catalogue.find(ref)
        builtin_only = backend == "pendra" or (
            backend is None and variant.installs_into_pendra and settings.builtin_enabled
        )
    registry = BackendRegistry()
    if not builtin_only:
        from worker.backends.discovery import discover_backends

        registry = await discover_backends(settings)

    async def load() -> Any:
        return catalogue

    # The job's own failure is printed by the caller with its hint; without this the manager's
    # log line would reach stderr too (Python prints unhandled warnings when nothing is set up).
    logging.getLogger("worker").addHandler(logging.NullHandler())
    bus = EventBus()
    events = bus.subscribe(kinds={"install"})
    manager = InstallManager(settings, registry, bus, catalogue_loader=load)
    try:
        job = await manager.start(ref, backend)
        while True:
            event = await events.get()
            printer.show(event)
            if event.get("phase") in FINAL:
                break
        return (await job.wait()).as_dict()
    finally:
        await manager.close()
        for item in registry:
            await item.close()


# -- pendra models rm -----------------------------------------------------------------------------
def _stored_here(models_dir: Path, ref: str) -> bool:
    """Whether ``ref`` names a file of the built-in modelstore: an install's ref, or the id or
    file name of a GGUF copied in."""
    from worker.errors import PendraError
    from worker.installs.builtin import installed_files
    from worker.modelstore import ModelStore

    with contextlib.suppress(PendraError):
        if installed_files(models_dir, normalised_ref(ref)):
            return True
    return any(m.answers_to(ref) for m in ModelStore(models_dir).scan())


def run_rm(args: argparse.Namespace) -> int:
    from worker.settings import load_settings

    # As typed: a GGUF copied into the models directory goes by its file's name, which need not
    # be a valid catalogue ref (the worker normalises catalogue refs itself).
    result = asyncio.run(remove(load_settings(), args.ref.strip(), args.backend))
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"Removed {result['ref']} from {result['backend']}.")
    return 0


async def remove(settings: Any, ref: str, backend: str | None) -> dict[str, Any]:
    from worker.admin.client import call_running_worker

    result = await call_running_worker(settings, lambda client: client.uninstall(ref, backend))
    if isinstance(result, dict):
        return result
    from worker.backends.registry import BackendRegistry
    from worker.hf.refs import looks_like_hf_ref
    from worker.installs import InstallManager

    registry = BackendRegistry()
    local = looks_like_hf_ref(ref) or _stored_here(settings.models_dir, ref)
    if backend not in (None, "pendra") or (backend is None and not local):
        from worker.backends.discovery import discover_backends

        registry = await discover_backends(settings)
        registry.remove("pendra")  # files are removed directly; no model is serving here
    manager = InstallManager(settings, registry)
    try:
        return await manager.uninstall(ref, backend)
    finally:
        for item in registry:
            await item.close()


# -- plumbing -------------------------------------------------------------------------------------

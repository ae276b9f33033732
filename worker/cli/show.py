"""``pendra show REF [--json] [--template] [--verify]``: one model, like ``ollama show``.

A model of the built-in backend is read from the modelstore itself (no worker needed; nothing is
loaded): its GGUF header (architecture, parameters, quantisation, context and embedding length,
chat template, licence), its sidecar (ref, SHA-256, source, revision, projector, files) and its
files. ``--verify`` re-hashes the files against the SHA-256 recorded at install. A model of another
backend is described from that backend's own listing (``pendra models`` data).

REF is the model's id (``gemma3:270m``, ``hf.co/OWNER/REPO:QUANT``, a hand-dropped file's stem),
its file name, or a Hugging Face repository without a quantisation when one is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ORDER = 33


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show",
        help="one model: architecture, parameters, quantisation, context, template, file, sha256",
        description=(
            "Describe an installed model: architecture, parameters, quantisation, context length, "
            "chat template, files and SHA-256."
        ),
    )
    parser.add_argument("ref", metavar="REF", help="a model id from `pendra models`, or its file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--template", action="store_true", help="print only the chat template (built-in models)"
    )
    parser.add_argument(
        "--verify", action="store_true", help="re-hash the files against the recorded SHA-256"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from worker.errors import BadRequest, ModelNotFound
    from worker.settings import load_settings

    ref = args.ref.strip()
    if not ref or "\x00" in ref:
        raise BadRequest("Give the model to show, e.g. `pendra show gemma3:270m`.")
    settings = load_settings()
    backends = asyncio.run(_backends(settings))
    # The running worker's modelstore (it may run with another PENDRA_MODELS_DIR than this shell).
    store = next((b.get("endpoint") for b in backends or [] if b.get("name") == "pendra"), None)
    models_dir = Path(store) if isinstance(store, str) and store else settings.models_dir
    info = describe_builtin(models_dir, ref, verify=args.verify)
    if info is None:
        if backends is None:
            from worker.backends.snapshot import describe_backends_once

            backends = asyncio.run(describe_backends_once(settings))
        info = describe_external(backends, ref)
    if info is None:
        raise ModelNotFound(
            f"{ref} is not installed on any backend here.",
            hint=f"see `pendra models`; install it with `pendra pull {ref}`",
        )
    if args.template:
        template = info.get("chat_template")
        if not template:
            raise ModelNotFound(f"{info['id']} has no chat template in its GGUF.")
        sys.stdout.write(template if template.endswith("\n") else template + "\n")
        return 0
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(info))
    verified = info.get("verified")
    return 1 if verified is False else 0


# -- the built-in backend -------------------------------------------------------------------------
def _find(models: list[Any], ref: str) -> Any | None:
    from worker.installs.hf import same_model

    exact = [m for m in models if ref in (m.id, m.ref, m.path.name, m.path.name[:-5])]
    if exact:
        return exact[0]
    matches = [m for m in models if m.ref and same_model(ref, m.ref)]
    if len(matches) > 1:
        from worker.errors import BadRequest

        names = ", ".join(sorted(str(m.ref) for m in matches))
        raise BadRequest(f"{ref} names {len(matches)} installed models: {names}.", hint="name one")
    return matches[0] if matches else None


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def format_parameters(count: int | None) -> str | None:
    if not count:
        return None
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.3g}{unit}"
    return str(count)


def describe_builtin(models_dir: Path, ref: str, *, verify: bool = False) -> dict[str, Any] | None:
    from worker.modelstore.gguf_header import GGUFHeaderError, read_gguf_header
    from worker.modelstore.naming import split_parts
    from worker.modelstore.sidecar import SidecarError, read_sidecar
    from worker.modelstore.store import ModelStore

    model = _find(ModelStore(models_dir).scan(), ref)
    if model is None:
        return None
    try:
        sidecar = read_sidecar(model.sidecar)
    except (OSError, SidecarError):
        sidecar = None
    parts = split_parts(model.path)
    if sidecar and sidecar.files:
        names = dict.fromkeys([*(p.name for p in parts), *(f.file for f in sidecar.files)])
        files = [model.path.with_name(name) for name in names]
    else:
        files = [*parts]
    header_meta: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    parameters = 0
    for part in parts:
        try:
            header = read_gguf_header(part)
        except (GGUFHeaderError, OSError):
            continue
        parameters += header.parameter_count
        if part == model.path:
            header_meta, arrays = header.metadata, header.arrays
    facts = model.facts
    arch = facts.architecture if facts else None

    def meta(key: str) -> Any:
        return header_meta.get(f"{arch}.{key}") if arch else None

    template = header_meta.get("tokenizer.chat_template")
    recorded = {f.file: f.sha256 for f in sidecar.files} if sidecar else {}
    if sidecar and sidecar.sha256:
        recorded.setdefault(model.path.name, sidecar.sha256)
    file_rows = []
    for path in files:
        present = path.is_file()
        entry: dict[str, Any] = {
            "file": path.name,
            "size_bytes": path.stat().st_size if present else None,
            "sha256": recorded.get(path.name),
            "present": present,
        }
        if verify and present:
            entry["sha256_actual"] = _sha256(path)
            entry["verified"] = (
                entry["sha256_actual"] == entry["sha256"] if entry["sha256"] else None
            )
        file_rows.append(entry)
    checks = [f.get("verified") for f in file_rows if "verified" in f]
    tokens = arrays.get("tokenizer.ggml.tokens")
    return {
        "id": model.id,
        "backend": "pendra",
        "ref": model.ref,
        "usable": model.usable,
        "error": model.error,
        "task": model.task.value if model.task else None,
        "name": facts.name if facts else None,
        "architecture": arch,
        "parameters": format_parameters(parameters) or (facts.size_label if facts else None),
        "parameter_count": parameters or None,
        "quantisation": (facts.quantisation if facts else None)
        or (sidecar.quantisation if sidecar else None),
        "context_length": model.context_length,
        "embedding_length": meta("embedding_length"),
        "block_count": meta("block_count"),
        "vocab_size": tokens.length if tokens is not None else None,
        "has_chat_template": bool(template),
        "chat_template": template if isinstance(template, str) else None,
        "licence": header_meta.get("general.license") or (sidecar.licence if sidecar else None),
        "path": str(model.path),
        "size_bytes": model.size_bytes,
        "sha256": model.sha256,
        "source_url": sidecar.source_url if sidecar else None,
        "revision": sidecar.revision if sidecar else None,
        "installed_at": sidecar.installed_at if sidecar else None,
        "mmproj": sidecar.mmproj if sidecar else None,
        "files": file_rows,
        "verified": (all(checks) if all(c is not None for c in checks) else None)
        if checks
        else None,
        "source": model.source,
    }


# -- other backends -------------------------------------------------------------------------------
async def _backends(settings: Any) -> list[dict[str, Any]] | None:
    """The running worker's backend entries, or ``None`` when no worker runs."""
    from worker.admin.client import call_running_worker

    status = await call_running_worker(settings, lambda client: client.status())
    if not isinstance(status, dict):
        return None
    return [b for b in status.get("backends") or [] if isinstance(b, dict)]


def describe_external(backends: list[dict[str, Any]], ref: str) -> dict[str, Any] | None:
    for entry in backends:
        if not isinstance(entry, dict) or entry.get("name") == "pendra":
            continue
        for model in entry.get("models") or []:
            if isinstance(model, dict) and model.get("id") == ref:
                return {"backend": entry.get("name"), "endpoint": entry.get("endpoint"), **model}
    return None


# -- rendering ------------------------------------------------------------------------------------
def render(info: dict[str, Any]) -> str:
    from worker.units import format_bytes

    def line(label: str, value: Any) -> str | None:
        if value is None or value == "" or value == []:
            return None
        return f"    {label:<18}{value}"

    model = [
        line("id", info.get("id")),
        line("backend", info.get("backend")),
        line("task", info.get("task")),
        line("architecture", info.get("architecture") or info.get("family")),
        line("parameters", info.get("parameters") or info.get("parameter_size")),
        line("quantisation", info.get("quantisation") or info.get("quantization_level")),
        line("context length", info.get("context_length")),
        line("embedding length", info.get("embedding_length")),
        line("capabilities", ", ".join(info.get("capabilities") or []) or None),
    ]
    out = ["  Model", *[x for x in model if x]]
    if info.get("error"):
        out += [f"    {'unusable':<18}{info['error']}"]
    if info.get("backend") == "pendra":
        files = info.get("files") or []
        extra = f" (+{len(files) - 1} more file(s))" if len(files) > 1 else ""
        sha = info.get("sha256") or "not recorded (a file dropped in by hand)"
        details = [
            line("path", f"{info.get('path')}{extra}"),
            line("size", format_bytes(info.get("size_bytes"))),
            line("sha256", sha),
            line("source", info.get("source_url")),
            line("revision", info.get("revision")),
            line("projector", info.get("mmproj")),
            line("installed", info.get("installed_at")),
        ]
        out += ["", "  File", *[x for x in details if x]]
        for item in files:
            if "verified" in item:
                verdict = {True: "ok", False: "MISMATCH", None: "no recorded hash"}[
                    item["verified"]
                ]
                out.append(f"    {'verify ' + item['file']:<18}{verdict}")
            elif not item.get("present"):
                out.append(f"    {'missing':<18}{item['file']}")
        template = info.get("chat_template")
        first = template.strip().splitlines()[0][:60] if template else ""
        out += [
            "",
            "  Template",
            f"    {len(template)} characters: {first}…  (`pendra show {info['id']} --template`)"
            if template
            else "    none in the GGUF (a fallback chat format is used)",
        ]
    elif info.get("endpoint"):
        out += ["", "  Backend", f"    {'endpoint':<18}{info['endpoint']}"]
    if info.get("licence"):
        out += ["", "  Licence", f"    {info['licence']}"]
    return "\n".join(out) + "\n"

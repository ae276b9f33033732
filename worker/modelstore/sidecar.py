"""The ``<file>.gguf.meta.json`` sidecar a curated install writes beside its GGUF.

``{"ref", "task", "sha256", "source_url", "context_length", "installed_at"}``; unknown keys are
ignored, and ``chat_format`` (a llama.cpp chat format name for GGUFs without a template) is honoured
when present. A sidecar that cannot be used raises :class:`SidecarError` with the reason; the store
then falls back to the GGUF's own header and says so.

Installs from Hugging Face add what the repository said: ``revision`` (the commit the files were
pinned to), ``quantisation``, ``has_chat_template``, ``licence``, ``mmproj`` (the projector file
beside a vision model) and ``files`` (every file of the install with its SHA-256 and size: the
parts of a split GGUF, the projector). ``ref`` is then ``hf.co/OWNER/REPO:QUANT``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from worker.atomic_files import write_atomic
from worker.backends.base import Task

MAX_SIDECAR_BYTES = 256 * 1024
MAX_REF_LENGTH = 300
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_+\[\]()-][A-Za-z0-9._+\[\]()-]*$")
_OPTIONAL_TEXT = ("revision", "quantisation", "licence")


class SidecarError(ValueError):
    """A sidecar exists but is not usable."""


@dataclass(frozen=True)
class Sidecar:
    ref: str
    task: Task | None = None
    sha256: str | None = None
    source_url: str | None = None
    context_length: int | None = None
    installed_at: str | None = None
    chat_format: str | None = None
    revision: str | None = None
    quantisation: str | None = None
    has_chat_template: bool | None = None
    licence: str | None = None
    mmproj: str | None = None
    files: tuple[SidecarFile, ...] = ()

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["task"] = self.task.value if self.task else None
        data["files"] = [f.as_json() for f in self.files]
        for optional in ("chat_format", *_OPTIONAL_TEXT, "has_chat_template", "mmproj", "files"):
            if data[optional] in (None, []):
                del data[optional]
        return data


@dataclass(frozen=True)
class SidecarFile:
    """One file of a multi-file install, in the install's folder."""

    file: str
    sha256: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "size": self.size}


def _is_ref(ref: Any) -> bool:
    """A catalogue ref (no ``/``) or a Hugging Face ref (``hf.co/OWNER/REPO:QUANT``)."""
    if not isinstance(ref, str) or not ref.strip() or len(ref) > MAX_REF_LENGTH:
        return False
    text = ref.strip()
    if "/" not in text:
        return True
    from worker.errors import BadRequest
    from worker.hf.refs import looks_like_hf_ref, parse_hf_ref

    if not looks_like_hf_ref(text):
        return False
    try:
        parse_hf_ref(text)
    except BadRequest:
        return False
    return True


def _files(value: Any) -> tuple[SidecarFile, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 1000:
        raise SidecarError("'files' must be a list of {file, sha256, size}")
    out = []
    for item in value:
        name = item.get("file") if isinstance(item, dict) else None
        sha = item.get("sha256") if isinstance(item, dict) else None
        size = item.get("size") if isinstance(item, dict) else None
        if (
            not isinstance(name, str)
            or not _FILE_NAME.match(name)
            or ".." in name
            or not isinstance(sha, str)
            or not _SHA256.match(sha.lower())
            or isinstance(size, bool)
            or not isinstance(size, int)
            or size < 0
        ):
            raise SidecarError(f"'files' has an entry that is not {{file, sha256, size}}: {item!r}")
        out.append(SidecarFile(name, sha.lower(), size))
    return tuple(out)


def parse_sidecar(data: Any) -> Sidecar:
    """Validate a decoded sidecar document (pure)."""
    if not isinstance(data, dict):
        raise SidecarError("it is not a JSON object")
    ref = data.get("ref")
    if not _is_ref(ref):
        raise SidecarError(
            "'ref' must be a model reference like 'gemma3:270m' or "
            f"'hf.co/OWNER/REPO:QUANT', got {ref!r}"
        )
    assert isinstance(ref, str)
    task_raw = data.get("task")
    task = None
    if task_raw is not None:
        try:
            task = Task(task_raw)
        except ValueError:
            choices = ", ".join(t.value for t in Task)
            raise SidecarError(f"'task' must be one of {choices}, got {task_raw!r}") from None
    sha = data.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha.lower())):
        raise SidecarError(f"'sha256' must be 64 hex digits, got {sha!r}")
    context = data.get("context_length")
    if context is not None and (
        isinstance(context, bool) or not isinstance(context, int) or context <= 0
    ):
        raise SidecarError(f"'context_length' must be a positive integer, got {context!r}")
    chat_format = data.get("chat_format")
    if chat_format is not None and not isinstance(chat_format, str):
        raise SidecarError(f"'chat_format' must be a string, got {chat_format!r}")
    url = data.get("source_url")
    installed = data.get("installed_at")
    texts = {
        key: data.get(key) if isinstance(data.get(key), str) else None for key in _OPTIONAL_TEXT
    }
    template = data.get("has_chat_template")
    mmproj = data.get("mmproj")
    if mmproj is not None and (
        not isinstance(mmproj, str) or not _FILE_NAME.match(mmproj) or ".." in mmproj
    ):
        raise SidecarError(f"'mmproj' must be a file name beside the model, got {mmproj!r}")
    return Sidecar(
        ref=ref.strip(),
        task=task,
        sha256=sha.lower() if isinstance(sha, str) else None,
        source_url=url if isinstance(url, str) else None,
        context_length=context,
        installed_at=installed if isinstance(installed, str) else None,
        chat_format=chat_format or None,
        has_chat_template=template if isinstance(template, bool) else None,
        mmproj=mmproj,
        files=_files(data.get("files")),
        **texts,
    )


def read_sidecar(path: Path) -> Sidecar:
    """Read and validate a sidecar file; raises :class:`SidecarError` (or ``OSError``)."""
    size = path.stat().st_size
    if size > MAX_SIDECAR_BYTES:
        raise SidecarError(f"it is {size} bytes, more than a sidecar ever needs")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SidecarError(f"it is not valid JSON ({exc})") from None
    return parse_sidecar(data)


def write_sidecar(path: Path, sidecar: Sidecar) -> None:
    """Write atomically (temp file + rename), so a reader never sees half a sidecar."""
    text = json.dumps(sidecar.as_json(), indent=2, sort_keys=True) + "\n"
    write_atomic(path, text.encode("utf-8"))

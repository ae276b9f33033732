"""The ``<file>.gguf.meta.json`` sidecar a curated install writes beside its GGUF.

``{"ref", "task", "sha256", "source_url", "context_length", "installed_at"}``; unknown keys are
ignored, and ``chat_format`` (a llama.cpp chat format name for GGUFs without a template) is honoured
when present. A sidecar that cannot be used raises :class:`SidecarError` with the reason; the store
then falls back to the GGUF's own header and says so.
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
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["task"] = self.task.value if self.task else None
        if data["chat_format"] is None:
            del data["chat_format"]
        return data


def parse_sidecar(data: Any) -> Sidecar:
    """Validate a decoded sidecar document (pure)."""
    if not isinstance(data, dict):
        raise SidecarError("it is not a JSON object")
    ref = data.get("ref")
    if not isinstance(ref, str) or not ref.strip() or "/" in ref or len(ref) > 200:
        raise SidecarError(f"'ref' must be a model reference like 'gemma3:270m', got {ref!r}")
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
    return Sidecar(
        ref=ref.strip(),
        task=task,
        sha256=sha.lower() if isinstance(sha, str) else None,
        source_url=url if isinstance(url, str) else None,
        context_length=context,
        installed_at=installed if isinstance(installed, str) else None,
        chat_format=chat_format or None,
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

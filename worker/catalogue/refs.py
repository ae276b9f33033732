"""Model references: ``<catalogue id>:<tag>``, e.g. ``qwen3.6:27b``.

A ref ends up in file names, URLs of backend APIs and log lines, so it is checked strictly before
anything uses it: one conservative alphabet, no path separators, no ``..``, no NUL, no shell
metacharacters. The patterns are plain (no look-around) so pydantic's regex engine accepts them too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from worker.errors import BadRequest

# A name segment: letters, digits, "_" and "-", with single dots between (so no "..", no leading or
# trailing dot, never a hidden file name).
_SEGMENT = r"[A-Za-z0-9](?:[A-Za-z0-9_-]|\.[A-Za-z0-9_-])*"
ID_PATTERN = rf"^{_SEGMENT}$"
TAG_PATTERN = rf"^{_SEGMENT}$"
MAX_PART_LENGTH = 64

_SEGMENT_RE = re.compile(ID_PATTERN)
_HINT = "use a ref from `pendra catalogue`, like gemma3:270m (letters, digits, '.', '_', '-')"


@dataclass(frozen=True, order=True)
class ModelRef:
    """A validated ``id:tag`` pair."""

    id: str
    tag: str

    def __str__(self) -> str:
        return f"{self.id}:{self.tag}"

    @property
    def file_stem(self) -> str:
        """A file-name-safe stem; ids and tags never hold ``@``, so distinct refs never collide."""
        return f"{self.id}@{self.tag}"


def _problem(text: str) -> str | None:
    """Why ``text`` is not a valid ref, or ``None`` when it is."""
    if not text:
        return "the model ref is empty"
    if "\x00" in text:
        return "the model ref contains a NUL byte"
    if text.startswith(("/", "\\", "~")):
        return f"{text!r} looks like a file path, not a model ref"
    if "/" in text or "\\" in text:
        return f"{text!r} contains a path separator"
    if ".." in text:
        return f"{text!r} contains '..'"
    bad = sorted({c for c in text if not (c.isascii() and (c.isalnum() or c in "._-:"))})
    if bad:
        shown = " ".join(repr(c) for c in bad[:5])
        return f"{text!r} contains characters a model ref cannot have: {shown}"
    if text.count(":") != 1:
        return f"{text!r} is not of the form <id>:<tag>"
    model_id, tag = text.split(":")
    for what, part in (("id", model_id), ("tag", tag)):
        if not part:
            return f"{text!r} has an empty {what}"
        if len(part) > MAX_PART_LENGTH:
            return f"the {what} of {text[:80]!r}… is longer than {MAX_PART_LENGTH} characters"
        if not _SEGMENT_RE.match(part):
            return f"the {what} {part!r} must start with a letter or digit and not end with '.'"
    return None


def parse_ref(text: str) -> ModelRef:
    """Validate ``text`` as ``<id>:<tag>``; raises :class:`BadRequest` saying what is wrong."""
    text = text.strip() if isinstance(text, str) else ""
    problem = _problem(text)
    if problem:
        raise BadRequest(f"Invalid model ref: {problem}.", hint=_HINT)
    model_id, tag = text.split(":")
    return ModelRef(model_id, tag)


def is_valid_ref(text: str) -> bool:
    return _problem(text) is None

"""Hugging Face model refs (pure): ``hf.co/OWNER/REPO[:QUANT]`` and the spellings people paste.

Accepted, case-insensitive in the host part:

* ``hf.co/OWNER/REPO[:QUANT]`` and ``huggingface.co/OWNER/REPO[:QUANT]`` (what ``ollama pull``
  takes), with or without ``https://`` and ``www.``;
* ``hf://OWNER/REPO[:QUANT]``;
* a browser URL of the repository, a file or a folder: ``…/OWNER/REPO/tree/REV``,
  ``…/OWNER/REPO/blob/REV/FILE.gguf``, ``…/OWNER/REPO/resolve/REV/FILE.gguf`` (query and fragment
  are ignored). A file URL names that exact file; a folder URL its revision.

``:latest`` means "no quantisation asked for" (Ollama's meaning). Everything that ends up in a URL
or a file name is checked against a conservative alphabet first: no ``..``, no NUL, no backslash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from worker.errors import BadRequest

CANONICAL_HOST = "hf.co"
HOSTS = frozenset({"hf.co", "huggingface.co", "www.hf.co", "www.huggingface.co"})
SCHEME = "hf://"
MAX_NAME = 96
MAX_QUANT = 64

# An owner or repository name as the Hub allows them: letters, digits, '.', '_', '-'; not starting
# or ending with '.' or '-', and no '--' or '..' (huggingface_hub.utils.validate_repo_id).
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?$")
_QUANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_+\[\]()-](?:[A-Za-z0-9._+\[\]()-]*)$")
_HINT = (
    "write it as hf.co/OWNER/REPO or hf.co/OWNER/REPO:QUANT, "
    "e.g. hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M"
)


@dataclass(frozen=True)
class HFRef:
    """A GGUF repository on the Hub, and optionally the quantisation, revision or file wanted."""

    repo: str
    """``OWNER/REPO``."""
    quant: str | None = None
    revision: str | None = None
    file: str | None = None
    """An exact file path in the repository (from a pasted file URL)."""

    @property
    def owner(self) -> str:
        return self.repo.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repo.split("/", 1)[1]

    @property
    def base(self) -> str:
        """``hf.co/OWNER/REPO``: the ref without a quantisation."""
        return f"{CANONICAL_HOST}/{self.repo}"

    def with_quant(self, quant: str) -> str:
        """The ref a model installed from this repository in ``quant`` is known by."""
        return f"{self.base}:{quant}"

    def __str__(self) -> str:
        if self.file:
            return f"{self.base}/{self.file}"
        return self.with_quant(self.quant) if self.quant else self.base

    def url(self, endpoint: str) -> str:
        """The repository's page on ``endpoint`` (where a gated repo's licence is accepted)."""
        return f"{endpoint.rstrip('/')}/{self.repo}"


def looks_like_hf_ref(text: str) -> bool:
    """Whether ``text`` is meant as a Hugging Face ref (it may still be malformed)."""
    lowered = text.strip().lower()
    if lowered.startswith(SCHEME):
        return True
    for prefix in ("https://", "http://"):
        lowered = lowered.removeprefix(prefix)
    host = lowered.split("/", 1)[0]
    return host in HOSTS and "/" in lowered


def _bad(text: str, why: str) -> BadRequest:
    shown = text if len(text) <= 120 else text[:117] + "…"
    return BadRequest(f"Invalid Hugging Face ref {shown!r}: {why}.", hint=_HINT)


def _check_name(text: str, what: str, value: str) -> None:
    if not value:
        raise _bad(text, f"the {what} is empty")
    if len(value) > MAX_NAME:
        raise _bad(text, f"the {what} is longer than {MAX_NAME} characters")
    if not _NAME.match(value) or "--" in value or ".." in value:
        raise _bad(text, f"the {what} {value!r} is not a Hugging Face name")


def _check_quant(text: str, quant: str) -> None:
    if len(quant) > MAX_QUANT or not _QUANT.match(quant) or ".." in quant:
        raise _bad(text, f"the quantisation {quant!r} is not a quantisation name")


def _check_revision(text: str, revision: str) -> None:
    if len(revision) > 255 or not _REVISION.match(revision) or ".." in revision:
        raise _bad(text, f"the revision {revision!r} is not a branch, tag or commit")


def _check_file(text: str, path: str) -> None:
    parts = path.split("/")
    if len(path) > 1000 or any(not _PATH_SEGMENT.match(p) for p in parts):
        raise _bad(text, f"the file path {path!r} is not a plain path in the repository")
    if not path.lower().endswith(".gguf"):
        raise _bad(text, f"{parts[-1]!r} is not a GGUF file (the built-in backend runs GGUFs)")


def parse_hf_ref(text: str) -> HFRef:
    """Parse a Hugging Face ref; raises :class:`BadRequest` saying what is wrong."""
    raw = text.strip() if isinstance(text, str) else ""
    if not raw:
        raise _bad(raw, "it is empty")
    if "\x00" in raw or "\\" in raw or any(c.isspace() for c in raw):
        raise _bad(raw, "it contains a NUL, a backslash or white space")
    if not raw.isascii():
        raise _bad(raw, "it contains non-ASCII characters")
    rest = raw
    if rest.lower().startswith(SCHEME):
        rest = rest[len(SCHEME) :]
        if rest.split("/", 1)[0].lower() in HOSTS:  # hf://hf.co/OWNER/REPO
            rest = rest.split("/", 1)[1] if "/" in rest else ""
    else:
        if "://" not in rest:
            rest = "https://" + rest
        parts = urlsplit(rest)
        if (parts.hostname or "").lower() not in HOSTS:
            raise _bad(raw, "it is not on hf.co or huggingface.co")
        if parts.port is not None or parts.username or parts.password:
            raise _bad(raw, "a Hugging Face ref has no port or user name")
        rest = unquote(parts.path).lstrip("/")
    segments = [s for s in rest.split("/")]
    if len(segments) < 2 or not segments[0] or not segments[1]:
        raise _bad(raw, "it does not name OWNER/REPO")
    owner, name = segments[0], segments[1]
    quant: str | None = None
    if ":" in name and len(segments) == 2:
        name, quant = name.split(":", 1)
        if not quant:
            raise _bad(raw, "the quantisation after ':' is empty")
        if quant.lower() == "latest":
            quant = None
    _check_name(raw, "owner", owner)
    _check_name(raw, "repository name", name)
    if quant is not None:
        _check_quant(raw, quant)
    revision: str | None = None
    file: str | None = None
    extra = segments[2:]
    if extra and extra[-1] == "":
        extra = extra[:-1]  # a trailing slash
    if extra:
        kind = extra[0]
        if kind not in {"tree", "blob", "resolve"} or len(extra) < 2:
            raise _bad(raw, "after OWNER/REPO only /tree/REV, /blob/REV/FILE or /resolve/REV/FILE")
        revision = extra[1]
        _check_revision(raw, revision)
        if kind in {"blob", "resolve"}:
            if len(extra) < 3:
                raise _bad(raw, "the URL names no file")
            file = "/".join(extra[2:])
            _check_file(raw, file)
        elif len(extra) > 2:
            raise _bad(raw, "a folder URL inside a repository cannot be installed; use the repo")
    if revision in {"main"}:
        revision = None  # the default branch; resolved to its commit anyway
    return HFRef(f"{owner}/{name}", quant, revision, file)


def suggest_hf(text: str) -> str | None:
    """A hint for ``OWNER/REPO[:QUANT]`` typed without ``hf.co/``; ``None`` when it is not one."""
    candidate = text.strip()
    if candidate.count("/") != 1 or candidate.startswith("/") or ".." in candidate:
        return None
    try:
        ref = parse_hf_ref(f"{CANONICAL_HOST}/{candidate}")
    except BadRequest:
        return None
    return f"for a Hugging Face repository, write {ref}"

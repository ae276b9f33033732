"""Asking the Hugging Face Hub what to download, with ``huggingface_hub`` (blocking: run it in a
thread).

``HfApi().model_info(repo, files_metadata=True)`` lists the repository's files with each LFS
file's SHA-256 and size and the commit the listing belongs to; :mod:`.select` picks the files; a
``HEAD`` of each file's ``resolve/<commit>/<file>`` URL (``get_hf_file_metadata``) checks that this
machine may download it (a gated repository answers ``GatedRepo`` here, not in the listing) and
that the Hub's ``X-Linked-Etag`` / ``X-Linked-Size`` agree with the listing. The download URL is
pinned to that commit and the SHA-256 to the LFS hash, so what lands in the modelstore is exactly
the file the listing described.

``HF_ENDPOINT`` (a mirror, or a test's emulator) and ``HF_TOKEN`` (or the token ``hf auth login``
saved) are read when a ref is resolved; ``HF_HUB_OFFLINE`` stops before any request. The token
is sent only to the Hub's own origin: :mod:`worker.installs.download` drops it on a redirect to
another origin (the Hub's CDN), as ``huggingface_hub`` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from worker.errors import InstallError, ModelNotFound, PendraError
from worker.hf.refs import HFRef
from worker.hf.select import Build, Choice, RepoFile, choose, repo_ggufs

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT_S = 30.0
_TRUE = {"1", "on", "yes", "true"}
PIPELINE_TASKS = {
    "text-generation": "chat",
    "text2text-generation": "chat",
    "image-text-to-text": "chat",
    "conversational": "chat",
    "feature-extraction": "embedding",
    "sentence-similarity": "embedding",
    "text-ranking": "reranker",
}
"""The Hub's ``pipeline_tag`` → the task written to the sidecar (others: read from the header)."""


@dataclass(frozen=True)
class HFFile:
    """A file to download: its path in the repository, pinned hash and size, and its URL."""

    path: str
    sha256: str
    size: int
    url: str

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ResolvedHF:
    """What one Hugging Face ref resolved to, pinned to one commit."""

    ref: str
    """The ref the installed model is known by: ``hf.co/OWNER/REPO:QUANT``."""
    repo: str
    revision: str
    quant: str
    parts: tuple[HFFile, ...]
    mmproj: HFFile | None = None
    endpoint: str = DEFAULT_ENDPOINT
    task: str | None = None
    context_length: int | None = None
    has_chat_template: bool | None = None
    architecture: str | None = None
    parameters: int | None = None
    licence: str | None = None
    gated: bool = False
    note: str | None = None
    files: tuple[HFFile, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", (*self.parts, *([self.mmproj] if self.mmproj else [])))

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def page_url(self) -> str:
        return f"{self.endpoint}/{self.repo}"


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` as ``huggingface_hub`` reads it, without a trailing slash."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or the older ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def hub_token() -> str | None:
    """The token ``huggingface_hub`` would use: ``HF_TOKEN``, else what ``hf auth login`` saved."""
    from huggingface_hub import get_token

    try:
        token = get_token()
    except Exception:  # an unreadable token file or a failed OIDC exchange: go without
        return None
    token = (token or "").strip() or None
    if token:
        from worker.logs import redaction_filter

        redaction_filter().add_secret(token)  # whatever logs it by mistake, it shows as ***
    return token


def same_origin(url: str, other: str) -> bool:
    def origin(text: str) -> tuple[str, str, int | None]:
        parts = urlsplit(text)
        default = {"http": 80, "https": 443}.get(parts.scheme)
        return parts.scheme, (parts.hostname or "").lower(), parts.port or default

    return origin(url) == origin(other)


def offline_error(ref: str) -> InstallError:
    return InstallError(
        f"HF_HUB_OFFLINE is set, so {ref} cannot be looked up on the Hugging Face Hub.",
        hint="unset HF_HUB_OFFLINE to download it; installed models keep working offline",
    )


def _is_transport_error(exc: BaseException) -> bool:
    module = type(exc).__module__.split(".", 1)[0]
    return module in {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"} or (
        isinstance(exc, (OSError, TimeoutError)) and not _is_hub_http_error(exc)
    )


def _is_hub_http_error(exc: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    return isinstance(exc, HfHubHTTPError)


def hub_error(exc: BaseException, ref: HFRef, endpoint: str, token: str | None) -> PendraError:
    """A message a person can act on for an error ``huggingface_hub`` raised."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = ref.url(endpoint)
    if isinstance(exc, OfflineModeIsEnabled):
        return offline_error(str(ref))
    if isinstance(exc, GatedRepoError):
        if token:
            hint = (
                "the Hugging Face account of the token in use has no access yet: accept the "
                "licence with that account (some authors also approve each request), then install "
                "again"
            )
        else:
            hint = (
                "then give the worker a read token of the account that accepted it: set HF_TOKEN "
                "in the worker's environment (or run `hf auth login` as the user it runs as)"
            )
        return InstallError(
            f"{ref.base} is a gated repository: accept its licence at {page}.", hint=hint
        )
    if isinstance(exc, RepositoryNotFoundError):
        hint = "check the spelling (OWNER/REPO, as on its Hugging Face page)"
        if not token:
            hint += "; for a private repository set HF_TOKEN to a token that can read it"
        return ModelNotFound(
            f"{ref.base} is not a repository on {endpoint}, or it is private.", hint=hint
        )
    if isinstance(exc, RevisionNotFoundError):
        return ModelNotFound(
            f"{ref.base} has no revision {ref.revision!r}.", hint=f"see the branches at {page}"
        )
    if isinstance(exc, EntryNotFoundError):
        return ModelNotFound(
            f"{ref.base} has no file {ref.file!r}."
            if ref.file
            else f"A file of {ref.base} is gone.",
            hint=f"see its files at {page}/tree/main",
        )
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        detail = (exc.server_message or "").strip().splitlines()
        said = f": {detail[0][:200]}" if detail else ""
        if status == 401:
            return InstallError(
                f"The Hugging Face Hub refused the token in use (HTTP 401{said}).",
                hint="check HF_TOKEN (or log in again with `hf auth login`)",
            )
        return InstallError(
            f"The Hugging Face Hub at {endpoint} answered HTTP {status}{said}.",
            hint="try again later; if it persists, check HF_ENDPOINT and the repository's page",
        )
    if _is_transport_error(exc):
        reason = str(exc).strip() or type(exc).__name__
        return InstallError(
            f"Cannot reach the Hugging Face Hub at {endpoint}: {reason}.",
            hint="check the network (and HF_ENDPOINT if you use a mirror), then install again",
        )
    return InstallError(f"Looking up {ref.base} on the Hugging Face Hub failed: {exc}.")


def _repo_files(info: Any) -> list[RepoFile]:
    files = []
    for sibling in info.siblings or []:
        lfs = getattr(sibling, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        size = getattr(lfs, "size", None) if lfs is not None else getattr(sibling, "size", None)
        files.append(
            RepoFile(sibling.rfilename, size, sha.lower() if isinstance(sha, str) else None)
        )
    return files


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _licence(info: Any) -> str | None:
    card = getattr(info, "card_data", None)
    value = getattr(card, "license", None) if card is not None else None
    if isinstance(value, str) and value:
        return value
    for tag in info.tags or []:
        if isinstance(tag, str) and tag.startswith("license:"):
            return tag.split(":", 1)[1]
    return None


def _pin(item: RepoFile, ref: HFRef, repo: str, revision: str, endpoint: str) -> HFFile:
    from huggingface_hub import hf_hub_url

    if not item.sha256 or item.size is None:
        raise InstallError(
            f"{item.path} in {ref.base} is stored without an LFS SHA-256, so its download cannot "
            "be pinned and verified.",
            hint="ask the repository's author to store GGUFs with Git LFS, or pick another file",
        )
    url = hf_hub_url(repo, item.path, revision=revision, endpoint=endpoint)
    return HFFile(item.path, item.sha256, item.size, url)


def _check_file(
    hf_file: HFFile, ref: HFRef, revision: str, endpoint: str, token: str | None
) -> None:
    """``HEAD resolve/<commit>/<file>``: may we download it, and does the Hub agree on it?"""
    from huggingface_hub import get_hf_file_metadata

    meta = get_hf_file_metadata(hf_file.url, token=token or False, endpoint=endpoint)
    disagree = []
    if meta.commit_hash and meta.commit_hash != revision:
        disagree.append(f"commit {meta.commit_hash} instead of {revision}")
    if meta.etag and len(meta.etag) == 64 and meta.etag.lower() != hf_file.sha256:
        disagree.append(f"SHA-256 {meta.etag} instead of {hf_file.sha256}")
    if meta.size is not None and meta.size != hf_file.size:
        disagree.append(f"{meta.size} bytes instead of {hf_file.size}")
    if disagree:
        raise InstallError(
            f"The Hub's metadata for {hf_file.path} in {ref.base} disagrees with its file list "
            f"({'; '.join(disagree)}); nothing was downloaded.",
            hint="the repository may be changing right now: try again in a minute",
        )


def resolve(
    ref: HFRef,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    pin_sha256: str | None = None,
) -> ResolvedHF:
    """Resolve ``ref`` on the Hub (blocking). ``pin_sha256``: the first file must have this hash
    (a catalogue variant naming an HF file carries its own pin)."""
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    if hub_offline():
        raise offline_error(str(ref))
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token or False)
    try:
        info = api.model_info(
            ref.repo, revision=ref.revision, files_metadata=True, timeout=TIMEOUT_S
        )
        revision = info.sha
        if not isinstance(revision, str) or not revision:
            raise InstallError(f"The Hub did not say which commit {ref.base} is at.")
        found = repo_ggufs(_repo_files(info))
        choice: Choice = choose(found, ref.repo, quant=ref.quant, file=ref.file)
        build: Build = choice.build
        parts = tuple(_pin(p, ref, ref.repo, revision, endpoint) for p in build.parts)
        mmproj = _pin(choice.mmproj, ref, ref.repo, revision, endpoint) if choice.mmproj else None
        if pin_sha256 is not None and parts[0].sha256 != pin_sha256.lower():
            raise InstallError(
                f"The catalogue pins {parts[0].path} of {ref.base} to SHA-256 {pin_sha256}, but "
                f"the Hub's LFS hash is {parts[0].sha256}; nothing was downloaded.",
                hint="the file changed on the Hub after it was catalogued: report it, or install "
                f"{ref.base} directly if you trust the new file",
            )
        for hf_file in (*parts, *([mmproj] if mmproj else [])):
            _check_file(hf_file, ref, revision, endpoint, token)
    except PendraError:
        raise
    except Exception as exc:
        raise hub_error(exc, ref, endpoint, token) from None
    gguf = info.gguf if isinstance(info.gguf, dict) else {}
    template = gguf.get("chat_template")
    pipeline = info.pipeline_tag if isinstance(info.pipeline_tag, str) else None
    return ResolvedHF(
        ref=ref.with_quant(build.name),
        repo=ref.repo,
        revision=revision,
        quant=build.name,
        parts=parts,
        mmproj=mmproj,
        endpoint=endpoint,
        task=PIPELINE_TASKS.get(pipeline or ""),
        context_length=_int(gguf.get("context_length")),
        has_chat_template=isinstance(template, str) and bool(template) if gguf else None,
        architecture=gguf.get("architecture")
        if isinstance(gguf.get("architecture"), str)
        else None,
        parameters=_int(gguf.get("total")),
        licence=_licence(info),
        gated=bool(info.gated),
        note=choice.note,
    )

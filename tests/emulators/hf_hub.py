"""A Hugging Face Hub emulator (real aiohttp servers on 127.0.0.1) for the API ``huggingface_hub``
calls and the downloads the worker makes, with the Hub's CDN on a second origin.

What it follows (huggingface_hub ``HfApi.model_info``, ``get_hf_file_metadata`` and
``hf_raise_for_status``; the Hub's documented answers):

* ``GET /api/models/{repo}[/revision/{rev}]`` → ``{"id", "sha", "gated", "private",
  "pipeline_tag", "tags", "cardData", "gguf", "siblings": [{"rfilename"}]}``; with ``?blobs=true``
  (``files_metadata=True``) each sibling also has ``size``, ``blobId`` and, for LFS files,
  ``lfs: {"sha256", "size", "pointerSize"}``. Metadata of a gated repository is public.
* ``HEAD|GET /{repo}/resolve/{rev}/{path}`` → for an LFS file, ``302`` to the CDN origin with
  ``X-Repo-Commit``, ``X-Linked-Etag`` (the quoted SHA-256), ``X-Linked-Size`` and ``ETag``; for a
  file kept in git, the bytes (with ranges) and its git blob id as ``ETag``.
* Errors carry ``X-Error-Code``/``X-Error-Message``: an unknown (or private, unauthorised) repo is
  ``RepoNotFound`` (``401`` without a token, ``404`` with one); an unknown revision
  ``RevisionNotFound`` (404); an unknown file ``EntryNotFound`` (404); a gated repo's file without
  access ``GatedRepo`` (``401`` without a token, ``403`` with a token that was not granted).
* The CDN serves ``GET|HEAD /repos/{sha256}?…signature…`` with ``Range``/``If-Range`` (``206``,
  ``416``) and the SHA-256 as a strong ``ETag``, and never needs a token. It listens on 127.0.0.1
  too, but the Hub redirects to it as ``localhost``: another host name, as the real CDN is.

Knobs for the faults the tests need: a CDN that serves other bytes than the listing's hash
(``tamper``), that is slow (``delay_per_chunk_s``) or drops the connection (``cut_after``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .base import Emulator

POINTER_SIZE = 135
LFS_CHUNK = 256 * 1024


def file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubFile:
    """A file of a repository; its bytes live in ``source`` on disk."""

    path: str
    source: Path
    lfs: bool = True
    sha256: str = ""
    size: int = 0
    served: Path | None = None
    """Serve these bytes from the CDN instead of ``source`` (a file tampered with in transit)."""

    def __post_init__(self) -> None:
        self.size = self.source.stat().st_size
        self.sha256 = self.sha256 or file_sha256(self.source)


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile] = field(default_factory=dict)
    sha: str = ""
    gated: str | bool = False
    """``False``, ``"auto"`` or ``"manual"``, as the Hub reports it."""
    granted: set[str] = field(default_factory=set)
    """Tokens whose account may download a gated (or read a private) repository."""
    private: bool = False
    pipeline_tag: str | None = "text-generation"
    gguf: dict[str, Any] | None = None
    licence: str | None = "apache-2.0"

    def __post_init__(self) -> None:
        self.sha = self.sha or hashlib.sha1(self.repo_id.encode()).hexdigest()

    def add(self, path: str, source: Path, **knobs: Any) -> HubFile:
        item = HubFile(path, source, **knobs)
        self.files[path] = item
        return item


class CdnEmulator(Emulator):
    """The Hub's file CDN on its own origin: bytes by SHA-256, with ranges."""

    kind = "hf-cdn"

    def __init__(self) -> None:
        self.blobs: dict[str, HubFile] = {}
        self.delay_per_chunk_s = 0.0
        self.cut_after: int | None = None
        """Drop the connection after this many body bytes (once)."""
        super().__init__()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/repos/{sha256}", self.handle_blob)

    async def handle_blob(self, request: web.Request) -> web.StreamResponse:
        item = self.blobs.get(request.match_info["sha256"])
        if item is None:
            return web.Response(status=404, text="NoSuchKey")
        return await serve_bytes(
            request,
            item.served or item.source,
            f'"{item.sha256}"',
            delay_per_chunk_s=self.delay_per_chunk_s,
            cut=self,
        )


async def serve_bytes(
    request: web.Request,
    source: Path,
    etag: str,
    *,
    headers: dict[str, str] | None = None,
    delay_per_chunk_s: float = 0.0,
    cut: CdnEmulator | None = None,
) -> web.StreamResponse:
    """A file with ``Range``/``If-Range`` (``206``/``416``) and a strong ``ETag``; ``cut`` drops
    the connection once after its ``cut_after`` body bytes."""
    size = source.stat().st_size
    start = 0
    wanted = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    ranged = bool(wanted) and (if_range is None or if_range == etag)
    if ranged:
        assert wanted is not None
        start = int(wanted.removeprefix("bytes=").split("-", 1)[0])
        if start >= size:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
    response = web.StreamResponse(status=206 if ranged else 200)
    response.headers.update(
        {
            **(headers or {}),
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
    )
    if ranged:
        response.headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
    response.content_length = size - start
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    sent = 0
    with source.open("rb") as handle:
        handle.seek(start)
        while block := handle.read(LFS_CHUNK):
            limit = cut.cut_after if cut is not None else None
            if cut is not None and limit is not None and sent + len(block) > limit:
                await response.write(block[: limit - sent])
                cut.cut_after = None
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(block)
            sent += len(block)
            if delay_per_chunk_s:
                await asyncio.sleep(delay_per_chunk_s)
    await response.write_eof()
    return response


class HubEmulator(Emulator):
    """The Hub's API and ``resolve/`` endpoint; LFS files redirect to :attr:`cdn`."""

    kind = "hf-hub"

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.users: set[str] = set()
        """Tokens that are valid accounts (granted or not)."""
        self.cdn = CdnEmulator()
        super().__init__()

    # -- set-up --------------------------------------------------------------------------------
    def repo(self, repo_id: str, **options: Any) -> HubRepo:
        repo = HubRepo(repo_id, **options)
        self.repos[repo_id] = repo
        return repo

    def publish(self) -> None:
        """Make every LFS file of every repo downloadable from the CDN (call after adding)."""
        for repo in self.repos.values():
            for item in repo.files.values():
                if item.lfs:
                    self.cdn.blobs[item.sha256] = item

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        await self.cdn.start(0, host)
        # The real CDN is another host (cdn-lfs.hf.co, cas-bridge.xethub.hf.co): the Hub redirects
        # to the same loopback server under the name "localhost", so every client treats it as
        # another host, as it would the real one (huggingface_hub 1.x compares host names only).
        self.cdn.url = f"http://localhost:{self.cdn.port}"
        self.publish()
        return await super().start(port, host)

    async def stop(self) -> None:
        await super().stop()
        await self.cdn.stop()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/models/{owner}/{name}", self.handle_info)
        app.router.add_get("/api/models/{owner}/{name}/revision/{revision}", self.handle_info)
        app.router.add_get("/{owner}/{name}/resolve/{revision}/{path:.+}", self.handle_resolve)

    # -- helpers -------------------------------------------------------------------------------
    def _token(self, request: web.Request) -> str | None:
        value = request.headers.get("Authorization", "")
        return value[7:].strip() if value.startswith("Bearer ") else None

    def _error(self, status: int, code: str | None, message: str) -> web.Response:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        return web.Response(
            status=status,
            headers=headers,
            body=json.dumps({"error": message}).encode(),
            content_type="application/json",
        )

    def _find(self, request: web.Request) -> tuple[HubRepo | None, web.Response | None]:
        repo_id = f"{request.match_info['owner']}/{request.match_info['name']}"
        token = self._token(request)
        if token is not None and token not in self.users:
            return None, self._error(401, None, "Invalid credentials in Authorization header")
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and token not in repo.granted):
            return None, self._error(
                404 if token else 401,
                "RepoNotFound",
                "Repository not found",
            )
        revision = request.match_info.get("revision")
        if revision is not None and revision not in {"main", repo.sha}:
            return None, self._error(404, "RevisionNotFound", "Invalid rev id: " + revision)
        return repo, None

    # -- handlers ------------------------------------------------------------------------------
    async def handle_info(self, request: web.Request) -> web.Response:
        repo, error = self._find(request)
        if error is not None:
            return error
        assert repo is not None
        blobs = request.query.get("blobs", "").lower() in {"1", "true"}
        siblings = []
        for item in repo.files.values():
            sibling: dict[str, Any] = {"rfilename": item.path}
            if blobs:
                sibling["size"] = POINTER_SIZE if item.lfs else item.size
                sibling["blobId"] = git_blob_id(item.path.encode())
                if item.lfs:
                    sibling["lfs"] = {
                        "sha256": item.sha256,
                        "size": item.size,
                        "pointerSize": POINTER_SIZE,
                    }
            siblings.append(sibling)
        owner = repo.repo_id.split("/", 1)[0]
        body: dict[str, Any] = {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": owner,
            "sha": repo.sha,
            "lastModified": "2025-06-01T12:00:00.000Z",
            "createdAt": "2025-05-01T12:00:00.000Z",
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 1234,
            "likes": 12,
            "library_name": "gguf",
            "tags": ["gguf", *([f"license:{repo.licence}"] if repo.licence else [])],
            "pipeline_tag": repo.pipeline_tag,
            "cardData": {"license": repo.licence} if repo.licence else {},
            "siblings": siblings,
            "spaces": [],
            "usedStorage": sum(f.size for f in repo.files.values()),
        }
        if repo.gguf is not None:
            body["gguf"] = repo.gguf
        return web.json_response(body)

    async def handle_resolve(self, request: web.Request) -> web.StreamResponse:
        repo, error = self._find(request)
        if error is not None:
            return error
        assert repo is not None
        item = repo.files.get(request.match_info["path"])
        if item is None:
            return self._error(404, "EntryNotFound", "Entry not found")
        token = self._token(request)
        if repo.gated and token not in repo.granted:
            if token is None:
                return self._error(
                    401,
                    "GatedRepo",
                    f"Access to model {repo.repo_id} is restricted. You must have access to it "
                    "and be authenticated to access it. Please log in.",
                )
            return self._error(
                403,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted and you are not in the "
                f"authorized list. Visit {self.url}/{repo.repo_id} to ask for access.",
            )
        common = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes", "Vary": "Origin"}
        if item.lfs:
            location = (
                f"{self.cdn.url}/repos/{item.sha256}?response-content-disposition=attachment"
                f"&X-Amz-Expires=3600&X-Amz-Signature={hashlib.sha256(item.path.encode()).hexdigest()}"
            )
            return web.Response(
                status=302,
                headers={
                    **common,
                    "Location": location,
                    "ETag": f'"{item.sha256}"',
                    "X-Linked-Etag": f'"{item.sha256}"',
                    "X-Linked-Size": str(item.size),
                },
            )
        blob_id = git_blob_id(item.source.read_bytes())
        return await serve_bytes(request, item.source, f'"{blob_id}"', headers=common)

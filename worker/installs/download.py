"""A resumable, SHA-256-pinned download into a directory, atomic at the end.

The bytes stream into a hidden partial file beside the destination (``.<name>.part``; the
modelstore ignores hidden files), are hashed as they arrive (no second pass over a finished file),
and only a file whose size and SHA-256 match the pinned values is fsynced and renamed into place.

Resume: the partial survives an interruption, a cancel and ``kill -9``. Its validator (ETag or
Last-Modified, plus the URL and pinned hash it belongs to) is kept beside it in
``.<name>.part.json``; the next attempt re-hashes the partial's prefix (hash state cannot be saved
across processes) and asks for the rest with ``Range`` + ``If-Range``. A ``200`` instead of ``206``
means the server ignored the range or the file changed: start over. The pinned hash is the final
word either way, so a server that lies about ranges cannot produce a bad model, only a failed one.

Speed (issue 5: at least 0.95× plain ``curl -o`` while hashing; see docs/benchmarks.md). The
transfer uses aiohttp (about 3× httpx's async streaming on loopback, which parses in Python) in
2 MiB chunks; smaller chunks measured much slower (per-chunk Python and thread hand-offs). The
event loop only receives: one thread writes and another hashes (sink.py), so on a 2-core box the
SHA-256 (~1.7 GB/s) runs beside the receive instead of after it. The disk writeback is started
while the download runs (writeback.py), so the final fsync, which curl does not do at all, has a
few MiB left instead of the whole file; it runs in a thread so the worker's loop keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from worker import __version__
from worker.atomic_files import fsync_dir, write_atomic
from worker.errors import InstallError
from worker.installs.filelock import FileLock
from worker.installs.sink import ChunkSink, WriteFailed

CHUNK = 2 << 20
REHASH_BLOCK = 4 << 20
CONNECT_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 60.0
HF_HOSTS = ("huggingface.co", "hf.co")
PROGRESS_INTERVAL_S = 0.05
"""Byte progress at most this often (plus once at the start and the end of the transfer): a
loopback download settles thousands of chunks a second, the UI needs a few updates."""

Progress = Callable[[str, int, int | None], None]
"""``progress(phase, bytes_done, bytes_total)``; phases: resuming, downloading, verifying."""


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    sha256: str
    size: int
    resumed_from: int


def partial_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def validator_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part.json")


def lock_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.lock")


def is_hf_host(host: str | None) -> bool:
    host = (host or "").lower().rstrip(".")
    return any(host == h or host.endswith("." + h) for h in HF_HOSTS)


class IntegrityError(InstallError):
    """The downloaded bytes are not the pinned file (wrong SHA-256 or size): nothing installed."""

    code = "integrity_error"


def request_headers(
    url: str, environ: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Headers for the first request: identity encoding (byte offsets must be file offsets) and
    the ``HF_TOKEN`` bearer only for Hugging Face hosts, then ``extra`` (a caller that resolved
    the URL on the Hub passes the Hub's token for the Hub's own origin). Redirects to another
    origin (the HF CDN) drop ``Authorization`` (aiohttp does this on cross-origin redirects)."""
    headers = {"Accept-Encoding": "identity", "User-Agent": f"pendra-worker/{__version__}"}
    token = environ.get("HF_TOKEN", "").strip()
    if token and is_hf_host(urlsplit(url).hostname):
        headers["Authorization"] = f"Bearer {token}"
    headers.update(extra or {})
    return headers


def strong_validator(etag: str | None, last_modified: str | None) -> str | None:
    """What to send as ``If-Range``: a strong ETag, else Last-Modified (weak ETags cannot be)."""
    if etag and not etag.startswith("W/"):
        return etag
    return last_modified or None


def parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """``bytes 100-199/1000`` -> (100, 1000); ``bytes 100-199/*`` -> (100, None)."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        span, _, total = value[6:].partition("/")
        start = int(span.split("-", 1)[0])
        return start, (None if total.strip() == "*" else int(total))
    except ValueError:
        return None


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until everything is written (it may write less on some filesystems)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _hash_prefix(path: Path, length: int) -> Any:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        remaining = length
        while remaining:
            block = handle.read(min(REHASH_BLOCK, remaining))
            if not block:
                break
            hasher.update(block)
            remaining -= len(block)
    return hasher


def _read_validator(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _discard(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def disk_full_error(dest: Path, done: int, total: int) -> InstallError:
    return InstallError(
        f"The disk holding {dest.parent} is full: {done} of {total} bytes of {dest.name} were "
        "downloaded.",
        hint="free some space and run the install again to resume, or remove the model to "
        "discard the partial download",
    )


async def download_verified(
    url: str,
    dest: Path,
    *,
    sha256: str,
    size: int | None,
    progress: Progress | None = None,
    environ: Mapping[str, str] | None = None,
    timeout_s: float = READ_TIMEOUT_S,
    headers: Mapping[str, str] | None = None,
) -> DownloadResult:
    """Download ``url`` to ``dest``; the result is there only if its SHA-256 is ``sha256``.

    ``headers`` go with the first request (not with a redirect to another origin)."""
    sha256 = sha256.lower()
    report = progress or (lambda phase, done, total: None)
    part, meta = partial_path(dest), validator_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_path(dest)) as lock:
        if not lock.acquired:
            raise InstallError(
                f"Another process is already downloading {dest.name}.",
                hint="wait for it (see `pendra status`), or stop it first",
            )
        return await _download_locked(
            url,
            dest,
            part,
            meta,
            sha256,
            size,
            report,
            request_headers(url, os.environ if environ is None else environ, headers),
            timeout_s,
        )


async def _download_locked(
    url: str,
    dest: Path,
    part: Path,
    meta: Path,
    sha256: str,
    size: int | None,
    report: Progress,
    first_headers: dict[str, str],
    timeout_s: float,
) -> DownloadResult:
    # What is already there, and may we build on it?
    saved = _read_validator(meta)
    have = part.stat().st_size if part.exists() else 0
    if have and (saved.get("sha256") != sha256 or saved.get("url") != url):
        _discard(part, meta)  # a partial of another file (the catalogue changed): start over
        have = 0
    if size is not None and have > size:
        _discard(part, meta)
        have = 0
    hasher: Any = hashlib.sha256()
    if have:
        report("resuming", have, size)
        hasher = await asyncio.to_thread(_hash_prefix, part, have)
    resumed_from = have

    headers = dict(first_headers)
    validator = strong_validator(saved.get("etag"), saved.get("last_modified"))
    if have and (size is None or have < size):
        headers["Range"] = f"bytes={have}-"
        if validator:
            headers["If-Range"] = validator

    if size is not None and have == size:
        total = size
    else:
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=CONNECT_TIMEOUT_S,
            sock_connect=CONNECT_TIMEOUT_S,
            sock_read=timeout_s,
        )
        async with aiohttp.ClientSession(
            auto_decompress=False, read_bufsize=CHUNK, timeout=timeout, trust_env=True
        ) as session:
            try:
                async with session.get(url, headers=headers, allow_redirects=True) as response:
                    have, hasher, total = await _receive(
                        response, url, dest, part, meta, sha256, size, have, hasher, report
                    )
            except aiohttp.ClientError as exc:
                reason = str(exc) or type(exc).__name__
                raise InstallError(
                    f"The download of {dest.name} was interrupted after {have_now(part)} bytes: "
                    f"{reason}.",
                    hint="run the install again: it resumes where it stopped",
                ) from None
            except asyncio.TimeoutError:
                raise InstallError(
                    f"The server of {dest.name} stopped sending data for {timeout_s:.0f} s.",
                    hint="run the install again: it resumes where it stopped",
                ) from None

    # Verify, then make it durable and visible in one rename.
    report("verifying", have, total)
    got = hasher.hexdigest()
    if (size is not None and have != size) or got != sha256:
        _discard(part, meta)
        raise IntegrityError(
            f"The download of {dest.name} does not match the pinned SHA-256 "
            f"(expected {sha256}, got {got}; {have} bytes"
            + (f", expected {size})." if size is not None else ")."),
            hint="nothing was installed; the source file differs from the catalogue's pin — "
            "try again later or report it",
        )
    # In a thread: even with the writeback overlapped, the tail and the disk cache flush can take
    # tens of milliseconds, which the worker's event loop (serving requests) must not wait out.
    await asyncio.to_thread(_fsync_file, part)
    os.replace(part, dest)
    fsync_dir(dest.parent)
    _discard(meta)
    return DownloadResult(dest, got, have, resumed_from)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def have_now(part: Path) -> int:
    try:
        return part.stat().st_size
    except OSError:
        return 0


async def _receive(
    response: aiohttp.ClientResponse,
    url: str,
    dest: Path,
    part: Path,
    meta: Path,
    sha256: str,
    size: int | None,
    have: int,
    hasher: Any,
    report: Progress,
) -> tuple[int, Any, int | None]:
    """Handle one GET response: append (206), restart (200), or conclude (416)."""
    status = response.status
    if status == 416 and have:
        # Nothing after our offset: the partial may already be complete; the hash decides.
        return have, hasher, size
    if status == 206:
        span = parse_content_range(response.headers.get("Content-Range"))
        if span is None or span[0] != have:
            raise InstallError(
                f"The server answered a resume of {dest.name} with the wrong range "
                f"({response.headers.get('Content-Range')!r}, asked from byte {have}).",
                hint="run the install again",
            )
        total = span[1]
    elif status == 200:
        if have:
            have, hasher = 0, hashlib.sha256()  # the server ignored Range or the file changed
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    else:
        raise InstallError(
            f"Downloading {dest.name} failed: {url.split('?')[0]} answered HTTP {status}.",
            hint="check the network; if it persists, the catalogue entry may be out of date",
        )
    if size is not None and total is not None and total != size:
        raise IntegrityError(
            f"The server offers {total} bytes for {dest.name}, but the catalogue pins {size}.",
            hint="nothing was installed; the catalogue entry and the file disagree",
        )
    total = total if total is not None else size

    write_atomic(
        meta,
        json.dumps(
            {
                "url": url,
                "sha256": sha256,
                "size": total,
                "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
            }
        ).encode(),
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if have else os.O_TRUNC)
    fd = os.open(part, flags, 0o644)
    # Receive on the loop while one thread writes and another hashes (see sink.py).
    sink = ChunkSink(fd, have, hasher, _write_all)
    try:
        async with sink:
            report("downloading", have, total)
            next_report = time.monotonic() + PROGRESS_INTERVAL_S
            # iter_chunked yields up to CHUNK bytes, whatever has arrived (often one 256 KiB read).
            async for chunk in response.content.iter_chunked(CHUNK):
                await sink.put(chunk)
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + PROGRESS_INTERVAL_S
                    report("downloading", sink.done, total)
            await sink.drain()
    except WriteFailed as failed:
        if failed.error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full_error(dest, sink.done, total or 0) from None
        raise InstallError(f"Cannot write {part}: {failed.error.strerror}.") from None
    have = sink.done
    report("downloading", have, total)
    if total is not None and have < total:
        raise InstallError(
            f"The download of {dest.name} ended early at {have} of {total} bytes.",
            hint="run the install again: it resumes where it stopped",
        )
    return have, hasher, total


def free_space_error(dest: Path, needed: int, free: int) -> InstallError:
    return InstallError(
        f"Not enough disk space for {dest.name}: it needs {needed} more bytes, "
        f"{free} are free in {dest.parent}.",
        hint="free some space or point PENDRA_MODELS_DIR at a larger disk",
    )

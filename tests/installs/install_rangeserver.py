"""A real HTTP file server on 127.0.0.1 for install tests, with Range/If-Range and fault knobs.

Not a mock: aiohttp serving real bytes over a real socket. The knobs make the faults the tests
need happen on purpose: cut the connection after N bytes, ignore Range, change the file (new ETag).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web


@dataclass
class ServedFile:
    path: Path
    etag: str = '"v1"'
    cut_after: int | None = None
    """Close the connection after sending this many body bytes (once, then reset to None)."""
    ignore_range: bool = False
    delay_per_chunk_s: float = 0.0


@dataclass
class RangeServer:
    files: dict[str, ServedFile] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    catalogue: bytes | None = None
    """Served at /api/v1/catalogue when set, so the server doubles as a control plane."""
    url: str = ""
    _runner: web.AppRunner | None = None

    def add(self, name: str, path: Path, **knobs: object) -> str:
        self.files[name] = ServedFile(path, **knobs)  # type: ignore[arg-type]
        return f"{self.url}/files/{name}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append({"name": name, **{k: v for k, v in request.headers.items()}})
        served = self.files.get(name)
        if served is None:
            return web.Response(status=404, text="no such file")
        size = served.path.stat().st_size
        start = 0
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        use_range = (
            range_header
            and not served.ignore_range
            and (if_range is None or if_range == served.etag)
        )
        if use_range:
            assert range_header is not None
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= size:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        response = web.StreamResponse(status=206 if use_range else 200)
        response.headers["ETag"] = served.etag
        response.headers["Accept-Ranges"] = "bytes"
        response.content_length = size - start
        if use_range:
            response.headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        await response.prepare(request)
        sent = 0
        limit = served.cut_after
        with served.path.open("rb") as handle:
            handle.seek(start)
            while block := handle.read(256 * 1024):
                if limit is not None and sent + len(block) > limit:
                    await response.write(block[: limit - sent])
                    served.cut_after = None
                    assert request.transport is not None
                    request.transport.abort()  # the connection drops mid-body
                    return response
                await response.write(block)
                sent += len(block)
                if served.delay_per_chunk_s:
                    await asyncio.sleep(served.delay_per_chunk_s)
        await response.write_eof()
        return response

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/files/{request.match_info['name']}")

    async def _catalogue(self, request: web.Request) -> web.Response:
        if self.catalogue is None:
            return web.Response(status=404)
        return web.Response(body=self.catalogue, content_type="application/json")

    async def start(self) -> RangeServer:
        app = web.Application()
        app.router.add_get("/api/v1/catalogue", self._catalogue)
        app.router.add_get("/files/{name}", self._handle)
        app.router.add_get("/redirect/{name}", self._redirect)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def make_blob(path: Path, size: int, seed: int = 1) -> str:
    """Write ``size`` deterministic pseudo-random bytes; return their SHA-256."""
    hasher = hashlib.sha256()
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB pattern
    with path.open("wb") as handle:
        written = 0
        counter = 0
        while written < size:
            chunk = hashlib.sha256(block + counter.to_bytes(8, "little")).digest() + block
            chunk = chunk[: size - written]
            handle.write(chunk)
            hasher.update(chunk)
            written += len(chunk)
            counter += 1
    return hasher.hexdigest()

"""CatalogueClient against a real HTTP server on 127.0.0.1: fetch, cache, offline fallback."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from worker.catalogue import CatalogueClient, CatalogueError, sample_catalogue_bytes
from worker.catalogue.cache import cache_path
from worker.errors import ModelNotFound
from worker.settings import load_settings


class CatalogueServer:
    """Serves whatever ``body``/``status`` currently hold at /api/v1/catalogue."""

    def __init__(self) -> None:
        self.body: bytes = sample_catalogue_bytes()
        self.status = 200
        self.hits = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handler(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(body=self.body, status=self.status, content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/catalogue", self.handler)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CatalogueServer]:
    srv = CatalogueServer()
    await srv.start()
    monkeypatch.setenv("PENDRA_API_URL", srv.url)
    yield srv
    await srv.stop()


def client() -> CatalogueClient:
    return CatalogueClient(load_settings(), timeout_s=3)


async def test_fresh_catalogue_is_fetched_resolved_and_cached(
    server: CatalogueServer, pendra_home: Path
) -> None:
    catalogue = await client().load()
    assert not catalogue.cached
    assert catalogue.age_s is not None and catalogue.age_s < 5
    model, variant = catalogue.find("gemma3:270m")
    assert model.task == "chat"
    assert variant.gguf_url == f"{server.url}/files/gemma-3-270m-q4_k_m.gguf"
    stored = json.loads(cache_path(pendra_home / "cache").read_bytes())
    assert stored["api_url"] == server.url
    assert stored["document"] == json.loads(sample_catalogue_bytes())


async def test_offline_falls_back_to_the_cache_with_its_age(server: CatalogueServer) -> None:
    await client().load()
    await server.stop()  # the control plane is gone: connection refused
    catalogue = await client().load()
    assert catalogue.cached
    assert catalogue.stale_reason and "Cannot fetch" in catalogue.stale_reason
    assert catalogue.age_s is not None and catalogue.age_s >= 0
    assert catalogue.find("gemma3:270m")[1].size_bytes == 253113024


async def test_server_error_falls_back_to_the_cache(server: CatalogueServer) -> None:
    await client().load()
    server.status = 503
    catalogue = await client().load()
    assert catalogue.cached and "HTTP 503" in (catalogue.stale_reason or "")


async def test_malformed_document_keeps_the_cache(
    server: CatalogueServer, pendra_home: Path
) -> None:
    await client().load()
    before = cache_path(pendra_home / "cache").read_bytes()
    server.body = b'{"version": 1, "models": "nope"}'
    catalogue = await client().load()
    assert catalogue.cached and "no 'data' list" in (catalogue.stale_reason or "")
    assert cache_path(pendra_home / "cache").read_bytes() == before


async def test_malformed_document_without_cache_is_a_clear_error(server: CatalogueServer) -> None:
    server.body = b"<html>502 Bad Gateway</html>"
    with pytest.raises(CatalogueError) as caught:
        await client().load()
    assert "not valid JSON" in caught.value.message


async def test_offline_without_cache_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENDRA_API_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(CatalogueError) as caught:
        await client().load()
    assert "Cannot fetch the catalogue" in caught.value.message
    assert caught.value.hint and "APP_SERVER_WS_URL" in caught.value.hint


async def test_a_malformed_entry_does_not_hide_the_rest(server: CatalogueServer) -> None:
    doc: dict[str, Any] = json.loads(sample_catalogue_bytes())
    doc["models"].insert(0, {"id": "broken", "task": "chat", "variants": [{"tag": "x/y"}]})
    server.body = json.dumps(doc).encode()
    catalogue = await client().load()
    assert len(catalogue.warnings) == 1 and "broken" in catalogue.warnings[0]
    assert catalogue.find("gemma3:270m")


async def test_cache_from_another_api_url_is_not_used(
    server: CatalogueServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client().load()
    monkeypatch.setenv("PENDRA_API_URL", "http://127.0.0.1:9")
    with pytest.raises(CatalogueError):
        await client().load()


async def test_find_explains_unknown_refs(server: CatalogueServer) -> None:
    catalogue = await client().load()
    with pytest.raises(ModelNotFound) as caught:
        catalogue.find("gemma3:999b")
    assert "gemma3:270m" in (caught.value.hint or "")
    with pytest.raises(ModelNotFound):
        catalogue.find("nothing:1")


async def test_age_grows_with_the_cache(server: CatalogueServer, pendra_home: Path) -> None:
    await client().load()
    path = cache_path(pendra_home / "cache")
    stored = json.loads(path.read_bytes())
    stored["fetched_at"] = time.time() - 3600
    path.write_text(json.dumps(stored))
    server.status = 500
    catalogue = await client().load()
    assert catalogue.age_s is not None and 3590 < catalogue.age_s < 3700

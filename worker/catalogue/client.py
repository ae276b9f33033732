"""Fetching the public catalogue, with the last good copy as the offline fallback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from worker import __version__
from worker.catalogue import cache
from worker.catalogue.parse import (
    CatalogueError,
    parse_catalogue,
    parse_catalogue_bytes,
    resolve_urls,
)
from worker.catalogue.refs import ModelRef, parse_ref
from worker.catalogue.schema import CatalogueModel, CatalogueVariant
from worker.errors import ModelNotFound
from worker.settings import Settings

log = logging.getLogger(__name__)

CATALOGUE_PATH = "/api/v1/catalogue"
MAX_CATALOGUE_BYTES = 16 * 1024 * 1024  # a catalogue is kilobytes; refuse to buffer something huge


@dataclass(frozen=True)
class Catalogue:
    """The catalogue as this worker sees it, and where it came from."""

    models: tuple[CatalogueModel, ...]
    cached: bool = False
    fetched_at: float | None = None
    source_url: str = ""
    warnings: tuple[str, ...] = field(default=())
    stale_reason: str | None = None
    """Why the cached copy is shown instead of a fresh one (offline, server error, malformed)."""

    @property
    def age_s(self) -> float | None:
        return None if self.fetched_at is None else max(0.0, time.time() - self.fetched_at)

    def as_document(self) -> dict[str, Any]:
        """Plain JSON data (what the admin API's ``GET /v1/catalogue`` answers)."""
        return {
            "cached": self.cached,
            "fetched_at": self.fetched_at,
            "source_url": self.source_url,
            "stale_reason": self.stale_reason,
            "warnings": list(self.warnings),
            "models": [m.model_dump(mode="json") for m in self.models],
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Catalogue:
        """The inverse of :meth:`as_document`; raises CatalogueError on a document it cannot
        use (a running worker of another version, say)."""
        try:
            return cls(
                models=tuple(CatalogueModel.model_validate(m) for m in document["models"]),
                cached=bool(document.get("cached")),
                fetched_at=document.get("fetched_at"),
                source_url=str(document.get("source_url") or ""),
                warnings=tuple(str(w) for w in document.get("warnings") or ()),
                stale_reason=document.get("stale_reason"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogueError(
                f"The worker sent a catalogue this command cannot read: {exc}",
                hint="upgrade so the worker and this command are the same version",
            ) from None

    def find(self, ref: str | ModelRef) -> tuple[CatalogueModel, CatalogueVariant]:
        """The model and variant of ``ref``; raises :class:`ModelNotFound` with a suggestion."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        model = next((m for m in self.models if m.id == parsed.id), None)
        if model is None:
            raise ModelNotFound(
                f"{parsed} is not in the catalogue.",
                hint="list what is there with `pendra catalogue`",
            )
        variant = model.variant(parsed.tag)
        if variant is None:
            tags = ", ".join(f"{model.id}:{v.tag}" for v in model.variants)
            raise ModelNotFound(f"{parsed} is not in the catalogue.", hint=f"{model.id} has {tags}")
        return model, variant


class CatalogueClient:
    """``GET {api_url}/api/v1/catalogue`` (public, no auth) with a cache under ``$PENDRA_HOME``."""

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0) -> None:
        self._settings = settings
        self._timeout = timeout_s

    @property
    def url(self) -> str:
        return self._settings.api_url.rstrip("/") + CATALOGUE_PATH

    async def load(self) -> Catalogue:
        """The fresh catalogue, else the cached copy (``cached=True``), else a CatalogueError."""
        try:
            body = await self._fetch()
            parsed = parse_catalogue_bytes(body, source=f"catalogue from {self.url}")
        except CatalogueError as exc:
            fallback = self._from_cache(reason=exc.message)
            if fallback is None:
                raise
            log.warning("catalogue: %s; showing the cached copy", exc.message)
            return fallback
        for warning in parsed.warnings:
            log.warning("catalogue: %s", warning)
        now = time.time()
        try:
            cache.save(self._settings.cache_dir, json.loads(body), now, self._settings.api_url)
        except OSError as exc:  # a read-only home must not hide a good catalogue
            log.warning(
                "catalogue: cannot write the cache in %s: %s", self._settings.cache_dir, exc
            )
        return Catalogue(
            models=resolve_urls(parsed.models, self._settings.api_url),
            fetched_at=now,
            source_url=self.url,
            warnings=parsed.warnings,
        )

    async def _fetch(self) -> bytes:
        headers = {"Accept": "application/json", "User-Agent": f"pendra-worker/{__version__}"}
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, trust_env=True) as session,
                session.get(self.url, headers=headers, allow_redirects=True) as response,
            ):
                if response.status != 200:
                    raise CatalogueError(
                        f"The catalogue at {self.url} answered HTTP {response.status}."
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > MAX_CATALOGUE_BYTES:
                        raise CatalogueError(f"The catalogue at {self.url} is too large.")
                    chunks.append(chunk)
                return b"".join(chunks)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
            raise CatalogueError(
                f"Cannot fetch the catalogue from {self.url}: {reason}.",
                hint="check the network and APP_SERVER_WS_URL (the control plane)",
            ) from None

    def _from_cache(self, *, reason: str) -> Catalogue | None:
        stored = cache.load(self._settings.cache_dir)
        if stored is None or stored.api_url.rstrip("/") != self._settings.api_url.rstrip("/"):
            return None
        try:
            parsed = parse_catalogue(stored.document, source="cached catalogue")
        except CatalogueError:
            return None
        return Catalogue(
            models=resolve_urls(parsed.models, stored.api_url),
            cached=True,
            fetched_at=stored.fetched_at,
            source_url=self.url,
            warnings=parsed.warnings,
            stale_reason=reason,
        )

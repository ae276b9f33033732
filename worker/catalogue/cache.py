"""The last good catalogue, kept under ``$PENDRA_HOME/cache/`` for offline use.

The raw document is stored (not the parsed models) so a newer worker re-validates it with its own
rules. Writes are atomic (temporary file, fsync, rename): a crash never leaves half a cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.atomic_files import write_atomic

CACHE_NAME = "catalogue.json"


@dataclass(frozen=True)
class CachedDocument:
    document: Any
    fetched_at: float
    api_url: str


def cache_path(cache_dir: Path) -> Path:
    return cache_dir / CACHE_NAME


def save(cache_dir: Path, document: Any, fetched_at: float, api_url: str) -> None:
    payload = {"fetched_at": fetched_at, "api_url": api_url, "document": document}
    write_atomic(cache_path(cache_dir), json.dumps(payload, separators=(",", ":")).encode())


def load(cache_dir: Path) -> CachedDocument | None:
    """The cached document, or ``None`` when there is none or it is unreadable."""
    try:
        payload = json.loads(cache_path(cache_dir).read_bytes())
        return CachedDocument(
            document=payload["document"],
            fetched_at=float(payload["fetched_at"]),
            api_url=str(payload["api_url"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None

"""The catalogue document as pydantic models.

Unknown keys are ignored so the control plane can add fields without breaking deployed workers.
Validation is per model entry: :func:`worker.catalogue.parse.parse_catalogue` validates each entry
on its own, so one malformed entry is skipped with a warning instead of failing the document.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker.catalogue.refs import ID_PATTERN, TAG_PATTERN

TaskName = Literal["chat", "embedding", "image", "transcription"]
BACKEND_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class CatalogueVariant(BaseModel):
    """One installable build of a model (a size and a quantisation)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    tag: str = Field(pattern=TAG_PATTERN)
    parameters: str | None = None
    quantisation: str | None = None
    context_length: int | None = Field(default=None, gt=0)
    size_bytes: int | None = Field(default=None, ge=0)
    min_vram_bytes: int | None = Field(default=None, ge=0)
    backends: tuple[str, ...] = ()
    gguf_url: str | None = None
    gguf_sha256: str | None = None
    ollama_tag: str | None = None
    lmstudio_id: str | None = None
    speaches_id: str | None = None

    @field_validator("backends")
    @classmethod
    def _backend_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not BACKEND_NAME.match(name):
                raise ValueError(f"backend name {name!r} is not a backend kind")
        return value

    @field_validator("gguf_sha256")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        if value is None:
            return None
        lowered = value.strip().lower()
        if not SHA256_HEX.match(lowered):
            raise ValueError("gguf_sha256 must be 64 hex digits")
        return lowered

    @field_validator("gguf_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        parts = urlsplit(text)
        if parts.scheme in {"http", "https"} and parts.hostname:
            return text
        if not parts.scheme and not parts.netloc and text.startswith("/"):
            return text  # relative to the API URL (the sandbox serves its files this way)
        raise ValueError("gguf_url must be an http(s) URL or a path starting with '/'")

    @property
    def installs_into_pendra(self) -> bool:
        """Only a URL *with* a pinned hash may be installed into the built-in backend."""
        return bool(self.gguf_url and self.gguf_sha256)


class CatalogueModel(BaseModel):
    """One model with its variants."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    family: str = ""
    task: TaskName
    description: str = ""
    license: str = ""
    variants: tuple[CatalogueVariant, ...] = Field(min_length=1)

    def variant(self, tag: str) -> CatalogueVariant | None:
        return next((v for v in self.variants if v.tag == tag), None)

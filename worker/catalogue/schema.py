"""The catalogue as the worker holds it: models with their variants (pydantic models).

This is the sandbox's first document shape (``{"version": 1, "models": [...]}``); the
real API's shape (``{"data": [...]}``) is converted into it by :mod:`worker.catalogue.api_shape`.
Unknown keys are ignored so the control plane can add fields without breaking deployed workers.
Validation is per model entry: :func:`worker.catalogue.parse.parse_catalogue` validates each entry
on its own, so one malformed entry is skipped with a warning instead of failing the document.

A variant installs into the built-in backend with a pinned SHA-256 and either a ``gguf_url`` or a
Hugging Face repository and file (``hf_repo`` + ``hf_file``, optionally ``hf_revision``); in the
latter case the pin is checked against the Hub's LFS hash before anything is downloaded.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker.catalogue.refs import ID_PATTERN, TAG_PATTERN
from worker.errors import BadRequest

TaskName = Literal["chat", "embedding", "image", "transcription"]
BACKEND_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class CatalogueVariant(BaseModel):
    """One installable build of a model (a size and a quantisation)."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    tag: str = Field(pattern=TAG_PATTERN)
    parameters: str | None = None
    quantisation: str | None = None
    context_length: int | None = Field(default=None, gt=0)
    size_bytes: int | None = Field(default=None, ge=0)
    min_vram_bytes: int | None = Field(default=None, ge=0)
    backends: tuple[str, ...] = ()
    gguf_url: str | None = None
    gguf_sha256: str | None = None
    hf_repo: str | None = None
    hf_file: str | None = None
    hf_revision: str | None = None
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

    @field_validator("hf_repo")
    @classmethod
    def _hf_repo(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from worker.hf.refs import parse_hf_ref

        try:
            ref = parse_hf_ref(f"hf.co/{value.strip()}")
        except BadRequest as exc:
            raise ValueError(exc.message) from None
        if ref.quant or ref.file or ref.revision:
            raise ValueError("hf_repo must be OWNER/REPO")
        return ref.repo

    @field_validator("hf_file")
    @classmethod
    def _hf_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from worker.hf.refs import parse_hf_ref

        try:
            ref = parse_hf_ref(f"hf.co/o/r/resolve/main/{value.strip()}")
        except BadRequest as exc:
            raise ValueError(exc.message.replace("'hf.co/o/r/resolve/main/", "'")) from None
        return ref.file

    @field_validator("hf_revision")
    @classmethod
    def _hf_revision(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from worker.hf.refs import parse_hf_ref

        try:
            parse_hf_ref(f"hf.co/o/r/tree/{value.strip()}")
        except BadRequest as exc:
            raise ValueError(exc.message) from None
        return value.strip()

    @property
    def hf_source(self) -> bool:
        """The GGUF comes from a Hugging Face repository (``hf_repo`` + ``hf_file``)."""
        return bool(self.hf_repo and self.hf_file)

    @property
    def installs_into_pendra(self) -> bool:
        """Only a source (a URL or an HF file) *with* a pinned hash installs into the built-in
        backend."""
        return bool((self.gguf_url or self.hf_source) and self.gguf_sha256)


class CatalogueModel(BaseModel):
    """One model with its variants."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    family: str = ""
    task: TaskName
    description: str = ""
    license: str = ""
    variants: tuple[CatalogueVariant, ...] = Field(min_length=1)

    def variant(self, tag: str) -> CatalogueVariant | None:
        return next((v for v in self.variants if v.tag == tag), None)

"""The public model catalogue (format: :mod:`worker.catalogue.schema`): fetch, validate, cache,
look up refs.

``CatalogueClient(settings).load()`` returns a :class:`Catalogue` (``.models``, ``.cached``,
``.age_s``, ``.find(ref)``). ``sample_catalogue.json`` is the bundled catalogue that
``pendra sandbox`` serves; :func:`sample_catalogue_bytes` reads it from the installed package.
"""

from __future__ import annotations

from worker.catalogue.client import Catalogue, CatalogueClient
from worker.catalogue.parse import CatalogueError, ParsedCatalogue, parse_catalogue
from worker.catalogue.refs import ModelRef, is_valid_ref, parse_ref
from worker.catalogue.schema import CatalogueModel, CatalogueVariant

SAMPLE_CATALOGUE = "sample_catalogue.json"


def sample_catalogue_bytes() -> bytes:
    """The bundled sample catalogue, as served by ``pendra sandbox``."""
    from importlib import resources  # only the sandbox reads it; the worker does not load this

    return resources.files(__name__).joinpath(SAMPLE_CATALOGUE).read_bytes()


__all__ = [
    "SAMPLE_CATALOGUE",
    "Catalogue",
    "CatalogueClient",
    "CatalogueError",
    "CatalogueModel",
    "CatalogueVariant",
    "ModelRef",
    "ParsedCatalogue",
    "is_valid_ref",
    "parse_catalogue",
    "parse_ref",
    "sample_catalogue_bytes",
]

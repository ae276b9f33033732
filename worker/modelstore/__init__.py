"""The built-in backend's modelstore: GGUF files, their sidecars, classification and watching."""

from worker.modelstore.facts import ModelFacts, classify, facts_from_header
from worker.modelstore.gguf_header import GGUFHeader, GGUFHeaderError, read_gguf_header
from worker.modelstore.naming import is_partial, sidecar_path
from worker.modelstore.sidecar import Sidecar, SidecarError, read_sidecar, write_sidecar
from worker.modelstore.store import ModelStore, StoredModel

__all__ = [
    "GGUFHeader",
    "GGUFHeaderError",
    "ModelFacts",
    "ModelStore",
    "Sidecar",
    "SidecarError",
    "StoredModel",
    "classify",
    "facts_from_header",
    "is_partial",
    "read_gguf_header",
    "read_sidecar",
    "sidecar_path",
    "write_sidecar",
]

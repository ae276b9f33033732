"""The built-in backend: GGUFs from the modelstore, served in-process on llama.cpp."""

from worker.backends.pendra.backend import PendraBackend

__all__ = ["PendraBackend"]

"""The built-in backend: GGUFs from the modelstore, each loaded model in its own runner process.

The package import stays light (the backend class is loaded on first use), because every model
runner process imports this package too and should not pay for the worker-side modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.backends.pendra.backend import PendraBackend

__all__ = ["PendraBackend"]


def __getattr__(name: str) -> Any:
    if name == "PendraBackend":
        from worker.backends.pendra.backend import PendraBackend

        return PendraBackend
    raise AttributeError(name)

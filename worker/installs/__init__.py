"""Model installs with live progress: ``InstallManager(settings, registry, events)``.

Exports resolve lazily: :mod:`worker.catalogue` uses :mod:`worker.atomic_files` for its cache,
and the manager uses the catalogue, so importing the manager here eagerly would be circular.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.installs.manager import InstallJob, InstallManager

__all__ = ["InstallJob", "InstallManager"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from worker.installs import manager

        return getattr(manager, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

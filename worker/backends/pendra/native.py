"""llama-cpp-python's ctypes bindings, imported without the rest of its package.

``import llama_cpp`` also imports the high-level ``Llama`` class and with it numpy: a third of a
second and ~17 MB per process, none of which a runner uses (it calls the C API directly, and
renders chat templates itself). A runner process calls :func:`import_bindings` before anything
imports ``llama_cpp``: it registers a package whose namespace is exactly the bindings module's
(what ``from .llama_cpp import *`` in the package puts there), so ``llama_cpp.llama_decode`` and
friends resolve as usual. If the package's layout ever differs, it falls back to the full import.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types

log = logging.getLogger(__name__)


def import_bindings() -> types.ModuleType:
    """The ``llama_cpp`` module with the C API bindings (only them, when possible)."""
    existing = sys.modules.get("llama_cpp")
    if existing is not None:
        return existing
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("llama-cpp-python is not installed")
    package = types.ModuleType("llama_cpp")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    package.__package__ = "llama_cpp"
    sys.modules["llama_cpp"] = package
    try:
        bindings = importlib.import_module("llama_cpp.llama_cpp")
    except Exception as exc:  # another layout: take the whole package after all
        log.debug("importing only llama_cpp.llama_cpp failed (%s); importing llama_cpp", exc)
        for name in [n for n in sys.modules if n == "llama_cpp" or n.startswith("llama_cpp.")]:
            del sys.modules[name]
        return importlib.import_module("llama_cpp")
    for name, value in vars(bindings).items():
        if not name.startswith("_"):
            setattr(package, name, value)
    return package

"""The set of backends this worker serves from, and the rule that picks one for a model.

Routing rule when several backends serve the same model id: the built-in backend first, then the
external kinds in the order of :data:`worker.settings.BACKEND_KINDS` (Ollama, LM Studio, Speaches,
vLLM, llama-server, TGI, SGLang, LocalAI, generic OpenAI). A client can pick one explicitly with a
``backend/model`` id (e.g. ``ollama/llama3.2:3b``); every model is advertised under both names when
it is ambiguous.

A models filter (``models`` / ``MODELS`` in settings) narrows what is served: a model outside it is
neither advertised nor routed to, on whichever backend it lives. An entry matches a model's id or
its ``backend/id`` form.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from worker.backends.base import Backend, BackendStatus, ModelInfo
from worker.errors import ModelNotFound
from worker.settings import BACKEND_KINDS

_PRIORITY = {kind: index for index, kind in enumerate(("pendra", *BACKEND_KINDS))}


class BackendRegistry:
    """Holds the backends by kind and resolves a model id to the backend that serves it."""

    def __init__(
        self, backends: Iterable[Backend] = (), *, models_filter: Iterable[str] | None = None
    ) -> None:
        self._backends: dict[str, Backend] = {}
        self.models_filter: frozenset[str] | None = (
            frozenset(models_filter) if models_filter is not None else None
        )
        for backend in backends:
            self.add(backend)

    def allows(self, kind: str, model_id: str) -> bool:
        """Whether the models filter lets ``model_id`` on backend ``kind`` be served."""
        allowed = self.models_filter
        return allowed is None or model_id in allowed or f"{kind}/{model_id}" in allowed

    def add(self, backend: Backend) -> None:
        self._backends[backend.kind] = backend

    def remove(self, kind: str) -> Backend | None:
        return self._backends.pop(kind, None)

    def get(self, kind: str) -> Backend | None:
        return self._backends.get(kind)

    def __iter__(self) -> Iterator[Backend]:
        return iter(sorted(self._backends.values(), key=lambda b: _PRIORITY.get(b.kind, 99)))

    def __len__(self) -> int:
        return len(self._backends)

    def ready(self) -> list[Backend]:
        return [b for b in self if b.status is BackendStatus.READY]

    def resolve(self, model: str) -> tuple[Backend, str]:
        """The backend for ``model`` and the id to send it; raises :class:`ModelNotFound`."""
        kind, sep, rest = model.partition("/")
        filtered_out = False
        if sep and kind in self._backends and self._backends[kind].serves(rest):
            if self.allows(kind, rest):
                return self._backends[kind], rest
            filtered_out = True
        for backend in self:
            if backend.serves(model):
                if self.allows(backend.kind, model):
                    return backend, model
                filtered_out = True
        served = sorted({advertised for _b, _m, advertised in self.advertised_models()})
        if filtered_out:
            raise ModelNotFound(
                f"This worker does not serve the model {model!r}: its models setting leaves it "
                "out.",
                hint=f"models served here: {', '.join(served[:20]) or 'none'}",
            )
        hint = (
            f"models served here: {', '.join(served[:20])}"
            if served
            else "no backend on this worker serves any model yet; "
            "install one with `pendra models install`"
        )
        raise ModelNotFound(f"No backend on this worker serves the model {model!r}.", hint=hint)

    def advertised_models(self) -> list[tuple[Backend, ModelInfo, str]]:
        """Every (backend, model, advertised id) the worker offers, qualified ids for duplicates;
        models the filter leaves out are not offered."""
        seen: dict[str, int] = {}
        for backend in self.ready():
            for model in backend.models:
                if self.allows(backend.kind, model.id):
                    seen[model.id] = seen.get(model.id, 0) + 1
        out: list[tuple[Backend, ModelInfo, str]] = []
        claimed: set[str] = set()
        for backend in self.ready():
            for model in backend.models:
                if not self.allows(backend.kind, model.id):
                    continue
                if model.id not in claimed:
                    out.append((backend, model, model.id))
                    claimed.add(model.id)
                if seen[model.id] > 1:
                    out.append((backend, model, f"{backend.kind}/{model.id}"))
        return out

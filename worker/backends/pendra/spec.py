"""What the worker asks a runner to load: the ``load`` control message, as a dataclass.

Its own module because both sides use it: the worker (which never imports llama.cpp) builds it
from the memory plan, the runner loads from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class LoadSpec:
    """What the worker asks a runner to load (the ``load`` control message, minus ``op``)."""

    model_id: str
    path: str
    task: str  # "chat" | "embedding"
    kv_tokens: int
    slots: int
    context_length: int
    threads: int
    gpu_layers: int = 0
    n_ubatch: int = 512
    kv_type: str = "f16"
    batched: bool = True
    architecture: str | None = None
    chat_format: str | None = None
    pooling_type: int | None = None
    prefix_cache: bool = True  # keep finished sequences' KV for prompt caching

    def message(self) -> dict[str, Any]:
        return {"op": "load", **asdict(self)}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> LoadSpec:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in message.items() if k in names})

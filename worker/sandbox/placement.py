"""Which worker served a request, as the Pendra API reports it on its ``/api/v1`` routes.

A non-streamed reply carries a ``pendra`` block — ``{"worker": {"id"}, "request_id"}`` — in its
JSON body (beside the envelope of a private reply) and the ``X-Worker-Id`` / ``X-Request-Id``
headers. A stream ends with a trailer chunk before ``[DONE]``: empty ``choices`` and a ``pendra``
block with the relay's own timing and, when asked for (or on a plaintext stream), the placement.
The official SDK accepts exactly these fields unsealed on a private stream and refuses anything
else, so nothing here may ever carry model output.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from worker.private_inference.wire import PLACEMENT_HEADER


@dataclass
class Placement:
    worker_id: str
    request_id: str
    model: str
    sealed: bool = False
    """A private request: the trailer names the worker only when the client asked for it."""
    wants_worker_in_trailer: bool = False
    started: float = field(default_factory=time.monotonic)
    first_chunk_at: float | None = None

    @classmethod
    def for_request(
        cls, headers: Any, worker_id: str, request_id: str, model: str, *, sealed: bool
    ) -> Placement:
        return cls(
            worker_id=worker_id,
            request_id=request_id,
            model=model,
            sealed=sealed,
            wants_worker_in_trailer=headers.get(PLACEMENT_HEADER, "").strip() == "1",
        )

    def block(self) -> dict[str, Any]:
        return {"worker": {"id": self.worker_id}, "request_id": self.request_id}

    def headers(self) -> dict[str, str]:
        return {"X-Worker-Id": self.worker_id, "X-Request-Id": self.request_id}

    def saw_chunk(self) -> None:
        if self.first_chunk_at is None:
            self.first_chunk_at = time.monotonic()

    def trailer(self) -> bytes:
        """The stream's last ``data:`` event before ``[DONE]``."""
        ext: dict[str, Any] = {}
        if self.first_chunk_at is not None:
            ext["timing"] = {"ttft_ms": round(1000 * (self.first_chunk_at - self.started))}
        if not self.sealed or self.wants_worker_in_trailer:
            ext.update(self.block())
        chunk = {
            "id": self.request_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "choices": [],
            "pendra": ext,
        }
        if not ext:
            return b""
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"

    def error_fields(self) -> dict[str, str]:
        """What an in-band error names besides its message."""
        return {"request_id": self.request_id, "worker_id": self.worker_id}

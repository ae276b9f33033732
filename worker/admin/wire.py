"""The admin API's wire format, shared by the server and the client (documented in
docs/admin-api.md): HTTP/1.1 over the Unix socket, JSON bodies, NDJSON event stream, and one error
envelope that carries a :class:`~worker.errors.PendraError` across the socket intact.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections import deque
from pathlib import PurePath
from typing import Any

from worker.errors import PendraError, split_rendered

API_PREFIX = "/v1"
PATH_PING = f"{API_PREFIX}/ping"
PATH_STATUS = f"{API_PREFIX}/status"
PATH_EVENTS = f"{API_PREFIX}/events"
PATH_LOGS = f"{API_PREFIX}/logs"
PATH_CATALOGUE = f"{API_PREFIX}/catalogue"
PATH_INSTALLS = f"{API_PREFIX}/installs"
PATH_CANCEL_INSTALL = f"{API_PREFIX}/installs/{{job_id}}/cancel"
PATH_UNINSTALL = f"{API_PREFIX}/uninstall"
PATH_REFRESH_BACKENDS = f"{API_PREFIX}/backends/refresh"
PATH_DRAIN = f"{API_PREFIX}/drain"
PATH_HISTORY = f"{API_PREFIX}/history"
PATH_REQUESTS = f"{API_PREFIX}/requests"
PATH_LINK_RETRY = f"{API_PREFIX}/link/retry"
PATH_ROTATE_WORKLOAD_KEY = f"{API_PREFIX}/private-inference/rotate"

NDJSON = "application/x-ndjson"
KEEPALIVE_KIND = "keepalive"
MAX_LOG_TAIL = 10_000
MAX_REQUESTS_LISTED = 1000
MAX_BODY_BYTES = 64 * 1024


def _fallback(value: Any) -> Any:
    """Values components put in events and status that JSON lacks: enums, paths, dataclasses."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    for method in ("as_dict", "to_dict", "model_dump"):
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    return str(value)


def to_json(value: Any) -> str:
    return json.dumps(value, default=_fallback, ensure_ascii=False, separators=(",", ":"))


def to_jsonable(value: Any) -> Any:
    """Round-trip through JSON: dataclasses and enums in, plain data out."""
    return json.loads(to_json(value))


def encode_event(event: dict[str, Any]) -> bytes:
    return (to_json(event) + "\n").encode("utf-8")


def error_body(error: PendraError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "hint": error.hint}}


def _error_classes() -> dict[str, type[PendraError]]:
    # Breadth first, in definition order: when several classes share a code, the most general
    # one (``BadRequest`` for ``invalid_request_error``) is the class a caller catches, whichever
    # modules happen to be imported.
    found: dict[str, type[PendraError]] = {}
    pending: deque[type[PendraError]] = deque([PendraError])
    while pending:
        cls = pending.popleft()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


def error_from_body(body: Any, status: int) -> PendraError:
    """The PendraError a server sent, as its own class where this side knows it."""
    detail = body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        return PendraError(f"The worker answered with HTTP {status} and no explanation.")
    code = str(detail.get("code") or "internal_error")
    message = str(detail.get("message") or f"The worker answered with HTTP {status}.")
    hint = str(detail["hint"]) if detail.get("hint") else None
    cls = _error_classes().get(code, PendraError)
    error = cls.__new__(cls)
    PendraError.__init__(error, split_rendered(message, hint), hint=hint)
    if cls is PendraError:
        error.code = code
    return error


def parse_kinds(raw: str | None) -> set[str] | None:
    """``?kinds=install,gpu`` → ``{"install", "gpu"}``; absent or empty → all kinds."""
    if not raw:
        return None
    kinds = {part.strip() for part in raw.split(",") if part.strip()}
    return kinds or None

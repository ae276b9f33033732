"""Turn a backend's error answer into a :class:`BackendFailed` with the backend's own message.

Backends use several envelopes (reference/backends.md §7.6): OpenAI nested
``{"error": {"message": …}}`` (vLLM ≥ 0.10.1, llama.cpp, Ollama /v1, LM Studio), vLLM's old flat
``{"object": "error", "message": …}``, Ollama native ``{"error": "…"}``, FastAPI (Speaches)
``{"detail": "…"}`` or ``{"detail": [{"msg": …}]}``, and plain text. LM Studio even answers unknown
routes with HTTP 200 and an ``error`` body, so a 2xx body is checked too (:func:`error_in_body`).
"""

from __future__ import annotations

import json
from typing import Any

from worker.errors import BackendFailed

MAX_MESSAGE = 500


def message_from_body(body: Any) -> str | None:
    """The error message an error envelope carries, or None when ``body`` is not one."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        return str(message) if message is not None else json.dumps(error)[:MAX_MESSAGE]
    if isinstance(error, str) and error:
        return error
    if body.get("object") == "error" and "message" in body:
        return str(body["message"])
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail:
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return None


def error_in_body(body: Any) -> str | None:
    """The message of an error carried in a *successful* answer (LM Studio's 200 + ``error``)."""
    if isinstance(body, dict) and ("error" in body and body.get("error")):
        return message_from_body(body)
    if isinstance(body, dict) and body.get("object") == "error":
        return message_from_body(body)
    return None


def message_from_text(text: str) -> str:
    """Best-effort message from a raw error body (JSON envelope or plain text)."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            message = message_from_body(json.loads(stripped))
        except ValueError:
            message = None
        if message:
            return message[:MAX_MESSAGE]
    return (stripped or "(empty body)")[:MAX_MESSAGE]


def backend_failed(kind: str, status: int, text: str) -> BackendFailed:
    """A BackendFailed for an HTTP error answer; keeps 4xx/5xx as the backend sent it."""
    message = message_from_text(text)
    relay_status = status if 400 <= status <= 599 else 502
    return BackendFailed(f"{kind} answered HTTP {status}: {message}", status=relay_status)

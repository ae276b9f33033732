"""Errors a user (or a client of the worker) can act on.

Every error the worker shows a person carries what went wrong and what to do about it. The
message and the hint travel separately (admin API, link frames, install jobs) and are put together
only where a person reads them, by one of two functions: :func:`render` for a terminal (the CLI
prints ``pendra: {render(...)}`` for every error, then exits with ``error.exit_code``) and
:func:`render_inline` for one-line places (the OpenAI ``{"error": {...}}`` envelope). Nothing
here ever formats a traceback for a user.
"""

from __future__ import annotations

from typing import Any


def render(message: str, hint: str | None) -> str:
    """The error for a terminal: the message, then ``  → hint`` on its own line."""
    return f"{message}\n  → {hint}" if hint else message


def render_inline(message: str, hint: str | None) -> str:
    """The error on one line: ``message (hint)``."""
    return f"{message} ({hint})" if hint else message


def split_rendered(message: str, hint: str | None) -> str:
    """``message`` without a copy of ``hint`` that another hop already rendered into it.

    Errors cross processes (admin API, link) as message + hint; a sender that put the rendered
    text into the message would otherwise get the hint printed twice.
    """
    if hint:
        for rendered in (render("", hint), render_inline("", hint)):
            if message.endswith(rendered) and len(message) > len(rendered):
                return message[: -len(rendered)].rstrip()
    return message


class PendraError(Exception):
    """Base class: a message for a person, an optional hint, and how to surface it."""

    http_status: int = 500
    code: str = "internal_error"
    exit_code: int = 1
    retry_after_s: float | None = None
    """Set on overload errors (429/503): when a retry may succeed (the ``Retry-After`` header)."""

    param: str | None = None
    """The request field the error is about (OpenAI's ``error.param``), when there is one."""

    def __init__(self, message: str, *, hint: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if param is not None:
            self.param = param

    def __str__(self) -> str:
        return render(self.message, self.hint)

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI error envelope for this error."""
        text = render_inline(self.message, self.hint)
        return {
            "error": {"message": text, "type": self.code, "code": self.code, "param": self.param}
        }


class ConfigError(PendraError):
    """A setting has a value the worker cannot use; the message names the key and its source."""

    code = "config_error"
    exit_code = 2


class UsageError(PendraError):
    """The command cannot run the way it was started (no terminal for the app, …)."""

    code = "usage_error"
    exit_code = 2


class BadRequest(PendraError):
    """The request itself is wrong (missing or invalid field)."""

    http_status = 400
    code = "invalid_request_error"


class ModelNotFound(PendraError):
    """No backend on this worker serves the requested model."""

    http_status = 404
    code = "model_not_found"


class NotSupported(PendraError):
    """The backend lacks the capability (e.g. images on vLLM): a structured 501, never a crash."""

    http_status = 501
    code = "not_supported"


class BackendUnavailable(PendraError):
    """The backend could not be reached or died while answering."""

    http_status = 503
    code = "backend_unavailable"


class BackendFailed(PendraError):
    """The backend answered with an error of its own; its status and message are passed on."""

    code = "backend_error"

    def __init__(self, message: str, *, status: int = 502, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.http_status = status


class ModelLoadError(PendraError):
    """A model file could not be loaded (corrupt, truncated, not a GGUF, too big for memory)."""

    http_status = 500
    code = "model_load_error"


class InsufficientMemory(ModelLoadError):
    """A model (weights + the smallest useful KV cache) does not fit in the memory that is free."""

    http_status = 503
    code = "insufficient_memory"


class ModelCrashed(PendraError):
    """The process running a model died (a signal, an abort in llama.cpp, the OOM killer) while
    it served this request; the next request starts it again."""

    http_status = 500
    code = "model_crashed"


class Overloaded(PendraError):
    """Too many requests are waiting for a model: a 429 with ``Retry-After``."""

    http_status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after_s: float, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class ModelBusy(PendraError):
    """No room to load a model: every loaded model stayed busy for the whole bounded wait."""

    http_status = 503
    code = "model_busy"

    def __init__(self, message: str, *, retry_after_s: float, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class Cancelled(PendraError):
    """The client went away or the control plane cancelled the request."""

    http_status = 499
    code = "cancelled"


class WorkerBusy(PendraError):
    """The worker already runs its ``max_concurrent`` requests: the control plane should send
    this one elsewhere or retry it later. Refused at once rather than queued, so a full worker
    never hides its load."""

    http_status = 503
    code = "worker_busy"


class InstallError(PendraError):
    """An install or uninstall failed; the modelstore is left as it was before."""

    code = "install_error"


class NoWorkerRunning(PendraError):
    """A command that needs the running worker found none."""

    code = "no_worker"
    exit_code = 3

    def __init__(self, message: str = "No Pendra worker is running for this PENDRA_HOME.") -> None:
        super().__init__(
            message,
            hint=(
                "start it with `pendra --no-ui` (foreground) or `pendra service install` (service)"
            ),
        )

"""Final link errors: the worker stops instead of retrying, and exits with a distinct code."""

from __future__ import annotations

from worker.errors import PendraError


class AuthRejected(PendraError):
    """The control plane refused the worker key (wrong, revoked, or for another deployment)."""

    code = "auth_failed"
    exit_code = 5

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint
            or "check the key in the Pendra dashboard (it may have been revoked), then store the "
            "current one with `pendra key set`",
        )


class UpgradeRequired(PendraError):
    """The control plane does not speak this worker's protocol version."""

    code = "upgrade_required"
    exit_code = 6

    def __init__(self, message: str) -> None:
        super().__init__(
            message,
            hint="upgrade the worker: re-run the installer "
            "(curl -fsSL https://get.pendra.ai/worker | bash)",
        )


class LinkProtocolError(Exception):
    """The other end broke the protocol during the handshake; the link reconnects with backoff."""

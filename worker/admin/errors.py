"""Errors of the admin API's own making (the rest come from worker.errors)."""

from __future__ import annotations

from worker.errors import PendraError


class WorkerAlreadyRunning(PendraError):
    """A second worker tried to start on a PENDRA_HOME that already has a live one."""

    code = "worker_already_running"
    exit_code = 1


class AdminAccessDenied(PendraError):
    """The admin socket belongs to another user: only the worker's owner may talk to it."""

    code = "admin_access_denied"
    http_status = 403
    exit_code = 1


class AdminSocketError(PendraError):
    """The admin socket cannot be created where settings put it."""

    code = "admin_socket_error"
    exit_code = 2

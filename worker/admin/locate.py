"""Which admin socket the CLI and the app talk to for a ``PENDRA_HOME``.

A worker running as a process or a service listens on ``run/admin.sock``. The worker in the Docker
stack (``pendra stack up``) listens inside its container on a directory bind-mounted from
``stack/run/`` of the same home, so ``pendra status``, ``logs``, ``attach`` and the dashboard on
the host reach it too. The process/service socket wins when something answers there.
"""

from __future__ import annotations

from pathlib import Path

from worker.admin.errors import WorkerAlreadyRunning
from worker.admin.socket_file import socket_answers
from worker.settings import Settings

STACK_RUN_DIR = Path("stack") / "run"
SOCKET_NAME = "admin.sock"


def stack_socket(home: Path) -> Path:
    """The Docker stack worker's admin socket as seen from the host."""
    return home / STACK_RUN_DIR / SOCKET_NAME


def admin_socket_for(settings: Settings) -> Path:
    """The socket of the worker running for ``settings.home``: the process/service worker's
    when it answers, else the Docker stack's when that file exists, else the default."""
    own = settings.admin_socket
    stack = stack_socket(settings.home)
    if not stack.exists() or socket_answers(own, timeout_s=0.5):
        return own
    return stack


def refuse_beside_the_stack_worker(own_socket: Path) -> None:
    """Refuse to start a process or service worker while the Docker stack's worker answers for
    the same home: two workers with one key would compete for the control plane's link.

    ``own_socket`` is ``HOME/run/admin.sock``; inside the stack's container that home has no
    ``stack/run``, so the container's own worker never trips over this.
    """
    stack = stack_socket(own_socket.parent.parent)
    if stack.exists() and socket_answers(stack, timeout_s=0.5):
        raise WorkerAlreadyRunning(
            f"A Pendra worker is already running in Docker for {own_socket.parent.parent} "
            "(`pendra stack`).",
            hint="use it (`pendra status`, `pendra attach`), or stop it with `pendra stack down` "
            "before you start a worker as a process or a service",
        )

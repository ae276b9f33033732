"""The local admin API on ``$PENDRA_HOME/run/admin.sock``: server, client, wire format, log events.

See docs/admin-api.md for routes and bodies.
"""

from worker.admin.client import AdminClient, EventStream
from worker.admin.errors import AdminAccessDenied, AdminSocketError, WorkerAlreadyRunning
from worker.admin.log_events import EventLogHandler, install_log_handler
from worker.admin.server import AdminServer
from worker.admin.target import AdminTarget

__all__ = [
    "AdminAccessDenied",
    "AdminClient",
    "AdminServer",
    "AdminSocketError",
    "AdminTarget",
    "EventLogHandler",
    "EventStream",
    "WorkerAlreadyRunning",
    "install_log_handler",
]

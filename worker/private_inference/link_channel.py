"""What serving a sealed request needs from its link session (kept apart from the serving code,
so a session can hold one without loading what opens envelopes until a sealed request comes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from worker.router import Router


@dataclass(frozen=True)
class LinkChannel:
    """What serving a sealed request needs from its link session."""

    router: Router
    send: Callable[[str], Awaitable[None]]
    """Send a frame; raises when the link is gone (the request then ends)."""
    send_safely: Callable[[str], Awaitable[None]]
    """Send a frame, ignoring a link that is already closing."""

"""Several WebSocket frames in one TCP segment: the socket is corked while they are written.

With ``TCP_NODELAY`` (what aiohttp sets) every frame written goes out as its own segment, and on
the receiving side each one can wake the process that reads it. When the worker has two frames
ready at the same moment — a stream's ``start`` and its first ``chunk`` — corking the socket
around the two writes sends them together: one wake-up of the control plane instead of two, on
the path every first token takes. Linux only (``TCP_CORK``); elsewhere the frames go out as
before.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

_CORK = getattr(socket, "TCP_CORK", None)


@contextlib.contextmanager
def corked(sock: socket.socket | None) -> Iterator[None]:
    """Hold back partial segments of ``sock`` until the block ends (no-op without TCP_CORK)."""
    if _CORK is None or sock is None:
        yield
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1)
    except OSError:  # not a TCP socket (a test double, a Unix socket): nothing to cork
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _CORK, 0)  # sends what was held back

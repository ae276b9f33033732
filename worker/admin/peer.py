"""Who is on the other end of a Unix socket connection (defence in depth behind the 0600 mode).

Linux reports the peer's credentials with ``SO_PEERCRED``; where that is not available the socket's
file mode is the only gate, and ``peer_uid`` returns None.
"""

from __future__ import annotations

import os
import socket
import struct

_UCRED = struct.Struct("3i")  # pid, uid, gid


def peer_uid(sock: socket.socket | None) -> int | None:
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    _pid, uid, _gid = _UCRED.unpack(raw)
    return uid


def peer_allowed(uid: int | None, owner: int | None = None) -> bool:
    """The worker's own user may talk to it, and root (who can read the socket anyway)."""
    if uid is None:
        return True  # no credentials on this platform: the 0600 socket is the gate
    return uid in {os.geteuid() if owner is None else owner, 0}

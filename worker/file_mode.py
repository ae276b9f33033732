"""Whether a file holding a private key is shared with other users (POSIX permission bits)."""

from __future__ import annotations

import stat
import sys
from pathlib import Path


def shared_mode(path: Path) -> int | None:
    """``path``'s permission bits when its group or others have any access to it, else None
    (and None on Windows, whose permissions these bits do not describe). Raises what ``stat``
    raises for a missing or unreadable file."""
    if sys.platform.startswith("win"):
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & 0o077 else None

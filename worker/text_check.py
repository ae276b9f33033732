"""Text that cannot be UTF-8: an unpaired UTF-16 surrogate (``"\\ud800"``) in a JSON body.

JSON allows ``\\ud800`` escapes and Python decodes them into strings no encoder accepts, so such
a request would fail wherever it is next serialised (a frame, a runner, an HTTP call to a
backend) with an error that blames the wrong thing. It is refused up front instead, with a 400
naming the field.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_path(value: Any, path: str = "") -> str | None:
    """The JSON path of the first string (or key) holding a surrogate, or None."""
    if isinstance(value, str):
        return path or "body" if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _SURROGATE.search(key):
                return path or "body"
            found = lone_surrogate_path(item, where)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = lone_surrogate_path(item, f"{path}[{i}]")
            if found:
                return found
    return None


def unencodable_text_message(path: str) -> str:
    return (
        f"'{path}' contains an unpaired UTF-16 surrogate (such as \\ud800), which is not valid "
        "Unicode text; send the text as valid UTF-8"
    )

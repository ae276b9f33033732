"""JSON values a request may not carry anywhere: text that is not Unicode, numbers that are not.

* An unpaired UTF-16 surrogate (``"\\ud800"``): JSON allows the escape and Python decodes it into
  a string no encoder accepts, so such a request would fail wherever it is next serialised (a
  frame, a runner, an HTTP call to a backend) with an error that blames the wrong thing.
* ``NaN`` / ``Infinity``: not JSON at all, but Python's parser takes them, and a serialiser may
  quietly turn them into ``null`` (the default value) further down the path.

Both are refused up front with a 400 naming the field, as is a document nested deeper than
:data:`MAX_NESTING` levels.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

_SURROGATE = re.compile("[\ud800-\udfff]")


class Problem(NamedTuple):
    """The first bad value of a request: what is wrong, and where (the error's ``param``)."""

    message: str
    param: str | None


MAX_NESTING = 160
"""How deeply a request's JSON may nest: deeper than any real request (a JSON schema as deep as
the built-in backend takes is about 130 levels), shallow enough to be serialised, validated
and walked without running out of stack."""


def first_problem(value: Any, path: str = "", depth: int = 1) -> Problem | None:
    """The first bad value in a JSON document, or None when it is clean. (Recursive, but only
    :data:`MAX_NESTING` levels deep: a deeper document is itself the problem.)"""
    if isinstance(value, (dict, list)) and depth > MAX_NESTING:
        return Problem(f"the request nests deeper than {MAX_NESTING} levels", None)
    if isinstance(value, str):
        if _SURROGATE.search(value):
            return Problem(
                f"'{path or 'body'}' contains an unpaired UTF-16 surrogate (such as \\ud800), "
                "which is not valid Unicode text; send the text as valid UTF-8",
                path or None,
            )
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            message = f"'{path or 'body'}' must be a finite number, got {value!r}"
            return Problem(message, path or None)
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _SURROGATE.search(key):
                return first_problem(key, path)
            found = first_problem(item, where, depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = first_problem(item, f"{path}[{i}]", depth + 1)
            if found:
                return found
    return None

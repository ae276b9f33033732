"""A bound on how much Python runs, for tests that guard against pathological inputs.

"Parsing this hostile header must not loop over its claimed 2**60 entries" is a claim about work,
not about wall-clock time (which depends on how busy the machine is). :func:`within_budget` runs a
call while counting the Python lines it executes, and fails as soon as the count passes the
budget — so a runaway loop fails fast instead of hanging, and the result does not depend on load.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")


class WorkBudgetExceeded(AssertionError):
    """The call executed more Python lines than its budget allowed."""


def within_budget(call: Callable[[], T], max_lines: int) -> T:
    """``call()``'s result; raises :class:`WorkBudgetExceeded` past ``max_lines`` lines."""
    executed = 0

    def on_line(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal executed
        if event == "line":
            executed += 1
            if executed > max_lines:
                raise WorkBudgetExceeded(f"more than {max_lines} Python lines executed")
        return on_line

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        return on_line

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        return call()
    finally:
        sys.settrace(previous)


def lines_run(call: Callable[[], Any]) -> int:
    """How many Python lines ``call()`` executes (its exceptions are swallowed); for sizing."""
    executed = 0

    def on_line(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal executed
        if event == "line":
            executed += 1
        return on_line

    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: on_line)
    try:
        call()
    except Exception:
        pass
    finally:
        sys.settrace(previous)
    return executed

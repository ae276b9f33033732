"""Tokens of a whole (non-streamed) answer, reported while they are generated.

A non-streamed request says how many tokens it produced only in its final usage. Counted then,
a minute-long generation shows 0 tok/s for a minute and then a spike. A backend that sees its
tokens as they come (the built-in one does) reports them here; the router, which set the
reporter for the request, counts them into the worker's rate at once and only the rest of the
final usage at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

_reporter: ContextVar[Callable[[int], None] | None] = ContextVar("token_reporter", default=None)


def report_generated(tokens: int = 1) -> None:
    """Count ``tokens`` just generated for the current request (a no-op outside one)."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(tokens)


@contextlib.contextmanager
def reporting_to(reporter: Callable[[int], None]) -> Iterator[None]:
    """Route :func:`report_generated` calls of this task (and tasks it starts) to ``reporter``."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)

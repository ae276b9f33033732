"""Calling an install's progress callback, which may be sync or async."""

from __future__ import annotations

import inspect

from worker.backends.base import InstallProgress, ProgressCallback


async def report(progress: ProgressCallback, event: InstallProgress) -> None:
    result = progress(event)
    if inspect.isawaitable(result):
        await result

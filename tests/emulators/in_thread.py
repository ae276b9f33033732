"""Emulators served from a background thread, for tests that drive real processes synchronously.

A test that runs ``pendra`` commands with :func:`subprocess.run` blocks its own thread, so an
emulator on the test's event loop would stop answering the worker it is talking to. Here the
emulators get an event loop of their own on a daemon thread::

    with EmulatorThread() as emulators:
        url = emulators.start(OllamaEmulator([]))
        ...                                   # subprocess.run(...) freely
        emulators.call(lambda: ollama.models)  # read emulator state on its own loop
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .base import Emulator

T = TypeVar("T")
TIMEOUT_S = 30.0


class EmulatorThread:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._emulators: list[Emulator] = []

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for emulator in reversed(self._emulators):
            asyncio.run_coroutine_threadsafe(emulator.stop(), self._loop).result(TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(TIMEOUT_S)
        self._loop.close()

    def start(self, emulator: Emulator) -> str:
        """Start ``emulator`` on 127.0.0.1 (any free port); its base URL."""
        url = asyncio.run_coroutine_threadsafe(emulator.start(), self._loop).result(TIMEOUT_S)
        self._emulators.append(emulator)
        return str(url)

    def call(self, read: Callable[[], T]) -> T:
        """``read()`` run on the emulators' loop (so it sees a consistent state)."""

        async def run() -> Any:
            return read()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(TIMEOUT_S)

"""Private inference on this worker: its workload keys, its counters, its status block.

One :class:`PrivateInference` per worker process. It loads (or creates, on first start) the
workload key, rotates it on request, counts the private requests served, and describes itself for
``pendra status`` and the dashboard — a fingerprint and numbers, never anything a request said.
Each link session serves sealed requests through :class:`worker.private_inference.link.PrivateLink`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from worker.errors import PendraError
from worker.events import EventBus
from worker.private_inference.keyring import KeyRing
from worker.private_inference.workload_key import (
    WorkloadKey,
    key_path,
    load_or_create,
    write_key,
)

log = logging.getLogger(__name__)

EVENT_KIND = "private_inference"


class PrivateInferenceOff(PendraError):
    http_status = 503
    code = "private_inference_disabled"


class PrivateInference:
    def __init__(
        self, key_file: Path, *, enabled: bool = True, events: EventBus | None = None
    ) -> None:
        self.key_file = key_file
        self.enabled = enabled
        self.events = events
        self.keyring: KeyRing | None = None
        self.in_flight = 0
        self.served = 0
        self.failed = 0
        self.cancelled = 0
        self._rotate_lock = asyncio.Lock()

    @classmethod
    def for_home(
        cls, home: Path, *, enabled: bool = True, events: EventBus | None = None
    ) -> PrivateInference:
        return cls(key_path(home), enabled=enabled, events=events)

    # -- the key ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the workload key, creating it on first start. Raises WorkloadKeyProblem."""
        if not self.enabled:
            log.info("private inference is off (private_inference.enabled = false)")
            return
        key, created = load_or_create(self.key_file)
        self.keyring = KeyRing(key)
        if created:
            log.info("created the workload key %s (fingerprint %s)", self.key_file, key.kid)
        else:
            log.info("private inference on: workload key fingerprint %s", key.kid)

    @property
    def current(self) -> WorkloadKey | None:
        return self.keyring.current if self.keyring is not None else None

    async def rotate(self) -> dict[str, Any]:
        """Replace the workload key; the old one stays in memory while requests still need it."""
        if self.keyring is None:
            raise PrivateInferenceOff(
                "Private inference is off on this worker, so it has no workload key to rotate.",
                hint="set private_inference.enabled = true (or PENDRA_PRIVATE_INFERENCE=true)",
            )
        async with self._rotate_lock:
            new = WorkloadKey.generate()
            await asyncio.to_thread(write_key, self.key_file, new)
            old = self.keyring.rotate(new)
        log.info("rotated the workload key: %s replaces %s", new.kid, old.kid)
        self._publish()
        return self.status()

    # -- counters --------------------------------------------------------------------------------
    def begin(self) -> None:
        self.in_flight += 1
        self._publish()

    def end(self, outcome: str) -> None:
        self.in_flight -= 1
        if outcome == "served":
            self.served += 1
        elif outcome == "cancelled":
            self.cancelled += 1
        else:
            self.failed += 1
        self._publish()

    def _publish(self) -> None:
        if self.events is not None:
            self.events.publish(EVENT_KIND, **self.status())

    # -- status ----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The ``worker.private_inference`` block of the status document."""
        current = self.current
        return {
            "enabled": self.enabled,
            "fingerprint": current.kid if current is not None else None,
            "public_key": current.public_b64 if current is not None else None,
            "retired_keys_held": len(self.keyring.retired) if self.keyring is not None else 0,
            "in_flight": self.in_flight,
            "served": self.served,
            "failed": self.failed,
        }

"""Private inference on one link session: register the keys, take sealed requests, follow rotation.

Right after the welcome the session registers the current workload key with a ``workload_keys``
frame, and again after every rotation; the control plane answers each with ``workload_keys_ack``.
A sealed request takes its key lease the moment its frame arrives (before its task runs), so a
rotation in between can never drop the key it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from worker.private_inference.keyring import Lease
from worker.private_inference.link_channel import LinkChannel
from worker.private_inference.service import PrivateInference
from worker.private_inference.wire import ENVELOPE_KEY, EnvelopeError, parse_envelope
from worker.protocol import Request, WorkloadKeyInfo, WorkloadKeys, WorkloadKeysAck

log = logging.getLogger(__name__)

Start = Callable[[str, Coroutine[Any, Any, None]], "asyncio.Task[None] | None"]
"""The session's way to run a request: the task, or None when it refused (and closed) the work."""


class PrivateLink:
    def __init__(self, service: PrivateInference, channel: LinkChannel) -> None:
        self.service = service
        self.channel = channel
        self._unsubscribe: Callable[[], None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def registration(self) -> WorkloadKeys | None:
        ring = self.service.keyring
        if ring is None:
            return None
        keys = [WorkloadKeyInfo(kid=k.kid, public_key=k.public_b64) for k in ring.registered()]
        return WorkloadKeys(seq=ring.generation, keys=keys)

    async def start(self) -> None:
        """Register the current key and follow rotations for as long as the session lasts."""
        ring = self.service.keyring
        if ring is None:
            return
        self._unsubscribe = ring.on_change(self._registration_changed)
        await self._register()

    def close(self) -> None:
        """The session ended: nothing more can arrive sealed to a retired key on it."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for task in self._pending:
            task.cancel()
        if self.service.keyring is not None:
            self.service.keyring.link_ended()

    def _registration_changed(self) -> None:
        task = asyncio.ensure_future(self._register())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _register(self) -> None:
        frame = self.registration()
        if frame is not None:
            await self.channel.send_safely(frame.dump())

    def acknowledged(self, frame: WorkloadKeysAck) -> None:
        if self.service.keyring is not None:
            self.service.keyring.confirmed(frame.seq)

    def accept(self, frame: Request, start: Start) -> None:
        """Run a sealed request: lease its key now, serve it in a task, release at the end."""
        lease = self._lease(frame)
        from worker.private_inference.serve import serve_sealed  # on the first sealed request

        task = start(frame.id, serve_sealed(frame, lease, self.service, self.channel))
        if lease is None:
            return
        if task is None:
            lease.release()
        else:
            # Released however the task ends, even if it is cancelled before it ever runs.
            task.add_done_callback(lambda _task: lease.release())

    def _lease(self, frame: Request) -> Lease | None:
        ring = self.service.keyring
        if ring is None:
            return None
        with contextlib.suppress(EnvelopeError):
            return ring.lease(parse_envelope(frame.body.get(ENVELOPE_KEY)).kids)
        return None

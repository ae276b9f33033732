"""The workload keys a worker can open: the current one, and retired ones still owed requests.

Rotation makes a new key current and deregisters the old one with the control plane, but keeps
the old private key in memory while requests sealed to it may still arrive or are still running.
A request takes a :class:`Lease` on the key it was sealed to the moment its frame arrives, so a key
is never dropped under a request that needs it. A retired key is dropped (from memory; its file
was already replaced) once both hold:

* the control plane has acknowledged a key registration that no longer lists it — every request
  it routed to that key was sent before that acknowledgement, on the same ordered link — or the
  link it was registered on has ended (a new link registers only the current key);
* no request holds a lease on it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from worker.private_inference.workload_key import WorkloadKey


@dataclass
class _Retired:
    key: WorkloadKey
    generation: int
    """The registration generation that first left this key out."""


class Lease:
    """One request's hold on the key it was sealed to; release it when the request ends."""

    def __init__(self, ring: KeyRing, key: WorkloadKey) -> None:
        self._ring = ring
        self.key = key
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._ring._release(self.key.kid)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class KeyRing:
    def __init__(self, current: WorkloadKey) -> None:
        self.current = current
        self.generation = 0
        """Counts registrations: each rotation makes a new one the control plane must confirm."""
        self._confirmed = 0
        self._retired: dict[str, _Retired] = {}
        self._leases: Counter[str] = Counter()
        self._listeners: list[Callable[[], None]] = []

    # -- what is held ----------------------------------------------------------------------------
    @property
    def retired(self) -> list[WorkloadKey]:
        return [r.key for r in self._retired.values()]

    def registered(self) -> list[WorkloadKey]:
        """The keys to register with the control plane: only the current one."""
        return [self.current]

    def lease(self, kids: Iterable[str]) -> Lease | None:
        """A lease on the key among ``kids`` this worker holds (the current key first), or None."""
        wanted = set(kids)
        if self.current.kid in wanted:
            key = self.current
        else:
            found = next((r.key for kid, r in self._retired.items() if kid in wanted), None)
            if found is None:
                return None
            key = found
        self._leases[key.kid] += 1
        return Lease(self, key)

    # -- changes ---------------------------------------------------------------------------------
    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after each rotation; returns the function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def rotate(self, new: WorkloadKey) -> WorkloadKey:
        """Make ``new`` current; the old key is retired (kept until it is safe to drop)."""
        old = self.current
        self.generation += 1
        self._retired[old.kid] = _Retired(old, self.generation)
        self.current = new
        self._prune()
        for listener in list(self._listeners):
            listener()
        return old

    def confirmed(self, generation: int) -> None:
        """The control plane has replaced the registration with ``generation``'s."""
        self._confirmed = max(self._confirmed, min(generation, self.generation))
        self._prune()

    def link_ended(self) -> None:
        """The link ended: the next one registers only the current key, so nothing more can
        arrive sealed to a retired key."""
        self._confirmed = self.generation
        self._prune()

    def _release(self, kid: str) -> None:
        self._leases[kid] -= 1
        if self._leases[kid] <= 0:
            del self._leases[kid]
        self._prune()

    def _prune(self) -> None:
        for kid, retired in list(self._retired.items()):
            if retired.generation <= self._confirmed and not self._leases.get(kid):
                del self._retired[kid]

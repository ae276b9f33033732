"""Which idle sequence a new prompt should take, and what its KV cache already holds (pure).

A finished request leaves its sequence's KV in the pool ("warm") instead of clearing it, the way
llama-server's ``cache_prompt`` and vLLM's prefix caching do. The next request whose prompt starts
with those tokens — turn N+1 of a conversation resends turns 1..N — takes that sequence and
prefills only what is new. Warm caches are evicted least recently used first whenever a request
needs the cells.
"""

from __future__ import annotations

from collections.abc import Iterable


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """The idle sequence ids, each with the tokens whose KV it still holds."""

    def __init__(self, seq_ids: Iterable[int]) -> None:
        self._idle: dict[int, list[int]] = {seq: [] for seq in seq_ids}
        self._used: dict[int, int] = {}
        self._clock = 0

    def __len__(self) -> int:
        return len(self._idle)

    def __bool__(self) -> bool:
        return bool(self._idle)

    @property
    def cached_cells(self) -> int:
        """KV cells held by idle sequences."""
        return sum(len(tokens) for tokens in self._idle.values())

    def cached(self, seq_id: int) -> list[int]:
        return self._idle.get(seq_id, [])

    def choose(self, prompt: list[int]) -> tuple[int, int]:
        """(sequence id, tokens of ``prompt`` its cache holds) for a new request.

        The longest shared prefix wins (the most recently used among equals); with none, an
        empty sequence, else the least recently used warm one. At least the prompt's last token
        is always left to decode: its logits start the answer.
        """
        best, best_len = -1, 0
        for seq, tokens in self._idle.items():
            shared = min(common_prefix(tokens, prompt), len(prompt) - 1)
            if shared > best_len or (
                shared == best_len
                and shared > 0
                and self._used.get(seq, 0) > self._used.get(best, 0)
            ):
                best, best_len = seq, shared
        if best_len > 0:
            return best, best_len
        empty = [seq for seq, tokens in self._idle.items() if not tokens]
        if empty:
            return min(empty), 0
        return min(self._idle, key=lambda seq: self._used.get(seq, 0)), 0

    def take(self, seq_id: int) -> list[int]:
        """Hand ``seq_id`` to a request; returns the tokens its cache held."""
        return self._idle.pop(seq_id)

    def give_back(self, seq_id: int, tokens: list[int]) -> None:
        """A request left ``seq_id``; its cache holds ``tokens`` (empty: cleared)."""
        self._clock += 1
        self._used[seq_id] = self._clock
        self._idle[seq_id] = list(tokens)

    def evict(self, cells: int, keep: int | None = None) -> list[int]:
        """Clear warm caches, least recently used first, until ``cells`` are freed (or none is
        left but ``keep``); returns the sequence ids whose cache must be dropped."""
        freed = 0
        dropped = []
        for seq in sorted(self._idle, key=lambda s: self._used.get(s, 0)):
            if freed >= cells:
                break
            tokens = self._idle[seq]
            if seq == keep or not tokens:
                continue
            freed += len(tokens)
            self._idle[seq] = []
            dropped.append(seq)
        return dropped

"""Which idle sequence a prompt takes, and which warm caches go first (pure)."""

from __future__ import annotations

from worker.backends.pendra.prefix_cache import PrefixCache, common_prefix


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2, 3]) == 2


def test_a_follow_up_takes_the_sequence_that_holds_its_start() -> None:
    cache = PrefixCache(range(3))
    assert cache.choose([5, 6, 7]) == (0, 0)  # nothing warm: the first empty sequence
    cache.take(0)
    cache.give_back(0, [5, 6, 7, 8, 9])  # turn 1: prompt + answer
    cache.take(1)
    cache.give_back(1, [1, 2, 3])
    assert cache.choose([5, 6, 7, 8, 9, 10, 11]) == (0, 5)  # turn 2 re-sends turn 1
    assert cache.choose([1, 2, 9]) == (1, 2)
    assert cache.choose([4]) == (2, 0)  # no shared prefix: an empty sequence before a warm one


def test_the_last_prompt_token_is_always_decoded() -> None:
    cache = PrefixCache([0])
    cache.take(0)
    cache.give_back(0, [1, 2, 3])
    assert cache.choose([1, 2, 3]) == (0, 2)  # its logits start the answer
    assert cache.choose([1]) == (0, 0)


def test_without_empty_sequences_the_least_recently_used_is_reused() -> None:
    cache = PrefixCache(range(2))
    for seq, tokens in ((0, [1, 1]), (1, [2, 2])):
        cache.take(seq)
        cache.give_back(seq, tokens)
    assert cache.choose([3]) == (0, 0)
    cache.take(0)
    cache.give_back(0, [1, 1])  # used again: now the most recent
    assert cache.choose([3]) == (1, 0)


def test_equal_prefixes_prefer_the_most_recent() -> None:
    cache = PrefixCache(range(2))
    for seq in (0, 1):
        cache.take(seq)
        cache.give_back(seq, [7, 8, seq])
    assert cache.choose([7, 8, 9, 9]) == (1, 2)


def test_eviction_frees_cells_least_recently_used_first() -> None:
    cache = PrefixCache(range(4))
    for seq, size in ((0, 10), (1, 20), (2, 30)):
        cache.take(seq)
        cache.give_back(seq, list(range(size)))
    assert cache.cached_cells == 60
    assert cache.evict(15, keep=0) == [1]  # 0 is kept (a request is about to reuse it)
    assert cache.cached_cells == 40
    assert cache.evict(100) == [0, 2]
    assert cache.cached_cells == 0 and len(cache) == 4

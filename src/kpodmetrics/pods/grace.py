"""Grace cache: deleted pods stay resolvable for a while, bounded in size.

Why: kernel data is read once per cycle, so the last events of a pod are read after
the API server has already said the pod is gone. Keeping the pod resolvable for a
few seconds attributes them correctly; the size cap (LRU) keeps a burst of deletions
from growing memory without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class GraceCache(Generic[K, V]):
    """Entries expire `ttl` seconds after `add`; beyond `max_entries` the least
    recently used entry is evicted. Not thread-safe: the owner holds a lock."""

    def __init__(
        self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self.evictions = 0

    def add(self, key: K, value: V) -> list[V]:
        """Start (or restart) the grace period of `key`; returns values evicted by the cap."""
        self._items.pop(key, None)
        self._items[key] = (value, self._clock() + self.ttl)
        evicted: list[V] = []
        while len(self._items) > self.max_entries:
            _, (old, _) = self._items.popitem(last=False)
            evicted.append(old)
            self.evictions += 1
        return evicted

    def get(self, key: K) -> V | None:
        """The value while its grace period lasts (marks it recently used)."""
        item = self._items.get(key)
        if item is None or self._clock() >= item[1]:
            return None
        self._items.move_to_end(key)
        return item[0]

    def pop(self, key: K) -> V | None:
        """Take `key` out without expiring it (the pod came back)."""
        item = self._items.pop(key, None)
        return None if item is None else item[0]

    def expire(self) -> list[V]:
        """Remove and return every value whose grace period has ended."""
        now = self._clock()
        gone = [k for k, (_, until) in self._items.items() if now >= until]
        return [self._items.pop(k)[0] for k in gone]

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

"""The one small least-recently-used cache of the project (graphs, decode states, prepared prompts)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most ``max_items`` entries; ``get`` marks an entry used, ``put`` drops the stalest."""

    def __init__(self, max_items: int) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> list[K]:
        """Insert (or refresh) ``key``; returns the keys evicted to stay within max_items."""
        self._items[key] = value
        self._items.move_to_end(key)
        evicted = []
        while len(self._items) > self.max_items:
            evicted.append(self._items.popitem(last=False)[0])
        return evicted

    def keys(self) -> list[K]:
        """Oldest first."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

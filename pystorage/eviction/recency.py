"""Recency: the least recently used (or stored) keys go first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping


class Recency:
    """Keys in order of their last write, and of their last read when ``by_use``: the
    oldest goes first. A ``Policy`` (see ``pystorage.eviction``)."""

    __slots__ = ("_by_use", "_order", "capacity", "weight")

    def __init__(self, capacity: int, *, by_use: bool) -> None:
        self.capacity = capacity
        self._by_use = by_use
        self._order: OrderedDict[str, int] = OrderedDict()  # key: weight, oldest first
        self.weight = 0

    def __contains__(self, key: str) -> bool:
        return key in self._order

    def __len__(self) -> int:
        return len(self._order)

    def keys(self) -> list[str]:
        return list(self._order)

    def hit(self, key: str) -> None:
        if self._by_use:
            self._order.move_to_end(key)

    def write(self, key: str, weight: int) -> None:
        order = self._order
        self.weight += weight - order.get(key, 0)
        order[key] = weight
        order.move_to_end(key)

    def discard(self, key: str) -> None:
        self.weight -= self._order.pop(key, 0)

    def evict(self) -> list[str]:
        victims = []
        order = self._order
        while self.weight > self.capacity:
            victim, weight = order.popitem(last=False)
            self.weight -= weight
            victims.append(victim)
        return victims

    def restore(self, weights: Mapping[str, int], keep_order: bool) -> None:
        if keep_order:  # new keys first, then those held, in their order
            order = OrderedDict(
                (key, weight) for key, weight in weights.items() if key not in self._order
            )
            order.update((key, weights[key]) for key in self._order if key in weights)
        else:
            order = OrderedDict(weights)
        self._order = order
        self.weight = sum(order.values())

    def counters(self) -> dict[str, int]:
        return {}

    def save(self) -> bytes | None:
        return None  # the order is the store's own (a file's time, a row)

    def load(self, saved: bytes) -> bool:
        return False

"""Eviction policies: which keys a bounded store keeps.

A policy holds keys and their weights, never values, and is told of every write, use and
removal; it answers which keys to remove to stay within its capacity. ``Limit`` (the engine
of ``CountLimit`` and ``SizeLimit``) keeps one per limit, over any backend. Adding a policy
is a module here with a class of the ``Policy`` shape and one line in ``POLICIES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, Protocol

#: The policies by the name ``eviction=`` takes: the least recently used go first, the
#: least recently stored, or those adaptive W-TinyLFU values least.
Eviction = Literal["used", "stored", "tinylfu"]


class Policy(Protocol):
    """What ``Limit`` asks of a policy. Not thread-safe: the caller holds its lock."""

    @property
    def weight(self) -> int:
        """The total weight of the keys held."""

    def __contains__(self, key: str) -> bool: ...

    def __len__(self) -> int: ...

    def keys(self) -> list[str]:
        """The keys held, those to go first first."""

    def hit(self, key: str) -> None:
        """A read of a key it holds."""

    def write(self, key: str, weight: int) -> None:
        """A write: a new key, or a new weight for a key it holds (also a use). Removes
        nothing: ``evict`` says what must go."""

    def discard(self, key: str) -> None:
        """Forget ``key`` (removed by someone else), if held."""

    def evict(self) -> list[str]:
        """Forget and return the keys to remove so that the weight fits the capacity."""

    def restore(self, weights: Mapping[str, int], keep_order: bool) -> None:
        """Hold exactly ``weights`` (key: weight, least recent first, as a backend lists
        them). With ``keep_order``, the keys held already keep their place and what was
        learnt of them; new ones go first. Removes nothing."""

    def counters(self) -> dict[str, int]:
        """What it counts beyond evictions (e.g. ``refused`` admissions)."""

    def save(self) -> bytes | None:
        """What it learnt that the store's order of age does not keep, to outlive the
        process (None: nothing)."""

    def load(self, saved: bytes) -> bool:
        """Take back what ``save`` gave (perhaps another process's); False if it cannot."""


def _recency(by_use: bool) -> Callable[[int, int], Policy]:
    def make(capacity: int, entries: int) -> Policy:
        from pystorage.eviction.recency import Recency

        return Recency(capacity, by_use=by_use)

    return make


def _tinylfu(capacity: int, entries: int) -> Policy:
    from pystorage.eviction.tinylfu import WTinyLFU

    return WTinyLFU(capacity, entries, stable=True)  # a sketch to save with the entries


#: Each ``eviction=`` name with how to make its policy for a capacity (a total weight)
#: expected to hold about ``entries`` keys.
POLICIES: dict[str, Callable[[int, int], Policy]] = {
    "used": _recency(by_use=True),
    "stored": _recency(by_use=False),
    "tinylfu": _tinylfu,
}

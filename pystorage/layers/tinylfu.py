"""TinyLFU: a bounded in-memory mapping that keeps the keys most likely asked for again."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import attrs

from pystorage.eviction.tinylfu import WTinyLFU
from pystorage.layers.limit import positive
from pystorage.layers.memory import _MISSING, Memory, _Expiring


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class TinyLFU(Memory):
    """At most ``maxsize`` entries, chosen by adaptive W-TinyLFU (``eviction/tinylfu.py``):
    a new key enters a small recency window, and stays once the window moves on only if
    it was asked for more often than the entry it would replace.

    Where ``LRU`` keeps the most recent keys, this keeps the most valuable ones: it wins
    where some keys are asked for again and again among many asked for once (a scan, a
    loop a little larger than the cache, a popular set under a stream of one-off keys),
    and the window's share adapts to workloads where recency is what counts. Use it as
    ``LRU`` is used, alone or as a ``Tier``'s front. Deadlines work as in ``Memory``;
    expired entries go before any live one is evicted. ``counters()`` has ``evictions``
    (every key removed to keep the bound) and ``refused`` (those of them refused by main).
    """

    removes_entries: ClassVar[bool] = True

    maxsize: int = attrs.field(validator=positive)
    _policy: WTinyLFU = attrs.field(init=False, repr=False)
    _evictions: int = attrs.field(default=0, init=False, repr=False)

    @_policy.default
    def _new_policy(self) -> WTinyLFU:
        return WTinyLFU(self.maxsize)

    # Reads record their use under the lock: the policy's order is several structures
    # that must change together.

    def get(self, key: str) -> Any:
        value = self._data[key]
        self._used(key)
        if type(value) is _Expiring:
            return self._unwrap(key, value)
        return value

    def lookup(self, key: str, default: Any = None) -> Any:
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            return default
        self._used(key)
        if type(value) is _Expiring:
            try:
                return self._unwrap(key, value)
            except KeyError:
                return default
        return value

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        found = super().get_with_ttl(key)
        self._used(key)
        return found

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._found(keys, self.lookup)  # each a use

    def _used(self, key: str) -> None:
        policy = self._policy
        with self._lock:
            if key in policy:  # not if a writer removed it meanwhile
                policy.hit(key)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if ttl is not None or type(value) is _Expiring:
            self.set_many({key: value}, ttl)
            return
        with self._lock:
            self._store(key, value)

    def _store(self, key: str, entry: Any) -> None:
        data, policy = self._data, self._policy
        data[key] = entry
        if key in policy:
            policy.hit(key)  # a rewrite is a use; every entry weighs 1
            return
        if self._heap and len(data) > self.maxsize:
            self._purge_locked()  # expired entries go before any live one
        policy.write(key, 1)
        removed = policy.evict()
        for victim in removed:
            del data[victim]
        self._evictions += len(removed)

    def _left_locked(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._policy.discard(key)

    def counters(self) -> dict[str, int]:
        counts = super().counters()
        counts["evictions"] = self._evictions
        counts["refused"] = self._policy.refused
        return counts

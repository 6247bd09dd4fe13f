"""LRU: a bounded in-memory mapping that forgets the least recently used entry."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from pystorage.layers.limit import positive
from pystorage.layers.memory import _MISSING, Memory, _Expiring


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class LRU(Memory):
    """At most ``maxsize`` entries; a read or a write makes a key the most recent.

    Put it in front of a slower storage with ``Tier``. Deadlines work as in ``Memory``;
    expired entries go before any live one is evicted.
    """

    removes_entries: ClassVar[bool] = True

    maxsize: int = attrs.field(validator=positive)
    _evictions: int = attrs.field(default=0, init=False, repr=False)
    if TYPE_CHECKING:  # the field is Memory's; here it is ordered
        _data: OrderedDict[str, Any]

    # Reads take no lock: every OrderedDict call below is atomic, so the mapping is never
    # corrupt. A key deleted between two calls reads as missing, as if read after the
    # delete.

    def _empty(self) -> OrderedDict[str, Any]:
        return OrderedDict()

    def get(self, key: str) -> Any:
        data = self._data
        value = data[key]
        data.move_to_end(key)
        if type(value) is _Expiring:
            return self._unwrap(key, value)
        return value

    def lookup(self, key: str, default: Any = None) -> Any:
        data = self._data
        value = data.get(key, _MISSING)
        if value is _MISSING:
            return default
        try:
            data.move_to_end(key)
        except KeyError:  # deleted meanwhile
            return default
        if type(value) is _Expiring:
            try:
                return self._unwrap(key, value)
            except KeyError:
                return default
        return value

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        found = super().get_with_ttl(key)
        try:
            self._data.move_to_end(key)
        except KeyError:  # deleted meanwhile
            pass
        return found

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._found(keys, self.lookup)  # each a use

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if ttl is not None or type(value) is _Expiring:
            self.set_many({key: value}, ttl)
            return
        # The hot path, written out (see Memory.set); the bound also bounds the memory
        # that expired entries hold, so they are purged only when one must go.
        data = self._data
        lock = self._lock
        lock.acquire()
        try:
            data[key] = value
            data.move_to_end(key)
            if len(data) > self.maxsize:
                self._shrink()
        finally:
            lock.release()

    def _store(self, key: str, entry: Any) -> None:
        data = self._data
        data[key] = entry
        data.move_to_end(key)
        if len(data) > self.maxsize:
            self._shrink()

    def _shrink(self) -> None:
        """Down to ``maxsize`` (with the lock held): expired entries first, then the least
        recently used."""
        data = self._data
        if self._heap:
            self._purge_locked()
        while len(data) > self.maxsize:
            data.popitem(last=False)
            self._evictions += 1

    def counters(self) -> dict[str, int]:
        counts = super().counters()
        counts["evictions"] = self._evictions
        return counts

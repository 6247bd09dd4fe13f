"""LRU: a bounded in-memory mapping that forgets the least recently used entry."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import attrs

from pystorage.errors import ConfigurationError
from pystorage.layers.base import Backend

_MISSING: Any = object()


def positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    """attrs validator: a positive ``int``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be a positive int, not {value!r}")


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class LRU(Backend):
    """At most ``maxsize`` entries; a read or a write makes a key the most recent.

    Put it in front of a slower storage with ``Tier``.
    """

    removes_entries: ClassVar[bool] = True

    maxsize: int = attrs.field(validator=positive)
    _data: OrderedDict[str, Any] = attrs.field(factory=OrderedDict, init=False, repr=False)
    _evictions: int = attrs.field(default=0, init=False, repr=False)

    # No lock: every OrderedDict call below is atomic, so the mapping is never corrupt,
    # and a lock would cost more than the rest of a get or set. A key deleted between two
    # calls reads as missing, as if read after the delete; two writers overflowing at
    # once each evict one entry, which leaves exactly ``maxsize``.

    def get(self, key: str) -> Any:
        data = self._data
        value = data[key]
        data.move_to_end(key)
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
        return value

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if ttl is not None:
            self.refuse_ttl(ttl)
        data = self._data
        data[key] = value
        data.move_to_end(key)
        if len(data) > self.maxsize:
            try:
                data.popitem(last=False)
            except KeyError:  # emptied by another thread meanwhile
                return
            self._evictions += 1  # may miss a count under racing writers: statistics only

    def peek_many(self, keys: Iterable[str]) -> dict[str, Any]:
        data = self._data
        found = {}
        for key in keys:
            value = data.get(key, _MISSING)
            if value is not _MISSING:
                found[key] = value
        return found

    def delete(self, key: str) -> None:
        del self._data[key]

    def contains(self, key: str) -> bool:
        return key in self._data

    def keys(self) -> Iterator[str]:
        return iter(list(self._data))

    def count(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()

    def counters(self) -> dict[str, int]:
        return {"evictions": self._evictions}

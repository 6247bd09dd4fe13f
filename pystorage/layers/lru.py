"""LRU: a bounded in-memory mapping that forgets the least recently used entry."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import attrs

from pystorage.errors import ConfigurationError
from pystorage.layers.base import Backend


def positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    """attrs validator: a positive ``int``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be a positive int, not {value!r}")


@attrs.define(eq=False)
class LRU(Backend):
    """At most ``maxsize`` entries; a read or a write makes a key the most recent.

    Put it in front of a slower storage with :class:`~pystorage.layers.Tier`.
    """

    maxsize: int = attrs.field(validator=positive)
    _data: OrderedDict[str, Any] = attrs.field(factory=OrderedDict, init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _evictions: int = attrs.field(default=0, init=False, repr=False)

    def get(self, key: str) -> Any:
        # The hit path takes no lock: each OrderedDict call is atomic under the GIL, and
        # a key deleted between the two calls reads as missing, as if read after the delete.
        data = self._data
        value = data[key]
        data.move_to_end(key)
        return value

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if ttl is not None:
            self.refuse_ttl(ttl)
        data = self._data
        with self._lock:
            data[key] = value
            data.move_to_end(key)
            if len(data) > self.maxsize:
                data.popitem(last=False)
                self._evictions += 1

    def delete(self, key: str) -> None:
        with self._lock:
            del self._data[key]

    def contains(self, key: str) -> bool:
        return key in self._data

    def keys(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._data))

    def count(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def counters(self) -> dict[str, int]:
        return {"evictions": self._evictions}

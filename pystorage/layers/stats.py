"""Stats: counts what passes through its place in the stack."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from pystorage import _fork
from pystorage.layers.base import Wrapper

#: What Stats counts, and the bytes counter that goes with a count of reads or writes.
COUNTERS = ("hits", "misses", "writes", "deletes", "bytes_read", "bytes_written")
_BYTES = {"hits": "bytes_read", "writes": "bytes_written"}
_MISSING = object()


_SIZED = (bytes, bytearray, memoryview)


def _size(value: Any) -> int:
    """Bytes of an encoded value; objects above a Codec have no size and count 0."""
    return len(value) if isinstance(value, _SIZED) else 0


def _size_with_ttl(entry: tuple[Any, float | None]) -> int:
    """``_size`` of a value read with the seconds it has left."""
    return _size(entry[0])


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Stats(Wrapper):
    """Counts hits, misses, writes and deletes (and bytes read and written, where the
    values are bytes: below a Codec); an ``add`` that stored and every ``incr`` count as
    writes. ``storage.stats()`` adds the evictions and expirations the layers below count
    themselves. Costs nothing when absent."""

    _counts: dict[str, int] = attrs.field(
        factory=lambda: dict.fromkeys(COUNTERS, 0), init=False, repr=False
    )
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        _fork.renew_in_child(self, Stats._renew_lock)

    def _renew_lock(self) -> None:
        """In a forked child: a thread of the parent may have held the lock at the fork."""
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        try:
            value = self._inner.get(key)
        except KeyError:
            self._add("misses", 1)
            raise
        self._add("hits", 1, _size(value))
        return value

    def lookup(self, key: str, default: Any = None) -> Any:
        # storage.get(key), the hot path, written out: a miss raises nothing here.
        value = self._inner.lookup(key, _MISSING)
        counts = self._counts
        with self._lock:
            if value is _MISSING:
                counts["misses"] += 1
                return default
            counts["hits"] += 1
            if isinstance(value, _SIZED):
                counts["bytes_read"] += len(value)
        return value

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        try:
            value, ttl = self._inner.get_with_ttl(key)
        except KeyError:
            self._add("misses", 1)
            raise
        self._add("hits", 1, _size(value))
        return value, ttl

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._inner.set(key, value, ttl)
        self._add("writes", 1, _size(value))

    def delete(self, key: str) -> None:
        self._inner.delete(key)
        self._add("deletes", 1)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        stored = self._inner.add(key, value, ttl)
        if stored:  # one that found the key wrote nothing
            self._add("writes", 1, _size(value))
        return stored

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        value = self._inner.modify(key, change, ttl)
        self._add("writes", 1, _size(value))
        return value

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        found = self._inner.get_many(keys)
        self._count_reads(keys, found)
        return found

    def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        keys = list(keys)
        found = self._inner.get_many_with_ttl(keys)
        self._count_reads(keys, found, _size_with_ttl)
        return found

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        self._inner.set_many(items, ttl)
        self._add("writes", len(items), sum(map(_size, items.values())))

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self._inner.delete_many(keys)
        self._add("deletes", len(keys))

    def counters(self) -> dict[str, int]:
        below = self._inner.counters()
        with self._lock:
            mine = dict(self._counts)
        for name in COUNTERS:
            below[name] = below.get(name, 0) + mine[name]
        return below

    def _count_reads(
        self, keys: list[str], found: Mapping[str, Any], size: Callable[[Any], int] = _size
    ) -> None:
        """Count each of ``keys`` as what it found, a repeated key as often as it was
        asked for: a batch counts as the loop of ``get`` it stands for, and hits + misses
        is the number of lookups the caller made."""
        if len(found) == len(keys):  # every key found, so none repeated
            hits, read = len(keys), sum(map(size, found.values()))
        else:
            hits = read = 0
            for key in keys:
                if key in found:
                    hits += 1
                    read += size(found[key])
        self._add("hits", hits, read)
        self._add("misses", len(keys) - hits)

    def _add(self, name: str, count: int, size: int = 0) -> None:
        """Count ``count`` more ``name`` and, for hits and writes, ``size`` more bytes."""
        counts = self._counts
        with self._lock:
            counts[name] += count
            if size:
                counts[_BYTES[name]] += size

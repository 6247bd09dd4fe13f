"""CountLimit: at most ``limit`` entries below, the least recently used removed first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs

from pystorage import _fork
from pystorage.layers.base import Layer, Wrapper
from pystorage.layers.lru import positive


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class CountLimit(Wrapper):
    """Caps the number of entries of the layers below, on any backend.

    The order of use is an in-memory index, built once when the stack is assembled from
    the backend's record of use (file times for ``Files``), then kept in O(1) per
    operation. Reads record their use below (``touch``), so the order survives a restart.
    Writes run in the backend's exclusive section; when another process wrote in the
    meantime the index is rebuilt from the backend, so processes sharing a folder keep
    one count between them.
    """

    removes_entries: ClassVar[bool] = True

    limit: int = attrs.field(validator=positive)
    # Each key with the stamp of its last entry in the index: a read that misses forgets
    # a key only if it entered before the read began (not if a write put it back since).
    _order: OrderedDict[str, int] = attrs.field(factory=OrderedDict, init=False, repr=False)
    _stamp: int = attrs.field(default=0, init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _evictions: int = attrs.field(default=0, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        _fork.renew_in_child(self, CountLimit._renew_lock)

    def _renew_lock(self) -> None:
        """In a forked child: a thread of the parent may have held the lock at the fork."""
        self._lock = threading.Lock()

    def link(self, inner: Layer) -> None:
        super().link(inner)
        with inner.exclusive():
            self._reindex()
            # A writer killed mid-eviction, or a smaller limit than last time, may have
            # left too many entries: trim them now rather than at the next write.
            self._written([])

    def get(self, key: str) -> Any:
        stamp = self._stamp
        try:
            value = self._inner.get(key)
        except KeyError:
            self._missed(key, stamp)
            raise
        self._used([key])
        return value

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        stamp = self._stamp
        try:
            found = self._inner.get_with_ttl(key)
        except KeyError:
            self._missed(key, stamp)
            raise
        self._used([key])
        return found

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        with self._inner.exclusive() as changed:
            if changed:
                self._reindex()
            try:
                self._inner.set(key, value, ttl)
            except BaseException:  # a server may have stored it before the error
                self._relearn()
                raise
            self._written([key])

    def delete(self, key: str) -> None:
        with self._inner.exclusive() as changed:
            if changed:  # the section marks other writers as seen: learn what they wrote
                self._reindex()
            try:
                self._inner.delete(key)
            except KeyError:
                self._forget([key])
                raise
            except BaseException:
                self._relearn()
                raise
            self._forget([key])

    def count(self) -> int:
        count = self._inner.count()
        if count != len(self._order):
            # Entries were added or removed behind our back (expired, evicted below):
            # the backend says which keys there are, this index how recently each was used.
            with self._inner.exclusive():
                self._reconcile()
                self._written([])
            count = self._inner.count()
        return count

    def clear(self) -> None:
        with self._inner.exclusive():
            self._inner.clear()
            with self._lock:
                self._order.clear()

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        found = self._inner.get_many(keys)
        self._used(found)
        return found

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        with self._inner.exclusive() as changed:
            if changed:
                self._reindex()
            try:
                self._inner.set_many(items, ttl)
            except BaseException:
                self._relearn()
                raise
            self._written(items)

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        with self._inner.exclusive() as changed:
            if changed:
                self._reindex()
            try:
                self._inner.delete_many(keys)
            except BaseException:
                self._relearn()
                raise
            self._forget(keys)

    def counters(self) -> dict[str, int]:
        counts = self._inner.counters()
        counts["evictions"] = counts.get("evictions", 0) + self._evictions
        return counts

    def _used(self, keys: Iterable[str]) -> None:
        with self._lock:
            order = self._order
            for key in keys:
                self._stamp += 1
                order[key] = self._stamp
                order.move_to_end(key)
        for key in keys:
            self._inner.touch(key)

    def _written(self, keys: Iterable[str]) -> None:
        """Record writes, then evict the least recently used beyond the limit."""
        self._used(keys)
        with self._lock:
            surplus = len(self._order) - self.limit
            victims = [self._order.popitem(last=False)[0] for _ in range(max(surplus, 0))]
            self._evictions += len(victims)
        if victims:
            self._inner.delete_many(victims)

    def _forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._order.pop(key, None)

    def _missed(self, key: str, stamp: int) -> None:
        """A read that began at ``stamp`` found ``key`` missing: forget it, unless it
        entered the index since (a write of another thread landed after the miss)."""
        with self._lock:
            if self._order.get(key, stamp) <= stamp:
                self._order.pop(key, None)

    def _relearn(self) -> None:
        """After a batch failed part way: which of its keys are stored is the backend's
        to say, so rebuild the index from it and keep the bound (in the exclusive section)."""
        self._reindex()
        self._written([])

    def _reconcile(self) -> None:
        """Keep the order of use known here for the keys still below; keys this index did
        not know go before them (least recent first), in the backend's order of age."""
        below = self._inner.keys_by_age()
        present = set(below)
        with self._lock:
            self._stamp += 1
            order = OrderedDict((key, self._stamp) for key in below if key not in self._order)
            order.update((key, stamp) for key, stamp in self._order.items() if key in present)
            self._order = order

    def _reindex(self) -> None:
        keys = self._inner.keys_by_age()
        with self._lock:
            self._stamp += 1
            self._order = OrderedDict.fromkeys(keys, self._stamp)

    # -- atomic operations: a write like set, counted only when it made an entry ----------

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        with self._inner.exclusive() as changed:
            if changed:
                self._reindex()
            try:
                stored = self._inner.add(key, value, ttl)
            except BaseException:
                self._relearn()
                raise
            if stored:  # an add that found the key changed nothing: not a use either
                self._written([key])
            return stored

    # ``change: Any``, not a Callable: this block keeps clear of the module's imports.
    def modify(self, key: str, change: Any, ttl: float | None = None) -> Any:
        with self._inner.exclusive() as changed:
            if changed:
                self._reindex()
            try:
                value = self._inner.modify(key, change, ttl)
            except BaseException:
                self._relearn()
                raise
            self._written([key])  # a new key counts; an existing one becomes the most recent
            return value

"""Tier: a fast storage in front of a slower one."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs

from pystorage import _fork
from pystorage.errors import ConfigurationError
from pystorage.layers.base import Layer, ValueKind, Wrapper, stack_from

#: Writes are counted in this many stripes, by key: a read-through is only dropped for a
#: write to its own stripe, not for a write to any key.
_STRIPES = 64


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Tier(Wrapper):
    """Serves reads from ``front`` (e.g. ``LRU(1000)``), falling back to the layer below.

    A read that misses in front reads through and keeps the value in front with the time
    it has left below, so the front never outlives a TTL; a write goes below first, then
    to front with its TTL (a write that fails below drops the key from front: it may
    have been stored all the same); a delete removes from both, and so does an ``incr``
    (the front reads the new value through). An ``add`` that stored keeps the value in
    front; one that found the key drops the front's copy. A read-through that
    overlapped a write of the same key keeps nothing in front, so it can never put back
    an older value. The layer below stays the truth: ``len``, iteration and ``in`` ask it, and
    batch reads do not fill the front. Another process writing the same storage below is
    not seen until the key leaves ``front``. Put it below ``CountLimit`` and ``Expiry``,
    never above: what they remove would still be served from the front. Over a store
    that keeps a limit's bound itself and tells its evictions (SQLite), the limit above
    hands its bound down through the Tier, and each key evicted leaves the front too.
    """

    front: Layer
    _writes: list[int] = attrs.field(factory=lambda: [0] * _STRIPES, init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        _fork.renew_in_child(self, Tier._renew_lock)

    def _renew_lock(self) -> None:
        """In a forked child: a thread of the parent may have held the lock at the fork."""
        self._lock = threading.Lock()

    def link(self, inner: Layer) -> None:
        for below in stack_from(inner):
            if below.removes_entries and not self._watches(below):
                raise ConfigurationError(
                    f"Tier cannot sit above {type(below).__name__}: entries it removes "
                    f"would still be read from the front. Put {type(below).__name__} above "
                    "the Tier instead."
                )
        if inner.has_ttl() and not self.front.has_ttl():
            raise ConfigurationError(
                f"the front of this Tier, {type(self.front).__name__}, cannot keep "
                "deadlines, so it could outlive the entries below it"
            )
        super().link(inner)

    def take_bound(self, measure: Literal["entries", "bytes"], bound: int, eviction: str) -> bool:
        """Hand a limit's bound down to the store only if it tells which keys its writes
        evict (SQLite): they leave the front as they leave the store, so the front never
        serves what was evicted, and the bound is the store's, shared by processes.
        Otherwise the limit stays a layer above: what the store evicted behind the
        front's back would still be served from it."""
        bottom = list(stack_from(self._inner))[-1]
        if not self._watches(bottom):
            return False
        return self._inner.take_bound(measure, bound, eviction)

    def _watches(self, below: Layer) -> bool:
        """Whether ``below`` tells the keys it evicts; if so, they leave the front too."""
        watch_evictions = getattr(below, "watch_evictions", None)
        if watch_evictions is None:
            return False
        watch_evictions(self._evicted)
        return True

    def _evicted(self, keys: list[str]) -> None:
        """Keys that a write evicted below, once it is committed: the front forgets them,
        and a read-through of one that began before keeps nothing (it may have read the
        row before it went)."""
        with self._lock:
            self._bump(keys)
            self.front.delete_many(keys)

    def value_kind_below(self, above: ValueKind) -> ValueKind:
        if self.front.accepts == "bytes" and above != "bytes":
            raise ConfigurationError(
                f"the front of this Tier, {type(self.front).__name__}, stores bytes: put "
                "the Tier below a Codec layer"
            )
        return above

    def get(self, key: str) -> Any:
        try:
            return self.front.get(key)
        except KeyError:
            pass
        return self._read_through(key)[0]

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        try:
            return self.front.get_with_ttl(key)
        except KeyError:
            pass
        return self._read_through(key)

    def _read_through(self, key: str) -> tuple[Any, float | None]:
        stripe = hash(key) % _STRIPES
        writes = self._writes[stripe]
        value, ttl = self._inner.get_with_ttl(key)
        with self._lock:
            # A write of this stripe since we looked may be newer than what we read.
            if self._writes[stripe] == writes:
                self.front.set(key, value, ttl)
        return value, ttl

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._writing([key])
        try:
            self._inner.set(key, value, ttl)
        except BaseException:
            self._failed([key])
            raise
        with self._lock:
            self._bump([key])
            self.front.set(key, value, ttl)

    def delete(self, key: str) -> None:
        self._writing([key])
        try:
            self._inner.delete(key)
        finally:
            with self._lock:
                self._bump([key])
                self.front.delete_many([key])

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        self._writing([key])
        try:
            stored = self._inner.add(key, value, ttl)
        except BaseException:
            self._failed([key])
            raise
        with self._lock:
            self._bump([key])
            if stored:
                self.front.set(key, value, ttl)
            else:  # the key is below, maybe written by another process: not the front's copy
                self.front.delete_many([key])
        return stored

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        self._writing([key])
        try:
            value = self._inner.modify(key, change, ttl)
        finally:
            # Dropped, not refreshed: the deadline an existing entry kept is known below
            # only, and the next read brings the value back with it.
            with self._lock:
                self._bump([key])
                self.front.delete_many([key])
        return value

    def clear(self) -> None:
        with self._lock:
            self._writes[:] = [count + 1 for count in self._writes]
        self._inner.clear()
        with self._lock:
            self._writes[:] = [count + 1 for count in self._writes]
            self.front.clear()

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        found = self.front.get_many(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            found.update(self._inner.get_many(missing))
        return found

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        self._writing(items)
        try:
            self._inner.set_many(items, ttl)
        except BaseException:
            self._failed(items)
            raise
        with self._lock:
            self._bump(items)
            self.front.set_many(items, ttl)

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self._writing(keys)
        try:
            self._inner.delete_many(keys)
        finally:
            with self._lock:
                self._bump(keys)
                self.front.delete_many(keys)

    def close(self) -> None:
        self.front.close()
        self._inner.close()

    def _writing(self, keys: Iterable[str]) -> None:
        """Mark a write as begun: read-throughs that started before it keep nothing."""
        with self._lock:
            self._bump(keys)

    def _failed(self, keys: Iterable[str]) -> None:
        """After a write below failed: it may have stored the new values all the same (a
        reply lost on the way back), so the front forgets the old ones."""
        with self._lock:
            self._bump(keys)
            self.front.delete_many(keys)

    def _bump(self, keys: Iterable[str]) -> None:
        """Count a write in the stripes of ``keys`` (with the lock held)."""
        writes = self._writes
        for key in keys:
            writes[hash(key) % _STRIPES] += 1

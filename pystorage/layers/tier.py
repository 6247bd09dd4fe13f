"""Tier: a fast storage in front of a slower one."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs

from pystorage import _fork
from pystorage.errors import ConfigurationError
from pystorage.layers.base import Layer, ValueKind, Wrapper, stack_from
from pystorage.layers.memory import Memory
from pystorage.layers.redis import Redis
from pystorage.layers.tracking import Tracker

#: Seconds a front keeps an entry at most, by default, over a store that cannot say when
#: another process changed it (S3, Redis): long enough for a hot key to be served from
#: memory thousands of times, short enough that another process's write shows within a
#: minute, as with HTTP caches' usual ``max-age=60``.
MAX_AGE = 60.0

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
    batch reads do not fill the front. Put it below ``CountLimit`` and ``Expiry``, never
    above: what they remove would still be served from the front. Over a store that
    keeps a limit's bound itself and tells its evictions (SQLite), the limit above hands
    its bound down through the Tier, and each key evicted leaves the front too.

    Other processes writing the store below: where the store can tell that it changed
    (``Files``: a token its writes replace in the lock file; ``SQLite``: the header of its
    WAL index, then ``PRAGMA data_version``), every read first asks it, and the whole front
    is dropped when the store changed, so a read after another process's write returned
    returns the new value. A standalone sync ``Redis`` pushes invalidations (``CLIENT
    TRACKING``, see ``tracking.py``): a written key leaves the front within the push's
    delivery. Over ``Memory`` nothing else writes. Elsewhere (S3, a cluster, asyncio Redis),
    or with ``watch=False``, a front entry lives at most ``max_age`` seconds (``MAX_AGE`` by
    default; ``None``: until it leaves the front, stale for ever if another process rewrote
    it); ``get_with_ttl`` then reads below, as the front knows the time left of its copy,
    not of the entry.
    """

    front: Layer
    max_age: float | None = attrs.field(default=MAX_AGE, kw_only=True, repr=False)
    watch: bool = attrs.field(default=True, kw_only=True, repr=False)
    #: The store's change token (``version()``), when it has one and ``watch`` is on.
    _version: Callable[[], object] | None = attrs.field(default=None, init=False, repr=False)
    _seen: object = attrs.field(default=None, init=False, repr=False)
    #: The age cap put on front entries: ``max_age`` when nothing can tell of changes.
    _cap: float | None = attrs.field(default=None, init=False, repr=False)
    _tracker: Tracker | None = attrs.field(default=None, init=False, repr=False)
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
        if self.max_age is not None and not self.max_age > 0:
            raise ConfigurationError(f"max_age must be a positive number, not {self.max_age!r}")
        super().link(inner)
        *_, store = stack_from(inner)
        store = getattr(store, "backend", store)  # a sync backend under an async stack
        version = getattr(store, "version", None)
        pushing = _pushing(store) if self.watch and version is None else None
        if pushing is not None:
            self._tracker = Tracker(pushing.client, pushing.prefix, self._dropped)
            version = self._tracker.version
        if self.watch and version is not None:
            self._version, self._seen = version, version()
        elif self.max_age is not None and not isinstance(store, Memory):  # Memory: ours alone
            if not self.front.has_ttl():
                raise ConfigurationError(
                    f"the front of this Tier, {type(self.front).__name__}, cannot keep "
                    "deadlines, so it cannot keep max_age: give max_age=None"
                )
            self._cap = self.max_age

    def _fresh(self) -> None:
        """Drop the whole front if another process changed the store since last seen."""
        version = self._version
        if version is not None:
            now = version()
            if now != self._seen:
                with self._lock:
                    self._writes[:] = [count + 1 for count in self._writes]
                    self.front.clear()
                    self._seen = now

    def _dropped(self, keys: list[str] | None) -> None:
        """Drop ``keys`` (``None``: all) from the front: another writer changed them."""
        with self._lock:
            if keys is None:
                self._writes[:] = [count + 1 for count in self._writes]
                self.front.clear()
            else:
                self._bump(keys)
                self.front.delete_many(keys)

    def _capped(self, ttl: float | None) -> float | None:
        """The TTL to give a front entry: never beyond ``max_age`` where it applies."""
        cap = self._cap
        if cap is None or (ttl is not None and ttl < cap):
            return ttl
        return cap

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
        # Keys a write evicted below, once committed, leave the front like keys another
        # writer changed; a read-through of one that began before keeps nothing.
        watch_evictions(self._dropped)
        return True

    def value_kind_below(self, above: ValueKind) -> ValueKind:
        if self.front.accepts == "bytes" and above != "bytes":
            raise ConfigurationError(
                f"the front of this Tier, {type(self.front).__name__}, stores bytes: put "
                "the Tier below a Codec layer"
            )
        return above

    def get(self, key: str) -> Any:
        if self._version is not None:
            self._fresh()
        try:
            return self.front.get(key)
        except KeyError:
            pass
        return self._read_through(key)[0]

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        if self._version is not None:
            self._fresh()
        if self._cap is None:  # else the front's time left is max_age's, not the entry's
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
                self.front.set(key, value, self._capped(ttl))
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
            self.front.set(key, value, self._capped(ttl))

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
                self.front.set(key, value, self._capped(ttl))
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
        if self._version is not None:
            self._fresh()
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
            self.front.set_many(items, self._capped(ttl))

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
        if self._tracker is not None:
            self._tracker.close()
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


def _pushing(store: Layer) -> Redis | None:
    """``store`` if it is a sync ``Redis`` on one server, whose tracking can push
    invalidations (a cluster's keys live on several servers; asyncio clients are not
    served by the tracking thread), else None."""
    if not isinstance(store, Redis) or store.client_is_cluster:
        return None
    import redis

    return store if isinstance(store.client, redis.Redis) else None

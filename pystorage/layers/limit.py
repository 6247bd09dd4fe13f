"""Limit: the engine that CountLimit and SizeLimit share, a bound on what lies below."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal

import attrs

from pystorage import _fork
from pystorage.errors import ConfigurationError, ValueTooLargeError
from pystorage.layers.base import Layer, Wrapper, stack_from

#: Which entries go first: the least recently used, or the least recently stored.
Eviction = Literal["used", "stored"]


def an_order(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    """attrs validator: an ``Eviction``; anything else is a ``ConfigurationError``."""
    if value not in ("used", "stored"):
        raise ConfigurationError(f"{attribute.name} must be 'used' or 'stored', not {value!r}")


def positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    """attrs validator: a positive ``int``. Here, where both limits import it, so that a
    limit does not load the memory backend."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be a positive int, not {value!r}")


def too_large(key: str, weight: int, bound: int, measure: str) -> ValueTooLargeError:
    """The error for a value heavier than a whole limit: stored, it would only evict
    everything, then itself."""
    return ValueTooLargeError(
        f"the value of {key!r} weighs {weight} {measure}, more than the whole limit of "
        f"{bound}: not stored"
    )


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Limit(Wrapper):
    """Keeps the total weight of the entries below within ``bound``, on any backend.

    A subclass says what an entry weighs (``CountLimit``: 1, ``SizeLimit``: its bytes).
    ``eviction="used"`` removes the least recently used entries first: every read is
    recorded below (``touch``) so the order survives a restart, which costs a write per
    read on backends that keep it (a file's time, a row). ``eviction="stored"`` removes
    the least recently written first and costs nothing on a read.

    The order and weights are an in-memory index, built once when the stack is assembled
    from the backend's listing, then kept in O(1) per operation. Writes run in the
    backend's exclusive section; when another process wrote in the meantime the index is
    rebuilt from the backend, so processes sharing a folder keep one bound between them.
    A backend that enforces the bound itself, in the transaction of each write (SQLite),
    takes it over when the stack is assembled: this layer then leaves the stack.
    """

    removes_entries: ClassVar[bool] = True

    eviction: Eviction = attrs.field(default="used", kw_only=True, validator=an_order)
    #: Accept a bound kept by each process apart over a store that processes share and
    #: that cannot keep it (S3, a Redis Cluster): N processes may store N times the bound.
    per_process: bool = attrs.field(default=False, kw_only=True, repr=False)
    # Each key with the stamp of its last entry in the index: a read that misses forgets
    # a key only if it entered before the read began (not if a write put it back since).
    _order: OrderedDict[str, int] = attrs.field(factory=OrderedDict, init=False, repr=False)
    _weights: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)
    _total: int = attrs.field(default=0, init=False, repr=False)
    _stamp: int = attrs.field(default=0, init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _evictions: int = attrs.field(default=0, init=False, repr=False)
    _handed_down: bool = attrs.field(default=False, init=False, repr=False)

    # -- what a subclass defines ---------------------------------------------------------

    #: What the bound counts, as a backend that takes it over understands it.
    measure: ClassVar[Literal["entries", "bytes"]]

    @property
    def bound(self) -> int:
        """The most total weight the entries below may have."""
        raise NotImplementedError

    def weigh(self, value: Any) -> int:
        """The weight of one entry's value."""
        raise NotImplementedError

    def weights_by_age(self) -> list[tuple[str, int]]:
        """Every key below with its weight, least recently used first."""
        raise NotImplementedError

    # -- assembly ------------------------------------------------------------------------

    def __attrs_post_init__(self) -> None:
        _fork.renew_in_child(self, Limit._renew_lock)

    def _renew_lock(self) -> None:
        """In a forked child: a thread of the parent may have held the lock at the fork."""
        self._lock = threading.Lock()

    def link(self, inner: Layer) -> None:
        super().link(inner)
        self._handed_down = inner.take_bound(self.measure, self.bound, self.eviction)
        if not self._handed_down and not self.per_process:
            # A store shared by processes that cannot keep the bound says why (the
            # backend's bound_per_process): refused, unless per_process=True accepts it.
            *_, backend = stack_from(inner)
            ask = getattr(backend, "bound_per_process", None)
            why = ask() if ask is not None else None
            if why:
                raise ConfigurationError(
                    f"{type(self).__name__} would be a bound per process here, not one "
                    f"bound shared by the processes that use this store: {why}. Pass "
                    "per_process=True to accept that (N processes may then store up "
                    "to N times the bound)"
                )

    def prepare(self) -> None:
        with self._inner.exclusive():
            self._reindex()
            # A writer killed mid-eviction, or a smaller bound than last time, may have
            # left too much: trim it now rather than at the next write.
            self._written(())

    def leaves_stack(self) -> bool:
        return self._handed_down

    def take_bound(self, measure: str, bound: int, eviction: str) -> bool:
        return False  # a second index below this one would disagree with it

    # -- the protocol --------------------------------------------------------------------

    def get(self, key: str) -> Any:
        stamp = self._stamp
        try:
            value = self._inner.get(key)
        except KeyError:
            self._missed(key, stamp)
            raise
        self._used(((key, value),), stamp)
        return value

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        stamp = self._stamp
        try:
            found = self._inner.get_with_ttl(key)
        except KeyError:
            self._missed(key, stamp)
            raise
        self._used(((key, found[0]),), stamp)
        return found

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        stamp = self._stamp
        found = self._inner.get_many(keys)
        self._used(found.items(), stamp)
        return found

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        weight = self._admitted(key, value)
        with self._inner.exclusive() as changed:
            if changed:  # the section marks other writers as seen: learn what they wrote
                self._reindex()
            try:
                self._inner.set(key, value, ttl)
            except BaseException:  # a server may have stored it before the error
                self._relearn()
                raise
            self._written(((key, weight),))

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        weights = [(key, self._admitted(key, value)) for key, value in items.items()]
        with self._inner.exclusive() as changed:
            if changed:
                self._reindex()
            try:
                self._inner.set_many(items, ttl)
            except BaseException:
                self._relearn()
                raise
            self._written(weights)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        weight = self._admitted(key, value)
        with self._inner.exclusive() as changed:
            if changed:
                self._reindex()
            try:
                stored = self._inner.add(key, value, ttl)
            except BaseException:
                self._relearn()
                raise
            if stored:  # an add that found the key changed nothing: not a use either
                self._written(((key, weight),))
            return stored

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        def admitted(old: Any) -> Any:
            # Checked inside the backend's atomic section, so a value heavier than the
            # whole bound is refused before it is written, as set refuses it.
            new = change(old)
            self._admitted(key, new)
            return new

        with self._inner.exclusive() as changed:
            if changed:
                self._reindex()
            try:
                value = self._inner.modify(key, admitted, ttl)
            except BaseException:
                self._relearn()
                raise
            # A new key counts; an existing one becomes the most recent. The value is
            # weighed once written: it is made below, under the backend's lock.
            self._written(((key, self.weigh(value)),))
            return value

    def delete(self, key: str) -> None:
        with self._inner.exclusive() as changed:
            if changed:
                self._reindex()
            try:
                self._inner.delete(key)
            except KeyError:
                self._forget((key,))
                raise
            except BaseException:
                self._relearn()
                raise
            self._forget((key,))

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

    def count(self) -> int:
        count = self._inner.count()
        if count != len(self._order):
            # Entries were added or removed behind our back (expired, evicted below):
            # the backend says which keys there are, this index how recently each was used.
            with self._inner.exclusive():
                self._reconcile()
                self._written(())
            count = self._inner.count()
        return count

    def clear(self) -> None:
        with self._inner.exclusive():
            self._inner.clear()
            with self._lock:
                self._order.clear()
                self._weights.clear()
                self._total = 0

    def counters(self) -> dict[str, int]:
        counts = self._inner.counters()
        counts["evictions"] = counts.get("evictions", 0) + self._evictions
        return counts

    # -- the index -----------------------------------------------------------------------

    def _admitted(self, key: str, value: Any) -> int:
        """The weight of a value to write; one heavier than the whole bound is refused
        before anything is written."""
        weight = self.weigh(value)
        if weight > self.bound:
            raise too_large(key, weight, self.bound, self.measure)
        return weight

    def _enter(self, key: str, weight: int) -> None:
        """Put ``key`` in the index as the most recent, with its weight (lock held)."""
        self._stamp += 1
        self._order[key] = self._stamp
        self._order.move_to_end(key)
        self._total += weight - self._weights.get(key, 0)
        self._weights[key] = weight

    def _used(self, entries: Iterable[tuple[str, Any]], stamp: int) -> None:
        """Record reads that began at ``stamp``, each with the value it read: with
        ``eviction="used"`` each key becomes the most recent (and its use is recorded
        below); otherwise only keys the index did not know enter it.

        The weight of a value read is learnt only if the index has made no entry for its
        key since the read began (it may have been written by another program). Once a
        writer has entered a newer value, the one read may be the old one: taking its
        weight back would under-count, and the bytes below go over the bound (issue 17,
        item 3). Then the read is only a use.
        """
        by_use = self.eviction == "used"
        read = []
        with self._lock:
            order = self._order
            for key, value in entries:
                entered = order.get(key)
                if entered is None:
                    self._enter(key, self.weigh(value))
                elif not by_use:
                    continue
                elif entered <= stamp:
                    self._enter(key, self.weigh(value))
                else:  # a newer entry than this read: a use, with the weight known
                    self._stamp += 1
                    order[key] = self._stamp
                    order.move_to_end(key)
                read.append(key)
        if by_use:
            for key in read:
                self._inner.touch(key)

    def _written(self, entries: Iterable[tuple[str, int]]) -> None:
        """Record writes, then evict the least recent entries beyond the bound."""
        victims = []
        with self._lock:
            for key, weight in entries:
                self._enter(key, weight)
            order = self._order
            while self._total > self.bound:
                victim, _ = order.popitem(last=False)
                self._total -= self._weights.pop(victim)
                victims.append(victim)
            self._evictions += len(victims)
        if victims:
            self._inner.delete_many(victims)

    def _forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._drop(key)

    def _drop(self, key: str) -> None:
        """Remove ``key`` from the index, if it is there (lock held)."""
        if self._order.pop(key, None) is not None:
            self._total -= self._weights.pop(key)

    def _missed(self, key: str, stamp: int) -> None:
        """A read that began at ``stamp`` found ``key`` missing: forget it, unless it
        entered the index since (a write of another thread landed after the miss)."""
        with self._lock:
            if self._order.get(key, stamp) <= stamp:
                self._drop(key)

    def _relearn(self) -> None:
        """After a batch failed part way: which of its keys are stored is the backend's
        to say, so rebuild the index from it and keep the bound (in the exclusive section)."""
        self._reindex()
        self._written(())

    def _reconcile(self) -> None:
        """Keep the order of use known here for the keys still below; keys this index did
        not know go before them (least recent first), in the backend's order of age."""
        below = dict(self.weights_by_age())
        with self._lock:
            self._stamp += 1
            order = OrderedDict((key, self._stamp) for key in below if key not in self._order)
            order.update((key, stamp) for key, stamp in self._order.items() if key in below)
            self._install(order, below)

    def _reindex(self) -> None:
        below = dict(self.weights_by_age())
        with self._lock:
            self._stamp += 1
            self._install(OrderedDict.fromkeys(below, self._stamp), below)

    def _install(self, order: OrderedDict[str, int], weights: dict[str, int]) -> None:
        """Replace the index (lock held)."""
        self._order = order
        self._weights = weights
        self._total = sum(weights.values())

"""Limit: the engine that CountLimit and SizeLimit share, a bound on what lies below."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal

import attrs

from pystorage import _fork
from pystorage.errors import ConfigurationError, ValueTooLargeError
from pystorage.eviction import POLICIES, Eviction, Policy
from pystorage.layers.base import Layer, Wrapper, stack_from
from pystorage.layers.protocol import require

__all__ = ["Eviction", "Limit", "a_policy", "positive", "too_large"]


def a_policy(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    """attrs validator: an ``Eviction``; anything else is a ``ConfigurationError``."""
    if value not in POLICIES:
        names = ", ".join(repr(name) for name in POLICIES)
        raise ConfigurationError(f"{attribute.name} must be one of {names}, not {value!r}")


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
    the least recently written first and costs nothing on a read. ``eviction="tinylfu"``
    keeps the entries adaptive W-TinyLFU values most (``pystorage/eviction/tinylfu.py``):
    a new entry stays once past a small window only if it was asked for more often than
    the one it would replace. Reads write nothing below; what it learnt of each key's
    popularity is kept in this process (a restart begins with the backend's order of age).

    The order and weights are an in-memory index (the policy), built once when the stack
    is assembled from the backend's listing, then kept in O(1) per operation. Writes run in the
    backend's exclusive section; when another process wrote in the meantime the index is
    rebuilt from the backend, so processes sharing a folder keep one bound between them.
    A backend that enforces the bound itself, in the transaction of each write (SQLite),
    takes it over when the stack is assembled: this layer then leaves the stack.
    """

    removes_entries: ClassVar[bool] = True

    eviction: Eviction = attrs.field(default="used", kw_only=True, validator=a_policy)
    #: Accept a bound kept by each process apart over a store that processes share and
    #: that cannot keep it (S3, a Redis Cluster): N processes may store N times the bound.
    per_process: bool = attrs.field(default=False, kw_only=True, repr=False)
    # Each key with the stamp of its last entry in the index: a read that misses forgets
    # a key only if it entered before the read began (not if a write put it back since).
    # The policy holds the same keys, with their weights and order.
    _stamps: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)
    _policy: Policy = attrs.field(init=False, repr=False)
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
        self._policy = POLICIES[self.eviction](self.bound, self.expected_entries())
        _fork.renew_in_child(self, Limit._renew_lock)

    def expected_entries(self) -> int:
        """About how many entries the bound holds (what a policy sizes its memory by)."""
        return self.bound

    def _renew_lock(self) -> None:
        """In a forked child: a thread of the parent may have held the lock at the fork."""
        self._lock = threading.Lock()

    def link(self, inner: Layer) -> None:
        for capability in ("order", "section"):  # the order of use, and writes apart
            require(inner, capability)
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
            saved = self._inner.read_note(self._note)
            if saved is not None:
                with self._lock:
                    self._policy.load(saved)
            # A writer killed mid-eviction, or a smaller bound than last time, may have
            # left too much: trim it now rather than at the next write.
            self._written(())

    def close(self) -> None:
        """Keep what the policy learnt beside the entries (where the backend can), so
        that the next process to open the store begins with it; then close below."""
        with self._lock:
            saved = self._policy.save()
        try:
            if saved is not None and not self._handed_down:
                self._inner.write_note(self._note, saved)
        finally:
            self._inner.close()

    @property
    def _note(self) -> str:
        """The name of this limit's note: one per measure and policy."""
        return f"{self.measure}-{self.eviction}"

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
        if count != len(self._stamps):
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
                self._stamps.clear()
                self._policy.restore({}, keep_order=False)

    def counters(self) -> dict[str, int]:
        counts = self._inner.counters()
        counts["evictions"] = counts.get("evictions", 0) + self._evictions
        with self._lock:
            for name, count in self._policy.counters().items():
                counts[name] = counts.get(name, 0) + count
        return counts

    def gauges(self) -> dict[str, int]:
        held = self._inner.gauges()
        if self.measure == "bytes":
            # The index's tally: over a folder that other processes write too, as of
            # this process's last operation.
            with self._lock:
                held["bytes"] = self._policy.weight
        return held

    # -- the index -----------------------------------------------------------------------

    def _admitted(self, key: str, value: Any) -> int:
        """The weight of a value to write; one heavier than the whole bound is refused
        before anything is written."""
        weight = self.weigh(value)
        if weight > self.bound:
            raise too_large(key, weight, self.bound, self.measure)
        return weight

    def _enter(self, key: str, weight: int) -> None:
        """Put ``key`` in the index as written now, with its weight (lock held)."""
        self._stamp += 1
        self._stamps[key] = self._stamp
        self._policy.write(key, weight)

    def _used(self, entries: Iterable[tuple[str, Any]], stamp: int) -> None:
        """Record reads that began at ``stamp``, each with the value it read: keys the
        index did not know enter it; with ``eviction="stored"`` that is all, otherwise
        each read is a use for the policy (and with ``"used"`` it is recorded below too).

        The weight of a value read is learnt only if the index has made no entry for its
        key since the read began (it may have been written by another program). Once a
        writer has entered a newer value, the one read may be the old one: taking its
        weight back would under-count, and the bytes below go over the bound (issue 17,
        item 3). Then the read is only a use.
        """
        counts_reads = self.eviction != "stored"
        read = []
        with self._lock:
            stamps = self._stamps
            for key, value in entries:
                entered = stamps.get(key)
                if entered is None or (counts_reads and entered <= stamp):
                    self._enter(key, self.weigh(value))
                elif not counts_reads:
                    continue
                else:  # a newer entry than this read: a use, with the weight known
                    self._stamp += 1
                    stamps[key] = self._stamp
                    self._policy.hit(key)
                read.append(key)
        if self.eviction == "used":
            for key in read:
                self._inner.touch(key)

    def _written(self, entries: Iterable[tuple[str, int]]) -> None:
        """Record writes, then evict what the policy says must go to keep the bound."""
        with self._lock:
            for key, weight in entries:
                self._enter(key, weight)
            victims = self._policy.evict()
            for victim in victims:
                del self._stamps[victim]
            self._evictions += len(victims)
        if victims:
            self._inner.delete_many(victims)

    def _forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._drop(key)

    def _drop(self, key: str) -> None:
        """Remove ``key`` from the index, if it is there (lock held)."""
        if self._stamps.pop(key, None) is not None:
            self._policy.discard(key)

    def _missed(self, key: str, stamp: int) -> None:
        """A read that began at ``stamp`` found ``key`` missing: forget it, unless it
        entered the index since (a write of another thread landed after the miss)."""
        with self._lock:
            if self._stamps.get(key, stamp) <= stamp:
                self._drop(key)

    def _relearn(self) -> None:
        """After a batch failed part way: which of its keys are stored is the backend's
        to say, so rebuild the index from it and keep the bound (in the exclusive section)."""
        self._reindex()
        self._written(())

    def _reconcile(self) -> None:
        """Keep what the policy knows of the keys still below; keys this index did not
        know go before them (least recent first), in the backend's order of age."""
        below = dict(self.weights_by_age())
        with self._lock:
            self._stamp += 1
            self._stamps = {key: self._stamps.get(key, self._stamp) for key in below}
            self._policy.restore(below, keep_order=True)

    def _reindex(self) -> None:
        below = dict(self.weights_by_age())
        with self._lock:
            self._stamp += 1
            self._stamps = dict.fromkeys(below, self._stamp)
            self._policy.restore(below, keep_order=False)

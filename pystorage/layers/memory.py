"""Memory: a plain in-process dictionary, with per-key deadlines."""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import attrs

from pystorage import _fork
from pystorage.layers.base import ABSENT, Backend, new_token

_MISSING: Any = object()


class _Expiring:
    """A value stored with its deadline. The type is private, so no value a user writes
    can pass for one: ``set`` wraps even a user's own ``_Expiring`` object."""

    __slots__ = ("deadline", "value")

    def __init__(self, value: Any, deadline: float) -> None:
        self.value = value
        self.deadline = deadline


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Memory(Backend):
    """Keeps values in a ``dict`` of this process. Stores objects as they are (no copy).

    A value written with a ``ttl`` is kept with its deadline beside it, never inside it,
    and is never returned, counted or listed once the deadline passes. Expired entries
    are removed on access and by a heap of deadlines, O(log n) each. Writes take a lock,
    so that removing an expired entry can never remove a newer value written meanwhile;
    reads take none. ``clock`` returns seconds since the epoch (give another in tests).
    """

    supports_ttl: ClassVar[bool] = True

    clock: Callable[[], float] = attrs.field(default=time.time, repr=False, kw_only=True)
    _data: dict[str, Any] = attrs.field(init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _heap: list[tuple[float, str]] = attrs.field(factory=list, init=False, repr=False)
    _expirations: int = attrs.field(default=0, init=False, repr=False)
    #: Each tag's token (``tag_tokens``): beside the entries, never among them.
    _tags: dict[str, str] = attrs.field(factory=dict, init=False, repr=False)

    @_data.default
    def _new_data(self) -> dict[str, Any]:
        return self._empty()

    def __attrs_post_init__(self) -> None:
        _fork.renew_in_child(self, Memory._renew_lock)

    def _renew_lock(self) -> None:
        """In a forked child: a thread of the parent may have been writing at the fork."""
        if self._lock.locked():  # cut short, a purge may have popped deadlines it kept
            self._rebuild_heap()
        self._lock = threading.Lock()

    def _empty(self) -> dict[str, Any]:
        """The mapping that holds the entries (LRU keeps an ordered one)."""
        return {}

    # -- reads: no lock ------------------------------------------------------------------

    def get(self, key: str) -> Any:
        value = self._data[key]
        if type(value) is _Expiring:
            return self._unwrap(key, value)
        return value

    def lookup(self, key: str, default: Any = None) -> Any:
        value = self._data.get(key, _MISSING)
        if type(value) is _Expiring:
            try:
                return self._unwrap(key, value)
            except KeyError:
                return default
        return default if value is _MISSING else value

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        value = self._data[key]
        if type(value) is not _Expiring:
            return value, None
        remaining = value.deadline - self.clock()
        if remaining <= 0:
            self._remove_expired([key])
            raise KeyError(key)
        return value.value, (None if remaining == math.inf else remaining)

    def contains(self, key: str) -> bool:
        value = self._data.get(key, _MISSING)
        if type(value) is _Expiring:
            return value.deadline > self.clock()
        return value is not _MISSING

    def keys(self) -> Iterator[str]:
        self._purge()
        # A snapshot: other threads may write while the caller iterates.
        return iter(list(self._data))

    def count(self) -> int:
        self._purge()
        return len(self._data)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self.peek_many(keys)

    def peek_many(self, keys: Iterable[str]) -> dict[str, Any]:
        # Memory.lookup, not a subclass's: a peek is not a use.
        return self._found(keys, lambda key, default: Memory.lookup(self, key, default))

    @staticmethod
    def _found(keys: Iterable[str], lookup: Callable[[str, Any], Any]) -> dict[str, Any]:
        """The values ``lookup`` finds for ``keys``, misses left out."""
        found = {}
        for key in keys:
            value = lookup(key, _MISSING)
            if value is not _MISSING:
                found[key] = value
        return found

    # -- writes: under the lock ------------------------------------------------------------

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if ttl is not None or type(value) is _Expiring:
            self.set_many({key: value}, ttl)
            return
        # The hot path: acquire/release cost about half of a ``with`` block.
        lock = self._lock
        lock.acquire()
        try:
            self._data[key] = value
            if self._heap:
                self._purge_locked()
        finally:
            lock.release()

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        entries = {key: self._entry(value, ttl) for key, value in items.items()}
        with self._lock:
            for key, entry in entries.items():
                self._store(key, entry)
                if ttl is not None:
                    heapq.heappush(self._heap, (entry.deadline, key))
            if self._heap:
                self._purge_locked()

    def delete(self, key: str) -> None:
        with self._lock:
            entry = self._data.pop(key)
            self._left_locked((key,))
            if type(entry) is _Expiring and entry.deadline <= self.clock():
                # Gone all the same, but it was missing: as get, in and len say.
                self._expirations += 1
                raise KeyError(key)

    def delete_many(self, keys: Iterable[str]) -> None:
        with self._lock:
            keys = [key for key in keys if self._data.pop(key, _MISSING) is not _MISSING]
            self._left_locked(keys)

    def clear(self) -> None:
        with self._lock:
            self._left_locked(list(self._data))
            self._data.clear()
            self._heap.clear()

    # -- atomic operations: a read and a write under the lock ----------------------------

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        entry = self._entry(value, ttl)
        with self._lock:
            if self._live_locked(key) is not _MISSING:
                return False
            self._create_locked(key, entry)
        return True

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        with self._lock:
            entry = self._live_locked(key)
            if entry is _MISSING:
                value = change(ABSENT)
                self._create_locked(key, self._entry(value, ttl))
            elif type(entry) is _Expiring:
                value = change(entry.value)
                self._store(key, _Expiring(value, entry.deadline))  # the heap has it already
            else:
                value = change(entry)
                self._store(key, self._entry(value, None))
        return value

    def _live_locked(self, key: str) -> Any:
        """The entry of ``key`` as stored, or ``_MISSING`` if it has none or it expired."""
        entry = self._data.get(key, _MISSING)
        if type(entry) is _Expiring and entry.deadline <= self.clock():
            return _MISSING
        return entry

    def _create_locked(self, key: str, entry: Any) -> None:
        self._store(key, entry)
        if type(entry) is _Expiring and entry.deadline != math.inf:
            heapq.heappush(self._heap, (entry.deadline, key))

    def tag_tokens(self, tags: Sequence[str], create: bool) -> dict[str, str]:
        tokens = self._tags
        if create:
            with self._lock:
                for tag in tags:
                    if tag not in tokens:
                        tokens[tag] = new_token()
        return {tag: tokens[tag] for tag in tags if tag in tokens}

    def renew_tag(self, tag: str) -> None:
        with self._lock:
            self._tags[tag] = new_token()

    def expire(self) -> int:
        return self._purge()

    def counters(self) -> dict[str, int]:
        # Named once there is something to count: an ``Expiry`` above names it always.
        return {"expirations": self._expirations} if self._expirations else {}

    # -- deadlines -----------------------------------------------------------------------

    def _entry(self, value: Any, ttl: float | None) -> Any:
        if ttl is not None:
            return _Expiring(value, self.clock() + ttl)
        return _Expiring(value, math.inf) if type(value) is _Expiring else value

    def _store(self, key: str, entry: Any) -> None:
        """Write one entry (with the lock held); LRU adds its order and its bound."""
        self._data[key] = entry

    def _left_locked(self, keys: Iterable[str]) -> None:
        """Told of the keys just removed (with the lock held): a policy forgets them."""

    def _unwrap(self, key: str, entry: _Expiring) -> Any:
        if entry.deadline > self.clock():
            return entry.value
        self._remove_expired([key])
        raise KeyError(key)

    def _remove_expired(self, keys: Iterable[str]) -> int:
        """Remove those ``keys`` whose entry is expired *now*: judged under the lock, so
        a value written after the caller looked is never the one removed."""
        with self._lock:
            return self._remove_expired_locked(keys, self.clock())

    def _remove_expired_locked(self, keys: Iterable[str], now: float) -> int:
        data = self._data
        removed = []
        for key in keys:
            entry = data.get(key)
            if type(entry) is _Expiring and entry.deadline <= now:
                del data[key]
                removed.append(key)
        self._left_locked(removed)
        self._expirations += len(removed)
        return len(removed)

    def _purge(self) -> int:
        if not self._heap:
            return 0
        with self._lock:
            return self._purge_locked()

    def _purge_locked(self) -> int:
        """Remove every entry whose deadline has passed (with the lock held)."""
        heap, now = self._heap, self.clock()
        due = []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[1])
        removed = self._remove_expired_locked(due, now) if due else 0
        if len(heap) > 2 * len(self._data) + 64:
            # Rewritten keys leave stale deadlines behind: drop them before they pile up.
            self._rebuild_heap()
        return removed

    def _rebuild_heap(self) -> None:
        """The heap of deadlines afresh from the entries (with the lock held)."""
        self._heap = [
            (entry.deadline, key)
            for key, entry in self._data.items()
            if type(entry) is _Expiring and entry.deadline != math.inf
        ]
        heapq.heapify(self._heap)

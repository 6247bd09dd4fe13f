"""Expiry: entries that disappear ``ttl`` seconds after they were written."""

from __future__ import annotations

import heapq
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import attrs

from pystorage.errors import CodecError, ConfigurationError
from pystorage.layers.base import Layer, Wrapper, stack_from

#: Values with a deadline are stored as [MARK, deadline, value]: objects above a codec
#: (a list: MsgPack refuses tuples, which it would give back as lists).
MARK = "pystorage.expires"
#: ... or as MAGIC + 8-byte deadline + bytes, where Expiry sits directly on bytes.
MAGIC = b"\x00pystorage.expires\x00"
_DEADLINE = struct.Struct(">d")


def _optional_ttl(_: object, attribute: attrs.Attribute[float | None], value: object) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
    ):
        raise ConfigurationError(f"{attribute.name} must be a positive number or None")


def seal(value: Any, deadline: float) -> Any:
    """``value`` with its deadline attached, in a form every codec can store."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return MAGIC + _DEADLINE.pack(deadline) + bytes(value)
    return [MARK, deadline, value]


def unseal(stored: Any) -> tuple[Any, float | None]:
    """The value and its deadline (None when it has none)."""
    if isinstance(stored, (tuple, list)):
        if len(stored) == 3 and stored[0] == MARK:
            return stored[2], float(stored[1])
    elif isinstance(stored, bytes) and stored.startswith(MAGIC):
        start = len(MAGIC)
        return stored[start + _DEADLINE.size :], _DEADLINE.unpack_from(stored, start)[0]
    return stored, None


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Expiry(Wrapper):
    """Entries expire ``ttl`` seconds after they are written (``ttl=None``: only those
    written with ``set(key, value, ttl=...)``).

    Where the backend expires entries natively (Redis), the TTL is handed down and this
    layer keeps no books. Elsewhere the deadline is stored with the value, so it holds
    across processes and restarts, and an in-memory heap of deadlines removes expired
    entries on access, in O(log n) per expired entry, never by scanning every key.
    ``expire()`` sweeps every entry. ``clock`` returns seconds since the epoch.
    """

    supports_ttl: ClassVar[bool] = True
    removes_entries: ClassVar[bool] = True

    ttl: float | None = attrs.field(default=None, validator=_optional_ttl)
    clock: Callable[[], float] = attrs.field(default=time.time, repr=False)
    _native: bool = attrs.field(init=False, default=False, repr=False)
    _deadlines: dict[str, float] = attrs.field(factory=dict, init=False, repr=False)
    _heap: list[tuple[float, str]] = attrs.field(factory=list, init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _expirations: int = attrs.field(default=0, init=False, repr=False)
    _evicted_below: bool = attrs.field(init=False, default=False, repr=False)

    def link(self, inner: Layer) -> None:
        super().link(inner)
        self._native = inner.has_ttl()
        self._evicted_below = any(layer.removes_entries for layer in stack_from(inner))
        if not self._native:
            self.expire()

    def get(self, key: str) -> Any:
        now = self._expire_due()
        stored = self._inner.get(key)
        if self._native:
            return stored
        value, deadline = unseal(stored)
        if deadline is not None and deadline <= now:
            self._remove([key])
            raise KeyError(key)
        return value

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        now = self._expire_due()
        ttl = self.ttl if ttl is None else ttl
        if self._native:
            self._inner.set(key, value, ttl)
            return
        if ttl is None:
            self._inner.set(key, value)
            self._track(key, None)
            return
        deadline = now + ttl
        self._inner.set(key, seal(value, deadline))
        self._track(key, deadline)

    def delete(self, key: str) -> None:
        self._expire_due()
        self._track(key, None)
        self._inner.delete(key)

    def contains(self, key: str) -> bool:
        self._expire_due()
        return self._inner.contains(key)

    def keys(self) -> Iterator[str]:
        self._expire_due()
        return self._inner.keys()

    def count(self) -> int:
        self._expire_due()
        return self._inner.count()

    def clear(self) -> None:
        self._inner.clear()
        with self._lock:
            self._deadlines.clear()
            self._heap.clear()

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        now = self._expire_due()
        return self._live(self._inner.get_many(keys), now)

    def peek_many(self, keys: Iterable[str]) -> dict[str, Any]:
        now = self._expire_due()
        return self._live(self._inner.peek_many(keys), now)

    def _live(self, found: dict[str, Any], now: float) -> dict[str, Any]:
        """The values of ``found`` whose deadline has not passed; the others are removed."""
        if self._native:
            return found
        result = {}
        expired = []
        for key, stored in found.items():
            value, deadline = unseal(stored)
            if deadline is not None and deadline <= now:
                expired.append(key)
            else:
                result[key] = value
        if expired:
            self._remove(expired)
        return result

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        now = self._expire_due()
        ttl = self.ttl if ttl is None else ttl
        if self._native or ttl is None:
            self._inner.set_many(items, ttl)
            if not self._native:
                for key in items:
                    self._track(key, None)
            return
        deadline = now + ttl
        self._inner.set_many({key: seal(value, deadline) for key, value in items.items()})
        for key in items:
            self._track(key, deadline)

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for key in keys:
            self._track(key, None)
        self._inner.delete_many(keys)

    def expire(self) -> int:
        """Read every entry's deadline, remove the expired ones, and rebuild the heap."""
        if self._native:
            return self._inner.expire()
        now = self.clock()
        deadlines: dict[str, float] = {}
        expired = []
        for stored in self._read_all():
            for key, value in stored.items():
                _, deadline = unseal(value)
                if deadline is None:
                    continue
                if deadline <= now:
                    expired.append(key)
                else:
                    deadlines[key] = deadline
        with self._lock:
            self._deadlines = deadlines
            self._rebuild_heap()
        self._remove(expired)
        return len(expired)

    def _read_all(self, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every entry below, a batch at a time (one round trip each on Redis or S3)."""
        keys = list(self._inner.keys())
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            try:
                yield self._inner.peek_many(chunk)
            except CodecError:  # a foreign or corrupt entry: read the others one by one
                yield dict(self._readable(chunk))

    def _readable(self, keys: list[str]) -> Iterator[tuple[str, Any]]:
        for key in keys:
            try:
                yield from self._inner.peek_many([key]).items()
            except CodecError:  # not a value of ours
                continue

    def _rebuild_heap(self) -> None:
        """The heap of live deadlines only (call with the lock held)."""
        self._heap = [(deadline, key) for key, deadline in self._deadlines.items()]
        heapq.heapify(self._heap)

    def _track(self, key: str, deadline: float | None) -> None:
        with self._lock:
            if deadline is None:
                self._deadlines.pop(key, None)
            else:
                self._deadlines[key] = deadline
                heapq.heappush(self._heap, (deadline, key))
            if len(self._heap) > 2 * len(self._deadlines) + 64:
                # Rewrites leave stale entries behind: drop them before they pile up.
                self._rebuild_heap()

    def _expire_due(self) -> float:
        """Remove the entries whose deadline has passed; returns the time it used."""
        now = self.clock()
        heap = self._heap
        if not heap or heap[0][0] > now:
            return now
        due = []
        with self._lock:
            heap = self._heap  # compaction may have replaced it meanwhile
            while heap and heap[0][0] <= now:
                deadline, key = heapq.heappop(heap)
                # A stale heap entry: the key was rewritten or deleted since.
                if self._deadlines.get(key) == deadline:
                    del self._deadlines[key]
                    due.append(key)
        # Only entries still there count as expired. Asking costs a request per key, so
        # only where a layer below (CountLimit, LRU) may have evicted some already.
        present = [key for key in due if self._inner.contains(key)] if self._evicted_below else due
        if present:
            with self._lock:
                self._expirations += len(present)
            self._inner.delete_many(present)
        return now

    def counters(self) -> dict[str, int]:
        counts = self._inner.counters()
        counts["expirations"] = counts.get("expirations", 0) + self._expirations
        return counts

    def _remove(self, keys: list[str]) -> None:
        with self._lock:
            self._expirations += len(keys)
        for key in keys:
            self._track(key, None)
        self._inner.delete_many(keys)

"""Layers of a user's own, written once in the sync style of docs/writing-a-layer.md: the
tests run them in Storage and AsyncStorage (whose twins are made from this source)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs

from pystorage.errors import BackendError
from pystorage.layers import Backend, Wrapper
from pystorage.layers.base import ABSENT


@attrs.define(eq=False)
class SlowLog(Wrapper):
    """The docs' example: reports operations that take ``threshold`` seconds or more."""

    threshold: float = 0.1
    report: Callable[[str, str, float], None] = attrs.field(default=print, repr=False)
    _slow: int = attrs.field(default=0, init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    def get(self, key: str) -> Any:
        start = time.perf_counter()
        try:
            return self._inner.get(key)
        finally:
            self._check("get", key, start)

    def lookup(self, key: str, default: Any = None) -> Any:
        start = time.perf_counter()
        try:
            return self._inner.lookup(key, default)
        finally:
            self._check("get", key, start)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        start = time.perf_counter()
        try:
            self._inner.set(key, value, ttl)
        finally:
            self._check("set", key, start)

    def counters(self) -> dict[str, int]:
        counts = self._inner.counters()
        counts["slow"] = counts.get("slow", 0) + self._slow
        return counts

    def _check(self, operation: str, key: str, start: float) -> None:
        seconds = time.perf_counter() - start
        if seconds >= self.threshold:
            with self._lock:
                self._slow += 1
            self.report(operation, key, seconds)


@attrs.define(eq=False)
class Envelope(Wrapper):
    """Changes values: stores each one as ``[tag, value]`` (a list, which every codec
    keeps), and refuses to read a value that another writer stored (no silent wrong
    answer)."""

    tag: str = "v1"

    def _open(self, stored: Any) -> Any:
        if not (isinstance(stored, list) and len(stored) == 2 and stored[0] == self.tag):
            raise BackendError(f"a value not written by Envelope({self.tag!r}): {stored!r}")
        return stored[1]

    def _opened(self, found: Mapping[str, Any]) -> dict[str, Any]:
        return {key: self._open(stored) for key, stored in found.items()}

    def get(self, key: str) -> Any:
        return self._open(self._inner.get(key))

    def lookup(self, key: str, default: Any = None) -> Any:
        stored = self._inner.lookup(key, ABSENT)
        return default if stored is ABSENT else self._open(stored)

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        stored, left = self._inner.get_with_ttl(key)
        return self._open(stored), left

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._opened(self._inner.get_many(keys))

    def peek_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._opened(self._inner.peek_many(keys))

    def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        found = self._inner.get_many_with_ttl(keys)
        return {key: (self._open(stored), left) for key, (stored, left) in found.items()}

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._inner.set(key, [self.tag, value], ttl)

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        self._inner.set_many({key: [self.tag, value] for key, value in items.items()}, ttl)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        return self._inner.add(key, [self.tag, value], ttl)

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        def enveloped(stored: Any) -> Any:
            return [self.tag, change(stored if stored is ABSENT else self._open(stored))]

        return self._open(self._inner.modify(key, enveloped, ttl))


@attrs.define(eq=False)
class HitCount(Wrapper):
    """Keeps state: counts hits and misses of reads, and the keys read most recently."""

    remember: int = 3
    _hits: int = attrs.field(default=0, init=False)
    _misses: int = attrs.field(default=0, init=False)
    _recent: list[str] = attrs.field(factory=list, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    def get(self, key: str) -> Any:
        try:
            value = self._inner.get(key)
        except KeyError:
            self._count(key, hit=False)
            raise
        self._count(key, hit=True)
        return value

    def lookup(self, key: str, default: Any = None) -> Any:
        value = self._inner.lookup(key, ABSENT)
        self._count(key, hit=value is not ABSENT)
        return default if value is ABSENT else value

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        found = self._inner.get_many(keys)
        for key in keys:
            self._count(key, hit=key in found)
        return found

    def recent(self) -> list[str]:
        """The keys read last, the latest last."""
        with self._lock:
            return list(self._recent)

    def counters(self) -> dict[str, int]:
        counts = self._inner.counters()
        counts.update(reads_hit=self._hits, reads_missed=self._misses)
        return counts

    def _count(self, key: str, hit: bool) -> None:
        with self._lock:
            if hit:
                self._hits += 1
            else:
                self._misses += 1
            self._recent = [*self._recent, key][-self.remember :]


@attrs.define(eq=False)
class DictBackend(Backend):
    """The short backend: a dict, with the atomic capability (one lock for every write,
    so that no write lands inside an ``add`` or a ``modify``)."""

    _data: dict[str, Any] = attrs.field(factory=dict, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    def get(self, key: str) -> Any:
        return self._data[key]

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self.refuse_ttl(ttl)
        with self._lock:
            self._data[key] = value

    def delete(self, key: str) -> None:
        with self._lock:
            del self._data[key]

    def contains(self, key: str) -> bool:
        return key in self._data

    def keys(self) -> Iterator[str]:
        return iter(list(self._data))

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        self.refuse_ttl(ttl)
        with self._lock:
            if key in self._data:
                return False
            self._data[key] = value
            return True

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        self.refuse_ttl(ttl)
        with self._lock:
            self._data[key] = value = change(self._data.get(key, ABSENT))
            return value

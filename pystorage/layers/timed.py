"""Timed: how long each operation of the layers below it takes, as histograms."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from time import perf_counter
from typing import Any, NamedTuple

import attrs

from pystorage import _fork
from pystorage.errors import ConfigurationError
from pystorage.layers.base import Wrapper

#: Upper bounds (seconds) of the buckets: a memory hit lands in the first, a Redis or
#: SQLite round trip in the middle, an S3 request near the end.
BOUNDS: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

#: The operations timed, each under the name it is reported as: a read with a default
#: or with its time to live is a ``get``, as a batch read with them is a ``get_many``.
OPERATIONS = ("get", "contains", "set", "add", "modify", "delete")
OPERATIONS_MANY = ("get_many", "set_many", "delete_many")

#: Called with (operation, seconds) after each timed operation.
Observer = Callable[[str, float], None]


class Histogram(NamedTuple):
    """The durations of one operation: ``counts[i]`` operations took at most
    ``bounds[i]`` seconds and more than the bound before (the last count, beyond the
    last bound); ``total`` is their sum in seconds."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float


def _checked_bounds(bounds: Iterable[float]) -> tuple[float, ...]:
    checked = tuple(bounds)
    if not checked or any(
        isinstance(bound, bool)
        or not isinstance(bound, (int, float))
        or not math.isfinite(bound)
        or bound <= 0
        for bound in checked
    ):
        raise ConfigurationError(f"bounds are positive finite seconds, not {bounds!r}")
    if list(checked) != sorted(set(checked)):
        raise ConfigurationError(f"bounds must increase, not {checked!r}")
    return tuple(float(bound) for bound in checked)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Timed(Wrapper):
    """Times each operation of the layers below it (failed ones too) into a histogram
    per operation, for ``pystorage.metrics`` to export. Reads of a whole storage
    (``keys``, ``len``, ``clear``) are not timed. Costs two clock reads and a short
    lock per operation; nothing where absent."""

    bounds: tuple[float, ...] = attrs.field(default=BOUNDS, converter=_checked_bounds)
    _counts: dict[str, list[int]] = attrs.field(init=False, repr=False)
    _totals: dict[str, float] = attrs.field(init=False, repr=False)
    _observers: list[Observer] = attrs.field(factory=list, init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        names = OPERATIONS + OPERATIONS_MANY
        self._counts = {name: [0] * (len(self.bounds) + 1) for name in names}
        self._totals = dict.fromkeys(names, 0.0)
        _fork.renew_in_child(self, Timed._renew_lock)

    def _renew_lock(self) -> None:
        """In a forked child: a thread of the parent may have held the lock at the fork."""
        self._lock = threading.Lock()

    def histograms(self) -> dict[str, Histogram]:
        """Each operation's durations so far, operations never timed left out."""
        with self._lock:
            return {
                name: Histogram(self.bounds, tuple(counts), self._totals[name])
                for name, counts in self._counts.items()
                if any(counts)
            }

    def observe(self, observer: Observer) -> None:
        """Call ``observer(operation, seconds)`` after each operation from now on (an
        exporter that records each duration itself, as OpenTelemetry's histograms do)."""
        if not callable(observer):
            raise ConfigurationError(
                f"an observer is called with (operation, seconds): {observer!r}"
            )
        self._observers.append(observer)

    def _record(self, operation: str, started: float) -> None:
        seconds = perf_counter() - started
        bucket = bisect.bisect_left(self.bounds, seconds)
        with self._lock:
            self._counts[operation][bucket] += 1
            self._totals[operation] += seconds
        for observer in self._observers:
            observer(operation, seconds)

    # Each operation: the clock, the layer below, the record (in ``finally``: a failure
    # took its time too).

    def get(self, key: str) -> Any:
        started = perf_counter()
        try:
            return self._inner.get(key)
        finally:
            self._record("get", started)

    def lookup(self, key: str, default: Any = None) -> Any:
        started = perf_counter()
        try:
            return self._inner.lookup(key, default)
        finally:
            self._record("get", started)

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        started = perf_counter()
        try:
            return self._inner.get_with_ttl(key)
        finally:
            self._record("get", started)

    def contains(self, key: str) -> bool:
        started = perf_counter()
        try:
            return self._inner.contains(key)
        finally:
            self._record("contains", started)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        started = perf_counter()
        try:
            self._inner.set(key, value, ttl)
        finally:
            self._record("set", started)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        started = perf_counter()
        try:
            return self._inner.add(key, value, ttl)
        finally:
            self._record("add", started)

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        started = perf_counter()
        try:
            return self._inner.modify(key, change, ttl)
        finally:
            self._record("modify", started)

    def delete(self, key: str) -> None:
        started = perf_counter()
        try:
            self._inner.delete(key)
        finally:
            self._record("delete", started)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        started = perf_counter()
        try:
            return self._inner.get_many(keys)
        finally:
            self._record("get_many", started)

    def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        started = perf_counter()
        try:
            return self._inner.get_many_with_ttl(keys)
        finally:
            self._record("get_many", started)

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        started = perf_counter()
        try:
            self._inner.set_many(items, ttl)
        finally:
            self._record("set_many", started)

    def delete_many(self, keys: Iterable[str]) -> None:
        started = perf_counter()
        try:
            self._inner.delete_many(keys)
        finally:
            self._record("delete_many", started)

"""Group 1: STORAGE_LRU and TinyLFU against dict, functools.lru_cache, cachetools,
lru-dict, cachebox and theine.

Every subject is driven the same way, ``deque(map(op, keys), 0)``, so the loop costs
next to nothing and the same for all. Gets use ``.get(key)`` (None on a miss) everywhere.
"""

from __future__ import annotations

import functools
import random
from collections import deque
from collections.abc import Callable, MutableMapping
from itertools import repeat
from typing import Any, cast

import cachebox
import cachetools
import lru
import theine

from benchmarks.harness import Samples, Subject, compare, fixed
from benchmarks.model import GroupResult, Row, Settings, Target, row
from pystorage import Storage
from pystorage.layers import LRU, Stats, Timed, TinyLFU
from pystorage.storage_provider import StorageProvider

VS_CACHETOOLS = Target(1.0)
#: Issue 18's targets against the fastest compiled cache (cachebox, in Rust).
GET_VS_CACHEBOX = Target(2.0)
SET_VS_CACHEBOX = Target(3.0)
VALUE = "value"


def run(settings: Settings, result: GroupResult) -> None:
    sizes = settings.pick((1_000, 100_000), (100, 1_000))
    ops = settings.pick(20_000, 1_000)
    rounds = settings.pick(31, 3)
    for maxsize in sizes:
        result.rows += _one_size(maxsize, ops, rounds)
    result.notes.append(
        f"{ops:,} operations per round, {rounds} rounds, uniform random str keys. "
        "set+evict: each set adds an absent key and evicts the least recently used one "
        "(the dict only overwrites: it has no eviction)."
    )


def _one_size(maxsize: int, ops: int, rounds: int) -> list[Row]:
    rng = random.Random(maxsize)
    present = [f"key:{i}" for i in range(maxsize)]
    caches: dict[str, MutableMapping[str, Any]] = {
        "PyStorage": StorageProvider().create(StorageProvider.STORAGE_LRU, maxsize=maxsize),
        "cachetools": cachetools.LRUCache(maxsize),
        "lru-dict": cast(MutableMapping[str, Any], lru.LRU(maxsize)),
        "cachebox": cast(MutableMapping[str, Any], cachebox.LRUCache(maxsize)),
        "TinyLFU": Storage(TinyLFU(maxsize)),
        "Stats over LRU": Storage(Stats(), LRU(maxsize)),
        "Timed over LRU": Storage(Timed(), LRU(maxsize)),
        "theine": _Theine(maxsize),
        "dict": {},
    }
    for cache in caches.values():
        for key in present:
            cache[key] = VALUE
    cached = functools.lru_cache(maxsize)(_identity)
    for key in present:
        cached(key)

    size = f"maxsize {maxsize:,}"
    hits = rng.choices(present, k=ops)
    subjects = {name: _gets(cache.get, hits) for name, cache in caches.items()}
    subjects["lru_cache"] = _gets(cached, hits)
    timed = compare(subjects, rounds)
    rows = _rows(f"get-hit ({size})", timed)
    rows.append(
        row(f"get-hit ({size})", timed["PyStorage"], "functools.lru_cache", timed["lru_cache"])
    )

    misses = [f"miss:{i}" for i in range(ops)]
    timed = compare({name: _gets(cache.get, misses) for name, cache in caches.items()}, rounds)
    rows += _rows(f"get-miss ({size})", timed)

    timed = compare({name: _sets(cache, maxsize, ops) for name, cache in caches.items()}, rounds)
    rows += _rows(f"set+evict ({size})", timed)
    return rows


def _identity(key: str) -> str:
    return key


def _rows(operation: str, timed: dict[str, Samples]) -> list[Row]:
    mine = timed["PyStorage"]
    compiled = SET_VS_CACHEBOX if operation.startswith("set") else GET_VS_CACHEBOX
    return [
        row(operation, mine, "cachetools.LRUCache", timed["cachetools"], VS_CACHETOOLS),
        row(operation, mine, "lru.LRU (lru-dict, C)", timed["lru-dict"]),
        row(operation, mine, "cachebox.LRUCache (Rust)", timed["cachebox"], compiled),
        row(operation, mine, "dict (floor)", timed["dict"]),
        row(f"TinyLFU {operation}", timed["TinyLFU"], "cachebox.LRUCache (Rust)",
            timed["cachebox"], compiled),
        row(f"TinyLFU {operation}", timed["TinyLFU"], "theine.Cache (W-TinyLFU, Rust)",
            timed["theine"]),
        # What a layer above the memory tier adds: a Stats layer's own work only.
        row(f"Stats over LRU {operation}", timed["Stats over LRU"], "LRU alone",
            timed["PyStorage"]),
        # What timing each operation costs (metrics' histograms): two clock reads, a lock.
        row(f"Timed over LRU {operation}", timed["Timed over LRU"], "LRU alone",
            timed["PyStorage"]),
    ]  # fmt: skip


class _Theine(dict[str, Any]):
    """theine's cache where this group expects a mapping. Timed through its own methods,
    with no frame of ours: ``get`` (which returns the value and a found flag) and
    ``set``."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.cache = theine.Cache(maxsize)
        self.get = self.cache.get  # type: ignore[method-assign]

    def __setitem__(self, key: str, value: Any) -> None:
        self.cache.set(key, value)


def _gets(get: Callable[[str], Any], keys: list[str]) -> Subject:
    return fixed(lambda: deque(map(get, keys), 0), len(keys))


def _sets(cache: MutableMapping[str, Any], maxsize: int, ops: int) -> Subject:
    """Sets of absent keys: a cycle of ``maxsize + ops`` keys, the last ``maxsize`` of
    which are in the cache first, so each set evicts the least recently used key."""
    cycle = [f"set:{i}" for i in range(maxsize + ops)]
    for key in cycle if isinstance(cache, dict) else cycle[ops:]:
        cache[key] = VALUE
    setitem = cache.cache.set if isinstance(cache, _Theine) else cache.__setitem__
    cursor = 0

    def prepare() -> Callable[[], object]:
        nonlocal cursor
        keys = [cycle[(cursor + i) % len(cycle)] for i in range(ops)]
        cursor = (cursor + ops) % len(cycle)
        return lambda: deque(map(setitem, keys, repeat(VALUE)), 0)

    return Subject(prepare, ops)

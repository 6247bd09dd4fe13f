"""Group 1: STORAGE_LRU against dict, functools.lru_cache, cachetools and lru-dict.

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

import cachetools
import lru

from benchmarks.harness import Samples, Subject, compare, fixed
from benchmarks.model import GroupResult, Row, Settings, Target, row
from pystorage.storage_provider import StorageProvider

VS_CACHETOOLS = Target(1.0)
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
    return [
        row(operation, mine, "cachetools.LRUCache", timed["cachetools"], VS_CACHETOOLS),
        row(operation, mine, "lru.LRU (lru-dict, C)", timed["lru-dict"]),
        row(operation, mine, "dict (floor)", timed["dict"]),
    ]


def _gets(get: Callable[[str], Any], keys: list[str]) -> Subject:
    return fixed(lambda: deque(map(get, keys), 0), len(keys))


def _sets(cache: MutableMapping[str, Any], maxsize: int, ops: int) -> Subject:
    """Sets of absent keys: a cycle of ``maxsize + ops`` keys, the last ``maxsize`` of
    which are in the cache first, so each set evicts the least recently used key."""
    cycle = [f"set:{i}" for i in range(maxsize + ops)]
    for key in cycle if isinstance(cache, dict) else cycle[ops:]:
        cache[key] = VALUE
    setitem = cache.__setitem__
    cursor = 0

    def prepare() -> Callable[[], object]:
        nonlocal cursor
        keys = [cycle[(cursor + i) % len(cycle)] for i in range(ops)]
        cursor = (cursor + ops) % len(cycle)
        return lambda: deque(map(setitem, keys, repeat(VALUE)), 0)

    return Subject(prepare, ops)

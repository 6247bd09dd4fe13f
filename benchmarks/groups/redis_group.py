"""Group 5: Storage(Codec("raw"), Redis(client)) against redis-py on a local redis-server.

Both sides get their own client (one connection each) to the same throwaway server and
store the same 100-byte values under the same key names. The anchor uses redis-py's
best tool for each job: GET, SET, MGET and MSET, exactly what the Redis layer sends.
"""

from __future__ import annotations

from collections import deque
from itertools import repeat

import redis

from benchmarks.harness import compare, fixed, repeated
from benchmarks.model import GroupResult, Row, Settings, Target, row
from pystorage.layers import Codec, Redis
from pystorage.storage import Storage
from pystorage.testing import RedisServer

SINGLE = Target(1.10)
BATCH = Target(0.05, "<= 0.05 (>= 20x)")
VALUE = b"v" * 100
BATCH_SIZE = 100


def run(settings: Settings, result: GroupResult) -> None:
    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        result.skipped = f"cannot start redis-server: {exc}"
        return
    try:
        result.notes.append(f"redis-server started in {server.startup_seconds:.2f} s.")
        _measure(server.url, settings, result)
    finally:
        server.stop()


def _measure(url: str, settings: Settings, result: GroupResult) -> None:
    raw = redis.Redis.from_url(url)
    # The same names as the raw client's: no prefix, on a server of the benchmark's own.
    client = redis.Redis.from_url(url)
    storage = Storage(Codec("raw"), Redis(client, prefix="", whole_database=True))
    ops = settings.pick(300, 20)
    batches = settings.pick(20, 3)
    rounds = settings.pick(15, 3)
    keys = [f"key:{i}" for i in range(settings.pick(1_000, 100))]
    raw.mset(dict.fromkeys(keys, VALUE))
    picks = (keys * (ops // len(keys) + 1))[:ops]
    batch = keys[:BATCH_SIZE]
    items = dict.fromkeys(batch, VALUE)
    try:
        timed = compare(
            {
                "get": fixed(lambda: deque(map(storage.__getitem__, picks), 0), ops),
                "GET": fixed(lambda: deque(map(raw.get, picks), 0), ops),
                "set": fixed(lambda: deque(map(storage.__setitem__, picks, repeat(VALUE)), 0), ops),
                "SET": fixed(lambda: deque(map(raw.set, picks, repeat(VALUE)), 0), ops),
                "get_many": repeated(lambda: storage.get_many(batch), batches),
                "MGET": repeated(lambda: raw.mget(batch), batches),
                "set_many": repeated(lambda: storage.set_many(items), batches),
                "MSET": repeated(lambda: raw.mset(items), batches),
            },
            rounds,
        )
    finally:
        storage.close()
        raw.close()
    result.rows += [
        row("get", timed["get"], "redis-py GET", timed["GET"], SINGLE),
        row("set", timed["set"], "redis-py SET", timed["SET"], SINGLE),
        row(f"get_many({BATCH_SIZE})", timed["get_many"], "redis-py MGET", timed["MGET"]),
        row(f"set_many({BATCH_SIZE})", timed["set_many"], "redis-py MSET", timed["MSET"]),
        _batch_row("get_many", timed["get_many"].median, "gets", timed["get"].median),
        _batch_row("set_many", timed["set_many"].median, "sets", timed["set"].median),
    ]
    result.notes.append(
        f"{ops} single ops or {batches} batches per round, {rounds} rounds, 100-byte values; "
        "PyStorage stack: Storage(Codec('raw'), Redis(client))."
    )


def _batch_row(batch: str, batch_ns: float, singles: str, single_ns: float) -> Row:
    many = BATCH_SIZE * single_ns
    return Row(
        f"{batch}({BATCH_SIZE})",
        batch_ns,
        f"{BATCH_SIZE} single {singles} (PyStorage)",
        many,
        batch_ns / many,
        BATCH,
        f"{many / batch_ns:.0f}x faster",
    )

"""Group 12: async Redis under load, with autopipelining (issue 23).

Concurrent tasks on one event loop each do a run of operations, 90% get and 10% set of
100-byte values over 1,000 keys, through: PyStorage (``AsyncStorage(Codec("raw"),
Redis(url=...))``, autopipelining on, its default), the same with ``autopipeline=False``,
raw ``redis.asyncio`` with a blocking pool of 100 connections, and cashews and aiocache
(each over its own redis.asyncio pool of 100; both in the ``bench`` extra; a row is
left out, with a note, where one is not installed).

Rows: throughput at 100 tasks x 100 operations (a round is the whole load; time per
operation, so a ratio of 0.33 is three times the throughput); one task alone (the cost
of the coalescing when there is nothing to coalesce, target at most 1.05x raw); and the
P50 and P99 latency of one operation at 1, 10, 100 and 1,000 tasks, each operation timed
on its own inside the load (the rounds of every subject interleaved).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import redis.asyncio

from benchmarks.harness import Samples, Thunk, compare, fixed
from benchmarks.model import GroupResult, Row, Settings, Target, row
from pystorage.aio.storage import AsyncStorage
from pystorage.layers import Codec, Redis
from pystorage.testing import RedisServer

#: Issue 23's targets: three times the throughput (a third of the time per operation).
THREE_TIMES = Target(1 / 3, "<= 0.33 (>= 3x throughput)")
ALONE = Target(1.05)
VALUE = b"v" * 100
KEYS = [f"key:{i}" for i in range(1_000)]
POOL = 100
Loop = asyncio.AbstractEventLoop
#: A client's get and set, awaited.
Ops = tuple[Callable[[str], Awaitable[object]], Callable[[str, bytes], Awaitable[object]]]


def run(settings: Settings, result: GroupResult) -> None:
    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        result.skipped = f"cannot start redis-server: {exc}"
        return
    loop = asyncio.new_event_loop()
    try:
        clients, closers, missing = loop.run_until_complete(_clients(server.url))
        try:
            _measure(loop, clients, settings, result)
        finally:
            for close in closers:
                loop.run_until_complete(close())
        if missing:
            result.notes.append(f"Not installed, no rows: {', '.join(missing)}.")
    finally:
        loop.close()
        server.stop()


async def _clients(
    url: str,
) -> tuple[dict[str, Ops], list[Callable[[], Awaitable[object]]], list[str]]:
    """Each subject's get and set, the calls that close them, the anchors not installed."""
    mine = AsyncStorage(Codec("raw"), Redis(url=url, prefix="", whole_database=True))
    off = AsyncStorage(
        Codec("raw"), Redis(url=url, prefix="", whole_database=True, autopipeline=False)
    )
    pool = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=POOL, timeout=60)
    raw = redis.asyncio.Redis(connection_pool=pool)
    await raw.mset(dict.fromkeys(KEYS, VALUE))
    clients: dict[str, Ops] = {
        "PyStorage": (mine.get, mine.set),
        "PyStorage, autopipeline=False": (off.get, off.set),
        "redis.asyncio": (raw.get, raw.set),
    }
    closers: list[Callable[[], Awaitable[object]]] = [mine.aclose, off.aclose, raw.aclose]
    missing = []
    try:
        from cashews import Cache

        cashews = Cache()
        # No timeouts of their own below the pool's (1,000 tasks wait their turns).
        cashews.setup(url, max_connections=POOL, wait_for_connection_timeout=60, socket_timeout=60)
        await cashews.init()
        clients["cashews"] = (cashews.get, cashews.set)
        closers.append(cashews.close)
    except ImportError:
        missing.append("cashews")
    try:
        from aiocache import RedisCache
        from aiocache.serializers import NullSerializer

        aiocache = RedisCache(
            endpoint=pool.connection_kwargs["host"],
            port=pool.connection_kwargs["port"],
            pool_max_size=POOL,
            connection_pool_class=redis.asyncio.BlockingConnectionPool,
            serializer=NullSerializer(),  # bytes as they are, as the others
            timeout=None,  # its default, 5 s an operation, fails at 1,000 tasks
        )
        clients["aiocache"] = (aiocache.get, aiocache.set)
        closers.append(aiocache.close)
    except ImportError:
        missing.append("aiocache")
    return clients, closers, missing


def _load(
    ops: Ops, tasks: int, each: int, latencies: list[int] | None = None
) -> Callable[[], Coroutine[Any, Any, None]]:
    """``tasks`` tasks of ``each`` operations (1 set in 10), as a coroutine factory."""
    get, set_ = ops

    async def task(number: int) -> None:
        rng = random.Random(number)
        for _ in range(each):
            key = KEYS[rng.randrange(len(KEYS))]
            began = time.perf_counter_ns()
            if rng.random() < 0.1:
                await set_(key, VALUE)
            else:
                await get(key)
            if latencies is not None:
                latencies.append(time.perf_counter_ns() - began)

    async def load() -> None:
        await asyncio.gather(*(task(number) for number in range(tasks)))

    return load


def _on(loop: Loop, work: Callable[[], Coroutine[Any, Any, object]]) -> Thunk:
    return lambda: loop.run_until_complete(work())


def _measure(loop: Loop, clients: dict[str, Ops], settings: Settings, result: GroupResult) -> None:
    rounds = settings.pick(11, 2)
    tasks, each = settings.pick((100, 100), (20, 10))
    loaded = compare(
        {
            name: fixed(_on(loop, _load(ops, tasks, each)), tasks * each)
            for name, ops in clients.items()
        },
        rounds,
    )
    alone_ops = settings.pick(500, 30)
    alone = compare(
        {
            name: fixed(_on(loop, _load(clients[name], 1, alone_ops)), alone_ops)
            for name in ("PyStorage", "PyStorage, autopipeline=False", "redis.asyncio")
        },
        settings.pick(21, 3),
    )
    result.rows += _throughput_rows(loaded, tasks, each)
    result.rows.append(
        row(
            "one task alone (PyStorage)",
            alone["PyStorage"],
            "redis.asyncio, one task",
            alone["redis.asyncio"],
            ALONE,
            note="nothing to coalesce: each command goes at once, as a plain command",
        )
    )
    result.rows.append(
        row(
            "one task alone (PyStorage)",
            alone["PyStorage"],
            "PyStorage, autopipeline=False, one task",
            alone["PyStorage, autopipeline=False"],
            note="the cost of the coalescing itself (a flag and a coroutine per command)",
        )
    )
    result.rows += _latency_rows(loop, clients, settings)
    result.notes.append(
        f"Load: {tasks} tasks x {each} operations a round (90% get, 10% set, 100-byte values, "
        f"1,000 keys), {rounds} rounds interleaved; one task alone: {alone_ops} operations. "
        f"redis.asyncio: a BlockingConnectionPool of {POOL}; cashews and aiocache: their "
        f"redis.asyncio pools of {POOL} (cashews pickles values, aiocache passes bytes)."
    )


def _throughput_rows(loaded: dict[str, Samples], tasks: int, each: int) -> list[Row]:
    load = f"{tasks} tasks x {each} ops"
    rows = [
        row(
            f"{load} (PyStorage)",
            loaded["PyStorage"],
            f"redis.asyncio, pool of {POOL}",
            loaded["redis.asyncio"],
            THREE_TIMES,
            note=f"{loaded['redis.asyncio'].median / loaded['PyStorage'].median:.1f}x throughput",
        ),
        row(
            f"{load} (PyStorage, autopipeline=False)",
            loaded["PyStorage, autopipeline=False"],
            f"redis.asyncio, pool of {POOL}",
            loaded["redis.asyncio"],
            note="without coalescing: what the option turns off",
        ),
    ]
    for anchor in ("cashews", "aiocache"):
        if anchor in loaded:
            ratio = loaded[anchor].median / loaded["PyStorage"].median
            rows.append(
                row(
                    f"{load} (PyStorage)",
                    loaded["PyStorage"],
                    anchor,
                    loaded[anchor],
                    THREE_TIMES,
                    note=f"{ratio:.1f}x throughput",
                )
            )
    return rows


def _latency_rows(loop: Loop, clients: dict[str, Ops], settings: Settings) -> list[Row]:
    """P50 and P99 of one operation at each number of tasks: PyStorage against raw, the
    others in the note. Every subject's round at one level runs before the next level,
    their order rotated each round."""
    rows = []
    total, least = settings.pick((10_000, 5), (400, 1))
    rounds = settings.pick(3, 1)
    for tasks in (1, 10, 100, 1_000):
        each = max(total // tasks, least)
        times: dict[str, list[int]] = {name: [] for name in clients}
        names = list(clients)
        for index in range(rounds + 1):  # the first round warms up
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                kept: list[int] = [] if index == 0 else times[name]
                loop.run_until_complete(_load(clients[name], tasks, each, kept)())
        for percentile in (50, 99):
            found = {name: _percentile(values, percentile) for name, values in times.items()}
            others = ", ".join(
                f"{name} {found[name] / 1000:.0f} us"
                for name in names
                if name not in ("PyStorage", "redis.asyncio")
            )
            rows.append(
                Row(
                    f"P{percentile} latency, {tasks} tasks (PyStorage)",
                    found["PyStorage"],
                    "redis.asyncio",
                    found["redis.asyncio"],
                    found["PyStorage"] / found["redis.asyncio"],
                    note=f"PyStorage {found['PyStorage'] / 1000:.0f} us, redis.asyncio "
                    f"{found['redis.asyncio'] / 1000:.0f} us; {others}",
                )
            )
    return rows


def _percentile(values: list[int], percentile: int) -> float:
    return statistics.quantiles(values, n=100)[percentile - 1] if len(values) > 1 else values[0]

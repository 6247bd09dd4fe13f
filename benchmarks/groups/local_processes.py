"""Group 10: 8 processes hammering one cache, in the shape of diskcache's own benchmark.

As diskcache's tests/benchmark_core.py does: 8 processes share one cache, each performs
the same number of operations on random keys of a fixed set of 100, 9 gets for each set
(a set with probability 0.1; diskcache's also deletes 1 %, left out here as issue 11
asks for 9 gets per set), values of random bytes, 100 B to 1 KB. Reported: the total time
(first start to last end, over all 8) and the 99th percentile of a set's latency, for
STORAGE_SQLITE with and without a byte limit, against diskcache.Cache and
diskcache.FanoutCache(shards=8). Issue 11 sets no target for these: they are reported.

Each process opens the cache itself after the fork, reads one key (its connection is
then open), waits for the others at a barrier, and times each set with
``perf_counter_ns`` (a system-wide monotonic clock on Linux, so the starts and ends of
different processes compare).
"""

from __future__ import annotations

import multiprocessing
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diskcache  # type: ignore[import-untyped]

from benchmarks.harness import Samples
from benchmarks.model import GroupResult, Row, Settings, row
from pystorage.storage_provider import StorageProvider

PROCESSES = 8
KEYS = [f"key-{i}" for i in range(100)]
SET_SHARE = 0.1  # 9 gets per set
#: The byte bound of the limited STORAGE_SQLITE: above what 100 keys of at most 1 KB
#: weigh, so no write evicts (the cost of keeping the bound across processes is timed).
BOUND = 10_000_000


def _sqlite(path: Path) -> Any:
    return StorageProvider().create(StorageProvider.STORAGE_SQLITE, path=path / "cache.db")


def _sqlite_limited(path: Path) -> Any:
    return StorageProvider().create(
        StorageProvider.STORAGE_SQLITE, path=path / "cache.db", max_bytes=BOUND
    )


def _sqlite_stored(path: Path) -> Any:
    return StorageProvider().create(
        StorageProvider.STORAGE_SQLITE, path=path / "cache.db", max_bytes=BOUND, eviction="stored"
    )


def _cache(path: Path) -> Any:
    return diskcache.Cache(str(path))


def _fanout(path: Path) -> Any:
    return diskcache.FanoutCache(str(path), shards=PROCESSES)


#: name: (label, opener). Each opener makes or opens the cache in a folder of its own.
CACHES: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "sqlite": ("STORAGE_SQLITE", _sqlite),
    "limited": ("STORAGE_SQLITE(max_bytes=10 MB)", _sqlite_limited),
    "stored": ('STORAGE_SQLITE(max_bytes=10 MB, eviction="stored")', _sqlite_stored),
    "cache": ("diskcache.Cache", _cache),
    "fanout": (f"diskcache.FanoutCache(shards={PROCESSES})", _fanout),
}


def worker(name: str, folder: Path, seed: int, ops: int, barrier: Any, results: Any) -> None:
    """One process: open, plan, wait for all, run; put (start, end, set latencies, failed
    sets) on ``results``."""
    cache = CACHES[name][1](folder)
    rng = random.Random(seed)
    values = [rng.randbytes(rng.randint(100, 1_000)) for _ in range(64)]
    plan = [(rng.random() < SET_SHARE, rng.choice(KEYS), rng.choice(values)) for _ in range(ops)]
    cache.get(KEYS[0])
    latencies: list[int] = []
    failed = 0
    # FanoutCache.set returns False when a shard stays locked past its timeout (0.010 s
    # by default) and drops the write; PyStorage and Cache.set wait, or raise.
    get, put, clock = cache.get, cache.set, time.perf_counter_ns
    barrier.wait()
    start = clock()
    for is_set, key, value in plan:
        if is_set:
            began = clock()
            stored = put(key, value)
            latencies.append(clock() - began)
            failed += stored is False
        else:
            get(key)
    end = clock()
    cache.close()
    results.put((start, end, latencies, failed))


def one_run(name: str, folder: Path, ops: int) -> tuple[float, float, int]:
    """(total ns, P99 set ns, dropped sets) of 8 processes on a fresh cache in ``folder``."""
    context = multiprocessing.get_context("fork")
    cache = CACHES[name][1](folder)
    for key in KEYS:
        cache[key] = b"x" * 100
    cache.close()
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    processes = [
        context.Process(target=worker, args=(name, folder, seed, ops, barrier, results))
        for seed in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
        if process.exitcode:
            raise RuntimeError(f"a {name} worker failed (exit code {process.exitcode})")
    total = max(end for _, end, _, _ in outcomes) - min(start for start, _, _, _ in outcomes)
    latencies = [latency for _, _, taken, _ in outcomes for latency in taken]
    p99 = statistics.quantiles(latencies, n=100)[98]
    return total, p99, sum(dropped for *_, dropped in outcomes)


def run(settings: Settings, result: GroupResult) -> None:
    ops = settings.pick(4_000, 200)
    rounds = settings.pick(5, 1)
    totals: dict[str, list[float]] = {name: [] for name in CACHES}
    p99s: dict[str, list[float]] = {name: [] for name in CACHES}
    dropped = dict.fromkeys(CACHES, 0)
    names = list(CACHES)
    with tempfile.TemporaryDirectory(dir=settings.scratch, prefix="pystorage-bench-procs-") as root:
        for index in range(rounds):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                folder = Path(root) / f"{name}-{index}"
                folder.mkdir()
                total, p99, lost = one_run(name, folder, ops)
                totals[name].append(total)
                p99s[name].append(p99)
                dropped[name] += lost
    result.rows += _rows(
        {name: Samples(tuple(values)) for name, values in totals.items()},
        {name: Samples(tuple(values)) for name, values in p99s.items()},
    )
    result.notes.append(
        f"{PROCESSES} processes x {ops:,} operations (about {ops // 10:,} sets each), "
        f"{rounds} runs per cache interleaved, each on a fresh cache; times are medians over "
        "the runs, a ratio the median of the per-run ratios. STORAGE_SQLITE: pickle codec; "
        "diskcache stores bytes as they are. The 10 MB bound is never reached. "
        "Sets FanoutCache dropped on its 10 ms shard timeout: "
        f"{dropped['fanout']:,} of about {rounds * PROCESSES * ops // 10:,}."
    )


def _rows(totals: dict[str, Samples], p99s: dict[str, Samples]) -> list[Row]:
    rows = []
    for mine in ("sqlite", "limited", "stored"):
        for anchor in ("cache", "fanout"):
            for measure, timed in (("total time", totals), ("P99 set", p99s)):
                rows.append(
                    row(
                        f"{PROCESSES} processes, {measure}: {CACHES[mine][0]}",
                        timed[mine],
                        CACHES[anchor][0],
                        timed[anchor],
                    )
                )
    return rows

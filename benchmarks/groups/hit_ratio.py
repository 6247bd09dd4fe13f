"""Group: how many reads hit, per eviction policy, replaying traces through each cache.

Every cache replays the same trace the way an application uses a cache: a read, and on
a miss a write of the key. PyStorage's memory backends (``LRU``, ``TinyLFU``) run
through a ``Storage``; the anchors are cachetools (LRU, LFU), cachebox (LRU, LFU, in
Rust) and theine (W-TinyLFU, in Rust), and the optimal hit ratio (Belady: on a miss,
evict the key asked for again furthest in the future), computed offline.

Traces: two real ones, from ``../shared/traces`` (copyright headissue GmbH, Jens Wilke,
CC BY 4.0; published with cache2k, redistributed with Caffeine's simulator): web07, whole,
and orm-busy, its first 1,000,000 accesses of 5,000,000 (a pure-Python replay of the
whole, for every cache and size, would take longer than the rest of ``make bench``).
Generated ones (seeded): Zipf with exponents 0.7, 0.9 and 1.2 over 100,000 keys; a loop
over 1.1 x the cache size; a hot set of 500 keys under a scan of one-off keys; and a
workload that shifts halfway from recency (short bursts) to frequency (Zipf 1.0).

A row compares miss ratios, PyStorage's best policy over the best anchor's (lower is
better); the target is the issue's: a hit ratio at least the best anchor's minus one point.

Then the policy behind a limit on disk: ``CountLimit(size, eviction="tinylfu")`` over
Files and over SQLite replays a prefix of three traces (a replay on disk costs a file or
a row per miss), against ``TinyLFU`` in memory on the same prefix (target: within 2
points); and what a restart costs: the second half of the prefix after the store was
closed and opened again, against the same half without a restart.
"""

from __future__ import annotations

import heapq
import lzma
import random
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cachebox
import cachetools
import theine

from benchmarks.model import GroupResult, Row, Settings, Target
from pystorage import Storage
from pystorage.layers import LRU, Codec, CountLimit, Files, SQLite, TinyLFU

TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces"
Replay = Callable[[list[str], int], float]


def run(settings: Settings, result: GroupResult) -> None:
    if not TRACES.is_dir():
        result.notes.append(f"The real traces are not in {TRACES}: generated ones only.")
    traces = list(_traces(settings))
    for name, trace, sizes in traces:
        for size in sizes:
            _compare(name, trace, size, result)
    # On disk each miss writes a file or a row: a prefix of each trace; --quick, one.
    length = 2_000 if settings.quick else 50_000
    on_disk = ("loop 1.1x",) if settings.quick else ("web07", "zipf 0.9", "loop 1.1x")
    for name, trace, sizes in traces:
        if name in on_disk:
            _on_disk(name, trace[:length], sizes[0], result)
    result.notes.append(
        "Hit ratios in %; rows: PyStorage's best policy's miss ratio over the best "
        "anchor's. Real traces by headissue GmbH / Jens Wilke, CC BY 4.0 (cache2k)."
    )


def _traces(settings: Settings) -> Iterator[tuple[str, list[str], list[int]]]:
    quick = settings.quick
    if TRACES.is_dir():
        yield "web07", _load("web07", 10_000 if quick else None), [500, 2_000]
        yield "orm-busy", _load("orm-busy", 20_000 if quick else 1_000_000), [1_000, 10_000]
    length = 20_000 if quick else 200_000
    rng = random.Random(2026)
    for exponent in (0.7, 0.9, 1.2):
        yield f"zipf {exponent}", _zipf(rng, 100_000, exponent, length), [1_000]
    yield "loop 1.1x", [f"k{i % 1_100}" for i in range(length)], [1_000]
    hot = [f"hot{i}" for i in range(500)]
    scan = [rng.choice(hot) if rng.random() < 0.5 else f"scan{i}" for i in range(length)]
    yield "hot set + scan", scan, [1_000]
    # Bursts: 20 new keys, each asked for three times in a row, then never again.
    recency = [
        f"b{start + i}" for start in range(0, length // 6, 20) for _ in range(3) for i in range(20)
    ]
    yield "recency, then frequency", recency + _zipf(rng, 100_000, 1.0, len(recency)), [1_000]


def _load(name: str, limit: int | None) -> list[str]:
    with lzma.open(TRACES / f"{name}.trace.xz") as file:
        data = file.read() if limit is None else file.read(4 * limit)
    count = len(data) // 4
    return [str(key) for key in struct.unpack(f">{count}i", data[: 4 * count])]


def _zipf(rng: random.Random, keys: int, exponent: float, length: int) -> list[str]:
    weights = [1 / (rank + 1) ** exponent for rank in range(keys)]
    return [f"z{key}" for key in rng.choices(range(keys), weights=weights, k=length)]


def _compare(name: str, trace: list[str], size: int, result: GroupResult) -> None:
    mine = {
        "LRU": _mapping(lambda size: Storage(LRU(size)))(trace, size),
        "TinyLFU": _mapping(lambda size: Storage(TinyLFU(size)))(trace, size),
    }
    theirs = {
        "cachetools LRU": _mapping(cachetools.LRUCache)(trace, size),
        "cachetools LFU": _mapping(cachetools.LFUCache)(trace, size),
        "cachebox LRU": _mapping(cachebox.LRUCache)(trace, size),
        "cachebox LFU": _mapping(cachebox.LFUCache)(trace, size),
        "theine (W-TinyLFU)": _theine(trace, size),
    }
    best_mine = max(mine, key=mine.__getitem__)
    best_theirs = max(theirs, key=theirs.__getitem__)
    optimal = _optimal(trace, size)
    miss_mine, miss_theirs = 100 - mine[best_mine], 100 - theirs[best_theirs]
    every = ", ".join(f"{policy} {hits:.1f}" for policy, hits in (mine | theirs).items())
    result.data.setdefault("hit_ratios", {})[f"{name} @ {size:,}"] = {
        **mine,
        **theirs,
        "optimal": optimal,
    }
    result.rows.append(
        Row(
            f"{name} @ {size:,}: miss ratio, {best_mine}",
            miss_mine,
            best_theirs,
            miss_theirs,
            miss_mine / miss_theirs if miss_theirs else 1.0,
            Target((miss_theirs + 1) / miss_theirs if miss_theirs else 1.0, ">= best - 1 point"),
            f"hit %: {every}; optimal {optimal:.1f}",
            "%",
        )
    )


DISKS: dict[str, Callable[[Path], object]] = {
    "Files": lambda folder: Files(folder),
    "SQLite": lambda folder: SQLite(folder / "cache.db"),
}


def _on_disk(name: str, trace: list[str], size: int, result: GroupResult) -> None:
    """The policy behind a limit over each disk backend, against the memory layer, and
    the hit ratio a restart halfway costs."""
    memory = _replay(Storage(TinyLFU(size)), trace)
    half = len(trace) // 2
    for disk, make in DISKS.items():

        def stack(place: Path, make: Callable[[Path], object] = make) -> Storage:
            below = make(place)
            return Storage(CountLimit(size, eviction="tinylfu"), Codec("pickle"), below)  # type: ignore[arg-type]

        with tempfile.TemporaryDirectory() as folder:
            hits = _replay(stack(Path(folder)), trace)
        with tempfile.TemporaryDirectory() as folder:
            kept = stack(Path(folder))
            _replay(kept, trace[:half])
            unbroken = _replay(kept, trace[half:])
        with tempfile.TemporaryDirectory() as folder:
            first = stack(Path(folder))
            _replay(first, trace[:half])
            first.close()
            restarted = _replay(stack(Path(folder)), trace[half:])
        result.data.setdefault("on_disk", {})[f"{name} @ {size:,}, {disk}"] = {
            "TinyLFU in memory": memory,
            "tinylfu limit": hits,
            "second half": unbroken,
            "second half after a restart": restarted,
        }
        result.rows.append(
            Row(
                f"{name} @ {size:,} ({len(trace):,} reads): miss ratio, tinylfu limit over {disk}",
                100 - hits,
                "TinyLFU in memory",
                100 - memory,
                (100 - hits) / (100 - memory) if memory < 100 else 1.0,
                Target((100 - memory + 2) / (100 - memory), "<= memory + 2 points"),
                f"hit %: {hits:.1f} vs {memory:.1f} in memory; second half {unbroken:.1f}, "
                f"after a restart halfway {restarted:.1f} "
                f"(a restart costs {unbroken - restarted:.1f} points)",
                "%",
            )
        )


def _replay(cache: object, trace: list[str]) -> float:
    """The hit ratio, in %, of ``trace`` through ``cache``: a read, and a write on a miss."""
    get, hits = cache.get, 0  # type: ignore[attr-defined]
    for key in trace:
        if get(key) is None:
            cache[key] = 1  # type: ignore[index]
        else:
            hits += 1
    return 100 * hits / len(trace)


def _mapping(kind: Callable[[int], object]) -> Replay:
    """A replay through a mapping of the given size (a Storage, cachetools, cachebox)."""

    def replay(trace: list[str], size: int) -> float:
        return _replay(kind(size), trace)

    return replay


def _theine(trace: list[str], size: int) -> float:
    cache = theine.Cache(size)
    hits = 0
    for key in trace:
        if cache.get(key)[1]:
            hits += 1
        else:
            cache.set(key, 1)
    return 100 * hits / len(trace)


def _optimal(trace: list[str], size: int) -> float:
    """Belady's bound: on a miss with a full cache, evict the key used furthest ahead."""
    never = len(trace)
    following = [never] * len(trace)
    last: dict[str, int] = {}
    for index in range(len(trace) - 1, -1, -1):
        following[index] = last.get(trace[index], never)
        last[trace[index]] = index
    cached: dict[str, int] = {}  # key -> the index of its next use
    heap: list[tuple[int, str]] = []  # (-next use, key), with stale entries skipped
    hits = 0
    for index, key in enumerate(trace):
        if key in cached:
            hits += 1
        elif len(cached) >= size:
            while True:
                negative, victim = heapq.heappop(heap)
                if cached.get(victim) == -negative:
                    del cached[victim]
                    break
        cached[key] = following[index]
        heapq.heappush(heap, (-following[index], key))
    return 100 * hits / len(trace)

"""Group 11: AsyncStorage (issue 12), and the sync hot path before and after it.

Issue 12's figures: async Redis get and set against raw ``redis.asyncio`` (target at most
1.10x); ``await get_many(100)`` against 100 awaited gets, on async Redis and SQLite
stacks; 1,000 concurrent gets (``asyncio.gather``) through the async Files and SQLite
stacks against the same 1,000 gets by a sync loop on the sync stack (reported); and the
sync get and set of Memory, LRU, Files and SQLite against the tree before limits and
async came in (target at most 1.03x).

Async subjects run on one event loop of the group's: a round is one
``loop.run_until_complete`` of a coroutine that awaits its operations one after the
other (or gathers them), so the loop's start and stop are paid once a round, alike on
both sides. Before/after: :mod:`benchmarks.baseline` (both trees in this process, their
rounds interleaved); the current tree is also loaded a second time, as a control: its
ratio to the first copy is the noise of the method, given in each row's note.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

from benchmarks import baseline
from benchmarks.harness import Samples, Subject, Thunk, compare, fixed, paired_ratio
from benchmarks.model import GroupResult, Row, Settings, Target, row
from benchmarks.opening import fastest_ratio
from benchmarks.values import Versions, record_of_size
from pystorage.aio.storage import AsyncStorage
from pystorage.layers import Codec, Redis
from pystorage.storage import Storage
from pystorage.storage_provider import StorageProvider
from pystorage.testing import RedisServer

VS_REDIS_ASYNCIO = Target(1.10)
NOT_SLOWER = Target(1.03)
#: main before byte limits and AsyncStorage came in (the sync figures "before").
BEFORE = "24b1047"
VALUE = b"v" * 100
RECORD = record_of_size(100)
BATCH = 100
CONCURRENT = 1_000

Loop = asyncio.AbstractEventLoop


def _on(loop: Loop, work: Callable[[], Coroutine[Any, Any, object]]) -> Thunk:
    """A thunk that runs a fresh ``work()`` coroutine to its end on ``loop``."""
    return lambda: loop.run_until_complete(work())


def _awaiting(
    call: Callable[..., Awaitable[object]], keys: list[str], *args: Any
) -> Callable[[], Coroutine[Any, Any, None]]:
    """``call(key, *args)`` awaited for each key in turn."""

    async def work() -> None:
        for key in keys:
            await call(key, *args)

    return work


def run(settings: Settings, result: GroupResult) -> None:
    loop = asyncio.new_event_loop()
    try:
        with tempfile.TemporaryDirectory(
            dir=settings.scratch, prefix="pystorage-bench-aio-"
        ) as root:
            _redis(loop, settings, result)
            result.rows += _local(loop, Path(root), settings, result)
    finally:
        loop.close()
    result.rows += _before_after(settings, result)


# -- Redis -----------------------------------------------------------------------------


def _redis(loop: Loop, settings: Settings, result: GroupResult) -> None:
    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        result.notes.append(f"Redis rows skipped: cannot start redis-server: {exc}")
        return
    ops, batches, rounds = settings.pick(300, 20), settings.pick(10, 2), settings.pick(31, 3)
    try:
        result.rows += _redis_rows(loop, server.url, ops, batches, rounds)
    finally:
        server.stop()
    result.notes.append(
        f"Redis: a redis-server of the group's own, 100-byte values, {ops} awaited "
        f"operations a round (or {batches} batches of {BATCH}), {rounds} rounds. Async stack: "
        "AsyncStorage(Codec('raw'), Redis(url=...)), whose backend is AsyncRedis (native "
        "redis.asyncio, generated from Redis); anchor: one redis.asyncio client on the same "
        "loop. The sync get: Storage(Codec('raw'), Redis(client)) on the same server."
    )


def _redis_rows(loop: Loop, url: str, ops: int, batches: int, rounds: int) -> list[Row]:
    keys = [f"key:{i}" for i in range(1_000)]
    native = redis.asyncio.Redis.from_url(url)
    # Each stack its own client; the same names as the raw client's: no prefix, on a
    # server of the benchmark's own.
    mine = AsyncStorage(Codec("raw"), Redis(url=url, prefix="", whole_database=True))
    sync = Storage(Codec("raw"), Redis(url=url, prefix="", whole_database=True))
    sync.set_many(dict.fromkeys(keys, VALUE))
    picks = (keys * (ops // len(keys) + 1))[:ops]
    batch = keys[:BATCH]

    async def many() -> None:
        for _ in range(batches):
            await mine.get_many(batch)

    async def singles() -> None:
        for _ in range(batches):
            for key in batch:
                await mine.get(key)

    try:
        timed = compare(
            {
                "get": fixed(_on(loop, _awaiting(mine.get, picks)), ops),
                "GET": fixed(_on(loop, _awaiting(native.get, picks)), ops),
                "set": fixed(_on(loop, _awaiting(mine.set, picks, VALUE)), ops),
                "SET": fixed(_on(loop, _awaiting(native.set, picks, VALUE)), ops),
                "sync get": fixed(lambda: deque(map(sync.__getitem__, picks), 0), ops),
                "get_many": fixed(_on(loop, many), batches),
                "gets": fixed(_on(loop, singles), batches),
            },
            rounds,
        )
    finally:
        loop.run_until_complete(mine.aclose())
        loop.run_until_complete(native.aclose())
        sync.close()
    return [
        row(
            "async get (Redis)",
            timed["get"],
            "redis.asyncio GET",
            timed["GET"],
            VS_REDIS_ASYNCIO,
        ),
        row("async set (Redis)", timed["set"], "redis.asyncio SET", timed["SET"], VS_REDIS_ASYNCIO),
        row(
            "async get (Redis)",
            timed["get"],
            "sync get, same stack (PyStorage)",
            timed["sync get"],
            note="an event loop's turn per await, and redis.asyncio's own cost",
        ),
        _batch_row("Redis", timed["get_many"], timed["gets"]),
    ]


def _batch_row(where: str, batches: Samples, singles: Samples) -> Row:
    """``get_many(BATCH)`` against ``BATCH`` awaited gets, each subject a batch per op."""
    ratio = paired_ratio(batches, singles)
    return row(
        f"await get_many({BATCH}) ({where})",
        batches,
        f"{BATCH} awaited gets",
        singles,
        note=f"{1 / ratio:.1f}x faster",
    )


# -- Files and SQLite ------------------------------------------------------------------


def _local(loop: Loop, root: Path, settings: Settings, result: GroupResult) -> list[Row]:
    """Batches on async SQLite; 1,000 concurrent gets on async Files and SQLite."""
    provider = StorageProvider()
    keys = [f"key-{i}" for i in range(CONCURRENT)]
    rounds, batches = settings.pick(21, 2), settings.pick(10, 2)
    paths = {"Files": root / "files", "SQLite": root / "cache.db"}
    presets = {"Files": StorageProvider.STORAGE_PICKLE, "SQLite": StorageProvider.STORAGE_SQLITE}
    syncs = {name: provider.create(presets[name], path=path) for name, path in paths.items()}
    for storage in syncs.values():
        storage.set_many(dict.fromkeys(keys, RECORD))
    asyncs = {name: provider.create_async(presets[name], path=path) for name, path in paths.items()}
    batch = keys[:BATCH]
    database = asyncs["SQLite"]

    def gathered(storage: AsyncStorage) -> Subject:
        async def work() -> None:
            await asyncio.gather(*(storage.get(key) for key in keys))

        return fixed(_on(loop, work), 1)

    def looped(storage: Storage) -> Subject:
        return fixed(lambda: deque(map(storage.__getitem__, keys), 0), 1)

    async def many() -> None:
        for _ in range(batches):
            await database.get_many(batch)

    async def singles() -> None:
        for _ in range(batches):
            for key in batch:
                await database.get(key)

    subjects = {
        "get_many": fixed(_on(loop, many), batches),
        "gets": fixed(_on(loop, singles), batches),
    }
    for name in paths:
        subjects[f"async {name}"] = gathered(asyncs[name])
        subjects[f"sync {name}"] = looped(syncs[name])
    try:
        timed = compare(subjects, rounds)
    finally:
        for storage in asyncs.values():
            loop.run_until_complete(storage.aclose())
        for sync in syncs.values():
            sync.close()
    result.notes.append(
        f"Files and SQLite: {CONCURRENT:,} keys holding dicts of about 100 B, pickled; the "
        "async stacks are StorageProvider().create_async(preset, path=...) on the same "
        "folder or database as the sync ones. A concurrent round gathers one get of each "
        f"key; the sync round gets each key in a loop; {rounds} rounds, and {batches} "
        f"batches of {BATCH} keys a round for the SQLite batch row."
    )
    rows = [_batch_row("SQLite: STORAGE_SQLITE", timed["get_many"], timed["gets"])]
    for name, preset in (("Files", "STORAGE_PICKLE"), ("SQLite", "STORAGE_SQLITE")):
        mine, theirs = timed[f"async {name}"], timed[f"sync {name}"]
        rows.append(
            row(
                f"{CONCURRENT:,} concurrent gets, asyncio.gather ({name}: {preset})",
                mine,
                f"the same {CONCURRENT:,} gets, a sync loop on the sync stack",
                theirs,
                note=f"{mine.median / CONCURRENT / 1e3:.1f} µs against "
                f"{theirs.median / CONCURRENT / 1e3:.1f} µs a get",
            )
        )
    return rows


# -- the sync hot path, before and after -----------------------------------------------

#: name: (preset, its options given a folder, gets or sets a round: full, quick). Rounds
#: are short (about 1 ms), so that most of them run without another process taking the
#: CPU: the median of many such rounds is what a 3 % target can be read from here.
SYNC_STACKS: dict[str, tuple[str, Callable[[Path], dict[str, Any]], tuple[int, int]]] = {
    "Memory": (StorageProvider.STORAGE_MEMORY, lambda _: {}, (5_000, 500)),
    "LRU": (StorageProvider.STORAGE_LRU, lambda _: {"maxsize": 1_000}, (5_000, 500)),
    "Files": (StorageProvider.STORAGE_PICKLE, lambda path: {"path": path}, (50, 10)),
    "SQLite": (StorageProvider.STORAGE_SQLITE, lambda path: {"path": path / "db"}, (250, 25)),
}
KEYS = [f"key-{i}" for i in range(1_000)]
#: A folder in memory, where the system has one. A file set on this machine's disk costs
#: 0.3-1 ms with a round-to-round spread above its median (two copies of the same tree
#: differed by 0.5-1.7x there): no 3 % can be read through that. What the trees differ in
#: is their code and the system calls it makes, and tmpfs still runs every system call.
IN_MEMORY = Path("/dev/shm")


def _before_after(settings: Settings, result: GroupResult) -> list[Row]:
    where = str(IN_MEMORY) if IN_MEMORY.is_dir() else settings.scratch
    with tempfile.TemporaryDirectory(dir=where, prefix="pystorage-bench-before-") as root:
        try:
            old = baseline.load(baseline.extract(BEFORE, Path(root) / "before"))
        except RuntimeError as exc:
            result.notes.append(f"Before/after rows skipped: {exc}")
            return []
        copies = {"after": None, "before": old, "again": baseline.load(baseline.ROOT)}
        rounds = settings.pick(201, 5)
        rows = [
            each
            for name, stack in SYNC_STACKS.items()
            for each in _one_stack(name, stack, copies, Path(root), settings.pick, rounds)
        ]
    sizes = ", ".join(f"{n} {settings.pick(*o):,}" for n, (_, _, o) in SYNC_STACKS.items())
    result.notes.append(
        f"Before/after: the pystorage folder of commit {BEFORE} (git archive) and the current "
        "tree, each imported as its own copy of the package in this process "
        "(benchmarks/baseline.py), the same preset built from each, their rounds "
        f"interleaved: {rounds} rounds of {sizes} random gets or overwrites of 1,000 keys "
        "(with values the keys do not hold), values dicts of about 100 B (pickled by Files "
        "and SQLite), Files and SQLite in "
        f"{where or 'the temp folder'} (in memory: a disk's noise would drown 3 %). A third "
        "copy, the current tree imported once more, is timed beside them: its ratio to the "
        'first ("same tree twice" in the note) is what the method reads for two identical '
        'trees; "fastest" is the ratio of the fastest rounds.'
    )
    return rows


def _one_stack(
    name: str,
    stack: tuple[str, Callable[[Path], dict[str, Any]], tuple[int, int]],
    copies: dict[str, baseline.Modules | None],
    root: Path,
    pick: Callable[[int, int], int],
    rounds: int,
) -> list[Row]:
    preset, options, ops = stack
    count = pick(*ops)
    rng = random.Random(count)
    reads, writes = rng.choices(KEYS, k=count), rng.choices(KEYS, k=count)
    stores = {
        copy: _build(modules, preset, options(root / f"{name}-{copy}"))
        for copy, modules in copies.items()
    }
    rows = []
    try:
        for operation, picks in (("get", reads), ("set", writes)):
            timed = compare(
                {copy: _each(store, operation, picks) for copy, store in stores.items()}, rounds
            )
            twice = paired_ratio(timed["again"], timed["after"])
            rows.append(
                row(
                    f"sync {operation} ({name}: {preset_label(preset)})",
                    timed["after"],
                    f"the same, tree at {BEFORE} (before limits and async)",
                    timed["before"],
                    NOT_SLOWER,
                    note=f"same tree twice: {twice:.3f}; "
                    + fastest_ratio(timed["after"], timed["before"]),
                )
            )
    finally:
        for store in stores.values():
            store.close()
    return rows


def preset_label(preset: str) -> str:
    return f"STORAGE_{preset.upper()}"


def _build(modules: baseline.Modules | None, preset: str, options: dict[str, Any]) -> Any:
    """The preset built by the copy of PyStorage ``modules`` (None: the one in use) and
    filled, in that copy's context: whatever it imports or opens the first time is its
    own, and done untimed."""
    if modules is None:
        return _filled(StorageProvider(), preset, options)
    with baseline.active(modules):
        store = _filled(modules["pystorage.storage_provider"].StorageProvider(), preset, options)
        if type(store) is not modules["pystorage.storage"].Storage:
            raise RuntimeError("the preset was not built by the copy asked for")
    return store


def _filled(provider: Any, preset: str, options: dict[str, Any]) -> Any:
    store = provider.create(preset, **options)
    store.set_many(dict.fromkeys(KEYS, RECORD))
    store[KEYS[0]]
    return store


def _each(store: Any, operation: str, picks: list[str]) -> Subject:
    if operation == "get":
        return fixed(lambda: deque(map(store.__getitem__, picks), 0), len(picks))
    fresh = Versions(RECORD)  # values the keys do not hold: each set writes

    def prepare() -> Thunk:
        values = fresh(len(picks))
        return lambda: deque(map(store.__setitem__, picks, values), 0)

    return Subject(prepare, len(picks))

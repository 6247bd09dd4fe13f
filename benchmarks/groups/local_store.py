"""Group 7: STORAGE_SQLITE against diskcache, raw sqlite3 and the file presets.

Issue 11's targets: a get at most 0.8x diskcache.Cache's, a set at most 0.5x, both at most
1.5x raw sqlite3 with the same pragmas (WAL, synchronous=NORMAL, one autocommit statement:
the floor for SQLite in Python). STORAGE_PICKLE (one file per key) is reported beside them.
"""

from __future__ import annotations

import pickle
import random
import sqlite3
import tempfile
from collections import deque
from collections.abc import Callable
from itertools import repeat
from pathlib import Path
from typing import Any

import diskcache  # type: ignore[import-untyped]

from benchmarks.harness import Samples, Subject, compare, fixed
from benchmarks.model import GroupResult, Row, Settings, Target, row
from benchmarks.values import record_of_size
from pystorage.storage_provider import StorageProvider

VS_DISKCACHE_GET = Target(0.8)
VS_DISKCACHE_SET = Target(0.5)
VS_RAW = Target(1.5)


class RawSQLite:
    """One table, the key as bytes, pickle, an upsert (which rewrites a row in place): the
    least an SQLite cache in Python does."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE t (key BLOB PRIMARY KEY, value BLOB NOT NULL)")

    def get(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM t WHERE key = ?", (key.encode(),)).fetchone()
        return pickle.loads(row[0])

    def set(self, key: str, value: Any) -> None:
        data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        self.db.execute(
            "INSERT INTO t VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key.encode(), data),
        )


def run(settings: Settings, result: GroupResult) -> None:
    count = settings.pick(1_000, 10)
    ops, rounds = settings.pick(300, 10), settings.pick(21, 2)
    with tempfile.TemporaryDirectory(dir=settings.scratch, prefix="pystorage-bench-db-") as root:
        for name, size in {"100 B": 100, "10 KB": 10_000}.items():
            folder = Path(root) / name.replace(" ", "")
            folder.mkdir()
            result.rows += _one(name, record_of_size(size), folder, count, ops, rounds)
    result.notes.append(
        f"{count:,} keys; {ops} random keys per round, {rounds} rounds; values are dicts "
        "whose JSON is about 100 B or 10 KB, pickled by every subject. PyStorage: "
        "STORAGE_SQLITE (Codec('pickle'), SQLite(path)); diskcache.Cache with its defaults; "
        "raw sqlite3 with the same pragmas (WAL, synchronous=NORMAL)."
    )


def _one(label: str, value: Any, folder: Path, count: int, ops: int, rounds: int) -> list[Row]:
    provider = StorageProvider()
    mine = provider.create(StorageProvider.STORAGE_SQLITE, path=folder / "pystorage.db")
    files = provider.create(StorageProvider.STORAGE_PICKLE, path=folder / "files")
    cache = diskcache.Cache(str(folder / "diskcache"))
    raw = RawSQLite(folder / "raw.db")
    keys = [f"key-{i}" for i in range(count)]
    for key in keys:
        mine[key] = files[key] = cache[key] = value
        raw.set(key, value)
    rng = random.Random(count)
    reads, writes = rng.choices(keys, k=ops), rng.choices(keys, k=ops)

    def each(call: Callable[..., object], picks: list[str], *args: Any) -> Subject:
        extra = [repeat(arg) for arg in args]
        return fixed(lambda: deque(map(call, picks, *extra), 0), len(picks))

    try:
        got = compare(
            {
                "PyStorage": each(mine.__getitem__, reads),
                "diskcache": each(cache.__getitem__, reads),
                "raw": each(raw.get, reads),
                "files": each(files.__getitem__, reads),
            },
            rounds,
        )
        put = compare(
            {
                "PyStorage": each(mine.__setitem__, writes, value),
                "diskcache": each(cache.__setitem__, writes, value),
                "raw": each(raw.set, writes, value),
                "files": each(files.__setitem__, writes, value),
            },
            rounds,
        )
    finally:
        cache.close()
        mine.close()
        raw.db.close()
    return _rows(f"get {label}", got, VS_DISKCACHE_GET) + _rows(
        f"set {label}", put, VS_DISKCACHE_SET
    )


def _rows(operation: str, timed: dict[str, Samples], vs_diskcache: Target) -> list[Row]:
    mine = timed["PyStorage"]
    return [
        row(operation, mine, "diskcache.Cache (defaults)", timed["diskcache"], vs_diskcache),
        row(operation, mine, "raw sqlite3, same pragmas (floor)", timed["raw"], VS_RAW),
        row(operation, mine, "STORAGE_PICKLE (a file per key)", timed["files"]),
    ]

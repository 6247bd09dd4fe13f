"""Group 2: STORAGE_JSON and STORAGE_PICKLE against one file per key in plain Python.

The floor is the least a program can do for one file per key: the codec call, a
temporary file in the same folder written with ``os.open``/``os.write`` and renamed
over the key's file with ``os.replace`` (a set), or ``os.open``/``os.fstat``/
``os.read`` and the codec call (a get). diskcache (SQLite) is reported for reference.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import random
import shutil
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import diskcache  # type: ignore[import-untyped]

from benchmarks.harness import Samples, Subject, compare, fixed
from benchmarks.model import GroupResult, Row, Settings, Target, row
from benchmarks.values import record_of_size
from pystorage.storage_provider import StorageProvider

VS_FLOOR = Target(1.15)
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


@dataclass(frozen=True)
class Format:
    preset: str
    suffix: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _pickle_dumps(value: Any) -> bytes:
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


FORMATS = {
    "json": Format(StorageProvider.STORAGE_JSON, "storage.json", _json_dumps, json.loads),
    "pickle": Format(StorageProvider.STORAGE_PICKLE, "storage.pkl", _pickle_dumps, pickle.loads),
}


@dataclass(frozen=True)
class Pace:
    ops: int
    rounds: int


class Floor:
    """One file per key, in as few plain-Python steps as a careful program would take."""

    def __init__(self, root: Path, fmt: Format) -> None:
        self.root = str(root)
        self.fmt = fmt
        self._temp_ids = itertools.count()

    def get(self, key: str) -> Any:
        fd = os.open(f"{self.root}/{key}.{self.fmt.suffix}", os.O_RDONLY)
        try:
            data = os.read(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        return self.fmt.loads(data)

    def set(self, key: str, value: Any) -> None:
        data = self.fmt.dumps(value)
        temp = f"{self.root}/.tmp-{next(self._temp_ids)}"
        fd = os.open(temp, _WRITE, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(temp, f"{self.root}/{key}.{self.fmt.suffix}")


def run(settings: Settings, result: GroupResult) -> None:
    count = settings.pick(1_000, 10)
    # Sets pay for a file creation (slow on some disks): fewer of them per round.
    gets = Pace(settings.pick(300, 10), settings.pick(31, 2))
    sets = Pace(settings.pick(60, 5), settings.pick(21, 2))
    sizes = {"100 B": 100, "10 KB": 10_000}
    with tempfile.TemporaryDirectory(
        dir=settings.scratch, prefix="pystorage-bench-files-"
    ) as scratch:
        for name, fmt in FORMATS.items():
            for size_name, size in sizes.items():
                value = record_of_size(size)
                folder = Path(scratch) / f"{name}-{size}"
                result.rows += _one(fmt, f"{name} {size_name}", value, folder, count, gets, sets)
                shutil.rmtree(folder)
        create_us = _create_cost(Path(scratch)) / 1000
    result.notes.append(
        f"Folders under {Path(scratch).parent}, where creating an empty file took "
        f"{create_us:,.0f} µs (median of 200) in this run: a set pays that on top of the "
        "codec and PyStorage's own cost."
    )
    result.notes.append(
        f"{count:,} keys per folder; gets: {gets.ops} random keys per round, {gets.rounds} "
        f"rounds; sets: {sets.ops} per round, {sets.rounds} rounds; "
        "a get reads an existing key with storage[key], a set overwrites one. "
        "Values are dicts whose JSON is about 100 B or 10 KB. Same disk for all subjects."
    )


def _create_cost(folder: Path) -> float:
    """Median nanoseconds to create (and close) an empty file in ``folder``."""
    times = []
    for i in range(200):
        start = time.perf_counter_ns()
        os.close(os.open(folder / f"probe-{i}", _WRITE, 0o600))
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times)


def _one(
    fmt: Format, label: str, value: Any, folder: Path, count: int, gets: Pace, sets: Pace
) -> list[Row]:
    mine = StorageProvider().create(fmt.preset, path=folder / "pystorage")
    floor = Floor(folder / "floor", fmt)
    (folder / "floor").mkdir()
    cache = diskcache.Cache(str(folder / "diskcache"))
    keys = [f"key-{i}" for i in range(count)]
    for key in keys:
        mine[key] = value
        floor.set(key, value)
        cache[key] = value
    rng = random.Random(count)
    reads = rng.choices(keys, k=gets.ops)
    writes = rng.choices(keys, k=sets.ops)
    size = len(fmt.dumps(value))

    def each(call: Callable[..., object], picks: list[str], *args: Any) -> Subject:
        extra = [repeat(arg) for arg in args]
        return fixed(lambda: deque(map(call, picks, *extra), 0), len(picks))

    try:
        timed = compare(
            {
                "PyStorage": each(mine.__getitem__, reads),
                "floor": each(floor.get, reads),
                "diskcache": each(cache.__getitem__, reads),
            },
            gets.rounds,
        )
        rows = _rows(f"get {label}", timed, size)
        timed = compare(
            {
                "PyStorage": each(mine.__setitem__, writes, value),
                "floor": each(floor.set, writes, value),
                "diskcache": each(cache.__setitem__, writes, value),
            },
            sets.rounds,
        )
        rows += _rows(f"set {label}", timed, size)
    finally:
        cache.close()
        mine.close()
    return rows


def _rows(operation: str, timed: dict[str, Samples], size: int) -> list[Row]:
    mine = timed["PyStorage"]
    note = f"{size:,} B encoded"
    return [
        row(operation, mine, "plain-Python file per key (floor)", timed["floor"], VS_FLOOR, note),
        row(operation, mine, "diskcache.Cache (SQLite)", timed["diskcache"], note=note),
    ]

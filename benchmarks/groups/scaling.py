"""Group 3: does the cost per operation stay flat as a storage grows?

STORAGE_DISKLRU (limit = N, files) and STORAGE_VOLATILE (memory, long expiration) at
N = 1,000, 10,000 and 100,000 entries, all sizes timed in interleaved rounds. A round is
a planned mix: 50 % get of a present key, 30 % set of a present key, 20 % set of a new
key (which evicts the least recently used file at the DISKLRU limit; on VOLATILE the new
keys are deleted again between rounds, untimed, so N stays N). The plan follows a model
of the LRU order, so every get hits. Also: the time to open a DISKLRU folder.
"""

from __future__ import annotations

import functools
import itertools
import os
import pickle
import random
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from benchmarks.harness import Subject, Thunk, compare, fixed
from benchmarks.model import GroupResult, Row, Settings, Target, row
from pystorage.layers import Files
from pystorage.storage import Storage
from pystorage.storage_provider import StorageProvider

FLAT = Target(1.3)
VALUE = "v" * 100
SUFFIX = "storage.lru"
EXPIRATION = 30 * 24 * 3600.0
Plan = list[tuple[bool, str]]


class Population:
    """The keys present in a storage, in LRU order, with O(1) random choice."""

    def __init__(self, keys: list[str], limit: int | None) -> None:
        self.limit = limit
        self._keys = list(keys)
        self._index = {key: i for i, key in enumerate(self._keys)}
        self._order: OrderedDict[str, None] = OrderedDict.fromkeys(self._keys)

    def choose(self, rng: random.Random) -> str:
        key = self._keys[rng.randrange(len(self._keys))]
        self._order.move_to_end(key)
        return key

    def add(self, key: str) -> None:
        self._order[key] = None
        self._index[key] = len(self._keys)
        self._keys.append(key)
        if self.limit is not None and len(self._keys) > self.limit:
            self.remove(next(iter(self._order)))

    def remove(self, key: str) -> None:
        del self._order[key]
        index = self._index.pop(key)
        last = self._keys.pop()
        if last != key:
            self._keys[index] = last
            self._index[last] = index


def plan_round(population: Population, rng: random.Random, ops: int, new: Iterator[str]) -> Plan:
    """(is_get, key) for one round, updating the model as the storage will change."""
    plan: Plan = []
    for _ in range(ops):
        draw = rng.random()
        if draw < 0.8:
            plan.append((draw < 0.5, population.choose(rng)))
        else:
            key = next(new)
            population.add(key)
            plan.append((False, key))
    return plan


class Store(Protocol):
    def __getitem__(self, key: str) -> Any: ...
    def __setitem__(self, key: str, value: Any) -> None: ...
    def delete_many(self, keys: Iterable[str]) -> None: ...


class ExpiringDict:
    """The floor for VOLATILE: (deadline, value) in a dict, and a dict of deadlines, as
    the least an in-memory store that expires entries must touch per operation."""

    def __init__(self, keys: list[str], ttl: float) -> None:
        self.ttl = ttl
        deadline = time.time() + ttl
        self.data = dict.fromkeys(keys, (deadline, VALUE))
        self.deadlines = dict.fromkeys(keys, deadline)

    def __getitem__(self, key: str) -> Any:
        deadline, value = self.data[key]
        if deadline <= time.time():
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        deadline = time.time() + self.ttl
        self.data[key] = (deadline, value)
        self.deadlines[key] = deadline

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            del self.data[key]
            del self.deadlines[key]


def mixed(storage: Store, plan: Plan) -> Thunk:
    get, put = storage.__getitem__, storage.__setitem__

    def run() -> None:
        for is_get, key in plan:
            if is_get:
                get(key)
            else:
                put(key, VALUE)

    return run


def keys_for(count: int) -> list[str]:
    return [f"k{i:07d}" for i in range(count)]


def build_folder(folder: Path, count: int) -> None:
    """What STORAGE_DISKLRU would write, written directly: much faster than through it.

    Files are written in key order, so their times (then names) give the LRU order.
    """
    folder.mkdir(mode=0o700)
    Files(folder, SUFFIX)  # a folder of this release: it marks the storage format
    data = pickle.dumps(VALUE, pickle.HIGHEST_PROTOCOL)
    for key in keys_for(count):
        fd = os.open(folder / f"{key}.{SUFFIX}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def open_disklru(folder: Path, limit: int) -> Storage:
    storage: Storage = StorageProvider().create(
        StorageProvider.STORAGE_DISKLRU, limit=limit, path=folder
    )
    return storage


def scan_floor(folder: Path) -> list[tuple[int, str]]:
    """The least work an index from file times needs: scandir, one stat each, a sort."""
    with os.scandir(folder) as entries:
        return sorted(
            (entry.stat(follow_symlinks=False).st_mtime_ns, entry.name) for entry in entries
        )


def run(settings: Settings, result: GroupResult) -> None:
    sizes = settings.pick((1_000, 10_000, 100_000), (20, 50, 100))
    rounds = settings.pick(15, 2)
    with tempfile.TemporaryDirectory(
        dir=settings.scratch, prefix="pystorage-bench-scaling-"
    ) as scratch:
        folders = {size: Path(scratch) / f"disklru-{size}" for size in sizes}
        for size, folder in folders.items():
            build_folder(folder, size)
        result.rows += _open_times(folders, settings.pick(3, 1))
        disklru = {size: open_disklru(folder, size) for size, folder in folders.items()}
        try:
            result.rows += _scaling(
                "DISKLRU", _disklru_subjects(disklru, settings.pick(300, 30)), sizes, rounds
            )
        finally:
            for storage in disklru.values():
                storage.close()
    result.rows += _volatile_scaling(sizes, settings.pick(3_000, 100), rounds)
    result.notes.append(
        f"{rounds} rounds. VOLATILE's floor: the same plan on a plain-Python expiring dict "
        "(two dict writes per set, a deadline check per get); a plain dict at 100,000 "
        "random keys is itself several times slower per access than at 1,000 (CPU caches). "
        "Open: STORAGE_DISKLRU(limit=N) on a folder of N files built with "
        "plain Python, against scandir + one stat per file + sort (the least an index "
        "from file times needs)."
    )


def _open_times(folders: dict[int, Path], rounds: int) -> list[Row]:
    subjects: dict[str, Subject] = {}
    for size, folder in folders.items():
        subjects[f"open {size}"] = fixed(_opener(folder, size))
        subjects[f"scan {size}"] = fixed(functools.partial(scan_floor, folder))
    timed = compare(subjects, rounds, warmup=1)
    return [
        row(
            f"open DISKLRU folder of {size:,}",
            timed[f"open {size}"],
            "scandir + stat + sort (plain Python)",
            timed[f"scan {size}"],
            note=f"{timed[f'open {size}'].median / size:,.0f} ns per entry",
        )
        for size in folders
    ]


def _opener(folder: Path, size: int) -> Thunk:
    def run() -> None:
        open_disklru(folder, size).close()

    return run


def _disklru_subjects(storages: dict[int, Storage], ops: int) -> dict[int, Subject]:
    subjects = {}
    for size, storage in storages.items():
        population = Population(keys_for(size), limit=size)
        rng = random.Random(1)
        new = (f"n{i:07d}" for i in itertools.count())

        def prepare(
            storage: Storage = storage,
            population: Population = population,
            rng: random.Random = rng,
            new: Iterator[str] = new,
        ) -> Thunk:
            return mixed(storage, plan_round(population, rng, ops, new))

        subjects[size] = Subject(prepare, ops)
    return subjects


def _volatile(size: int) -> Storage:
    storage: Storage = StorageProvider().create(
        StorageProvider.STORAGE_VOLATILE, expiration=EXPIRATION
    )
    storage.set_many(dict.fromkeys(keys_for(size), VALUE))
    return storage


def _volatile_scaling(sizes: tuple[int, ...], ops: int, rounds: int) -> list[Row]:
    stores: dict[str, Store] = {}
    for size in sizes:
        stores[f"pystorage {size}"] = _volatile(size)
        stores[f"floor {size}"] = ExpiringDict(keys_for(size), EXPIRATION)
    timed = compare(_volatile_subjects(stores, ops), rounds)
    small, large = sizes[0], sizes[-1]
    return [
        *(
            row(
                f"VOLATILE mixed op at {size:,} entries",
                timed[f"pystorage {size}"],
                f"the same at {small:,} entries",
                timed[f"pystorage {small}"],
                FLAT if size == large else None,
            )
            for size in sizes[1:]
        ),
        row(
            f"floor: expiring dict at {large:,} entries",
            timed[f"floor {large}"],
            f"the same at {small:,} entries",
            timed[f"floor {small}"],
            note=f"floor at {small:,}: {timed[f'floor {small}'].median:,.0f} ns/op",
        ),
    ]


def _volatile_subjects(stores: dict[str, Store], ops: int) -> dict[str, Subject]:
    subjects = {}
    for name, storage in stores.items():
        size = int(name.split()[-1])
        population = Population(keys_for(size), limit=None)
        rng = random.Random(1)
        new = (f"n{i:07d}" for i in itertools.count())
        added: list[str] = []

        def prepare(
            storage: Store = storage,
            population: Population = population,
            rng: random.Random = rng,
            new: Iterator[str] = new,
            added: list[str] = added,
        ) -> Thunk:
            # Untimed: last round's new keys go, so the storage holds N entries again.
            storage.delete_many(added)
            for key in added:
                population.remove(key)
            added.clear()
            plan = plan_round(population, rng, ops, new)
            added.extend(dict.fromkeys(key for _, key in plan if key[0] == "n"))
            return mixed(storage, plan)

        subjects[name] = Subject(prepare, ops)
    return subjects


def _scaling(
    name: str, subjects: dict[int, Subject], sizes: tuple[int, ...], rounds: int
) -> list[Row]:
    timed = compare({str(size): subject for size, subject in subjects.items()}, rounds)
    smallest = timed[str(sizes[0])]
    rows = []
    for size in sizes[1:]:
        rows.append(
            row(
                f"{name} mixed op at {size:,} entries",
                timed[str(size)],
                f"the same at {sizes[0]:,} entries",
                smallest,
                FLAT if size == sizes[-1] else None,
            )
        )
    return rows

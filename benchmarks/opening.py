"""The cost of opening a local cache in a new process, as a program starting up pays it.

Each open runs in a fresh child (``python -c``), which first imports everything it needs
(PyStorage, diskcache, this module: untimed), then times with ``perf_counter_ns`` from
just before the storage is built to just after its first get of an existing key returns,
and prints the nanoseconds. Nothing is subtracted: the time includes the constructor
(an index built from a listing, tables checked, ...) and one read. Children run one at a
time, the stacks and sizes interleaved round by round (their order rotated), as in
:func:`benchmarks.harness.compare`.

The stacks are functions of (path, entries): the child finds one by name in ``STACKS``.
Their bounds are the ones their builders filled them to (:data:`VALUE` ``entries`` times),
so an open never evicts.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import diskcache  # type: ignore[import-untyped]

from benchmarks.harness import Samples
from benchmarks.values import record_of_size
from pystorage.layers import Codec, Expiry, Files, SizeLimit, SQLite
from pystorage.storage import Storage
from pystorage.storage_provider import StorageProvider

ROOT = Path(__file__).resolve().parent.parent
#: The value of every entry: a dict whose JSON is about 100 bytes.
VALUE = record_of_size(100)
#: Its size as every stack here stores it (pickle, protocol 5).
VALUE_BYTES = len(pickle.dumps(VALUE, pickle.HIGHEST_PROTOCOL))
#: The TTL every entry gets: long enough never to expire during a run.
EXPIRATION = 30 * 24 * 3600.0
SUFFIX = "storage.pkl"  # STORAGE_PICKLE's: every Files stack below opens the same folder
CHILD = "import sys; from benchmarks.opening import child; child(sys.argv[1:])"

Getter = Callable[[str], Any]


def key(index: int) -> str:
    return f"k{index:07d}"


def open_sqlite(path: Path, entries: int) -> Storage:
    """STORAGE_SQLITE with every bound on: an entry count, bytes, and a TTL per write."""
    storage: Storage = StorageProvider().create(
        StorageProvider.STORAGE_SQLITE,
        path=path,
        limit=entries,
        max_bytes=entries * VALUE_BYTES,
        expiration=EXPIRATION,
    )
    return storage


def by_frequency(path: Path, entries: int, size: int, ttl: float) -> Storage:
    """STORAGE_SQLITE's stack (an entry count, bytes, a TTL per write) with both bounds
    kept by SQLite as ``eviction="tinylfu"``, handed down as its limits do."""
    db = SQLite(path)
    for measure, bound in (("entries", entries), ("bytes", size)):
        db.take_bound(measure, bound, "tinylfu")  # type: ignore[arg-type]
    return Storage(Expiry(ttl), Codec("pickle"), db)


def open_sqlite_by_frequency(path: Path, entries: int) -> Storage:
    """``open_sqlite``'s bounds, evicting by ``eviction="tinylfu"``."""
    return by_frequency(path, entries, entries * VALUE_BYTES, EXPIRATION)


def open_diskcache(path: Path, entries: int) -> Any:
    """diskcache.Cache bounded in bytes (its bound counts the database file too: room
    is left for it, so an open never culls)."""
    return diskcache.Cache(str(path), size_limit=max(entries * VALUE_BYTES * 4, 1 << 20))


def _pickle(path: Path) -> Storage:
    storage: Storage = StorageProvider().create(StorageProvider.STORAGE_PICKLE, path=path)
    return storage


def _disklru(path: Path, entries: int) -> Storage:
    storage: Storage = StorageProvider().create(
        StorageProvider.STORAGE_DISKLRU, limit=entries, path=path, suffix=SUFFIX
    )
    return storage


def _volatile(path: Path) -> Storage:
    storage: Storage = StorageProvider().create(
        StorageProvider.STORAGE_VOLATILE, storage=_pickle(path), expiration=EXPIRATION
    )
    return storage


def _files_size_limit(path: Path, entries: int) -> Storage:
    # Each file holds a deadline header beside the value; SizeLimit weighs the value.
    return Storage(Codec("pickle"), SizeLimit(entries * VALUE_BYTES), Files(path, SUFFIX))


class Stack(NamedTuple):
    label: str
    #: "files", "sqlite" or "diskcache": what its builder makes at the path.
    kind: str
    open: Callable[[Path, int], Any]


STACKS: dict[str, Stack] = {
    "pickle": Stack("STORAGE_PICKLE", "files", lambda path, _: _pickle(path)),
    "disklru": Stack("STORAGE_DISKLRU", "files", _disklru),
    "volatile": Stack("VOLATILE over PICKLE", "files", lambda path, _: _volatile(path)),
    "files-size": Stack("Files + SizeLimit", "files", _files_size_limit),
    "sqlite": Stack("STORAGE_SQLITE + limits", "sqlite", open_sqlite),
    "diskcache": Stack("diskcache.Cache", "diskcache", open_diskcache),
}


def child(argv: list[str]) -> None:
    """In the child: open stack ``argv[0]`` at ``argv[1]`` (``argv[2]`` entries), read
    key ``argv[3]``, print the nanoseconds both took."""
    name, path, entries, wanted = argv
    opener = STACKS[name].open
    start = time.perf_counter_ns()
    storage = opener(Path(path), int(entries))
    storage[wanted]
    elapsed = time.perf_counter_ns() - start
    print(elapsed)
    storage.close()


class Open(NamedTuple):
    stack: str  # a name in STACKS
    path: Path
    entries: int


def fastest_ratio(mine: Samples, theirs: Samples) -> str:
    """The ratio of the fastest opens: a second view of noisy single events (a sample
    is only ever slowed by other processes, never sped up)."""
    return f"fastest: {min(mine.per_op_ns) / min(theirs.per_op_ns):.2f}"


def time_opens(opens: Mapping[str, Open], rounds: int) -> dict[str, Samples]:
    """Nanoseconds of each open, one fresh child per sample, ``rounds`` samples each."""
    names = list(opens)
    samples: dict[str, list[float]] = {name: [] for name in names}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            stack, path, entries = opens[name]
            done = subprocess.run(
                [sys.executable, "-c", CHILD, stack, str(path), str(entries), key(entries // 2)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            samples[name].append(float(done.stdout.split()[-1]))
    return {name: Samples(tuple(values)) for name, values in samples.items()}


# -- building the caches, fast -------------------------------------------------------------


def build_sqlite(
    path: Path,
    entries: int,
    batch: int = 10_000,
    opener: Callable[[Path, int], Storage] = open_sqlite,
) -> None:
    """Fill ``opener(path, entries)`` to its bounds, through its own ``set_many``."""
    storage = opener(path, entries)
    try:
        for start in range(0, entries, batch):
            storage.set_many({key(i): VALUE for i in range(start, min(start + batch, entries))})
    finally:
        storage.close()


def build_diskcache(path: Path, entries: int) -> None:
    cache = open_diskcache(path, entries)
    try:
        with cache.transact():
            for i in range(entries):
                cache.set(key(i), VALUE, expire=EXPIRATION)
    finally:
        cache.close()


def build_folder(path: Path, entries: int) -> None:
    """A folder as STORAGE_VOLATILE over STORAGE_PICKLE writes it (a deadline header, the
    owner-execute bit that marks it), written directly: one file through the stack, then
    its bytes copied under every other key's name (a set through the stack writes a
    temporary file and renames it: about 1 ms each here)."""
    _volatile(path)[key(0)] = VALUE
    first = path / f"{key(0)}.{SUFFIX}"
    data, mode = first.read_bytes(), first.stat().st_mode & 0o777
    for i in range(1, entries):
        fd = os.open(path / f"{key(i)}.{SUFFIX}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


BUILDERS: dict[str, Callable[[Path, int], None]] = {
    "files": build_folder,
    "sqlite": build_sqlite,
    "diskcache": build_diskcache,
}

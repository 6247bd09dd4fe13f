"""SQLite keeps an ``eviction="tinylfu"`` bound itself, in SQL (pystorage/layers/
sqlite_eviction.py, ``ByFrequency``): the bound, the values and the books hold under any
sequence of operations; it keeps what is asked for often where LRU cannot; its counters
age; what it learned is in the file (a restart keeps it, processes share it)."""

from __future__ import annotations

import random
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pystorage import Storage
from pystorage.errors import BackendError, ValueTooLargeError
from pystorage.layers import Codec, SQLite
from pystorage.layers.sqlite_eviction import MOST
from tests.helpers import FakeClock, hit_ratio, sample_while_children_write

KEYS = st.sampled_from([f"k{i}" for i in range(12)])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, st.integers()),
        st.tuples(st.just("set_ttl"), KEYS, st.integers()),
        st.tuples(st.just("big"), KEYS),
        st.tuples(st.just("get"), KEYS),
        st.tuples(st.just("delete"), KEYS),
        st.tuples(st.just("set_many"), st.lists(KEYS, max_size=5), st.integers()),
        st.tuples(st.just("add"), KEYS, st.integers()),
        st.tuples(st.just("incr"), KEYS),
        st.tuples(st.just("tick")),
        st.tuples(st.just("clear")),
    ),
    max_size=120,
)


def bounded(path: Path, entries: int | None, size: int | None = None, **options: object) -> SQLite:
    """An ``SQLite`` keeping an ``eviction="tinylfu"`` bound, as a ``CountLimit`` /
    ``SizeLimit`` above it hands it down."""
    db = SQLite(path, **options)  # type: ignore[arg-type]
    if entries is not None:
        assert db.take_bound("entries", entries, "tinylfu")
    if size is not None:
        assert db.take_bound("bytes", size, "tinylfu")
    return db


def books(path: Path) -> dict[str, object]:
    """What the books say beside what the entries are, as another connection sees."""
    with closing(sqlite3.connect(path)) as db:
        count, size = db.execute(
            "SELECT count(*), ifnull(sum(length(value)), 0) FROM entries"
        ).fetchone()
        return {
            "count": count,
            "bytes": size,
            "tallies": db.execute("SELECT count, bytes FROM tallies").fetchone(),
            "rows": sorted(row for (row,) in db.execute("SELECT rowid FROM entries")),
            "frequencies": sorted(row for (row,) in db.execute("SELECT id FROM frequencies")),
        }


@settings(max_examples=60, deadline=None)
@given(
    maxsize=st.integers(1, 8),
    max_bytes=st.sampled_from([None, 40, 200]),
    operations=OPERATIONS,
)
def test_any_sequence_keeps_the_bound_the_last_values_and_the_books(
    maxsize: int, max_bytes: int | None, operations: list[tuple[object, ...]]
) -> None:
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.db"
        storage = Storage(Codec("pickle"), bounded(path, maxsize, max_bytes, clock=clock))
        written: dict[str, object] = {}  # the last value written to each key
        for operation in operations:
            name, *args = operation
            if name in ("set", "set_ttl", "big"):
                key = str(args[0])
                value = "x" * 25 if name == "big" else args[-1]
                try:
                    storage.set(key, value, ttl=1.5 if name == "set_ttl" else None)
                except ValueTooLargeError:
                    continue  # refused whole: the key keeps what it held
                written[key] = value
            elif name == "get":
                found = storage.get(str(args[0]), "<missing>")
                assert found == "<missing>" or found == written[str(args[0])]
            elif name == "delete":
                storage.pop(str(args[0]), None)
            elif name == "set_many":
                keys, value = args
                many = dict.fromkeys(keys, value)  # type: ignore[call-overload]
                storage.set_many(many)
                written.update(many)
            elif name == "add":
                key, value = str(args[0]), args[1]
                if storage.add(key, value):
                    written[key] = value
            elif name == "incr":
                key = str(args[0])
                if isinstance(storage.get(key, 0), int):
                    written[key] = storage.incr(key)
            elif name == "tick":
                clock.now += 1.0
            else:
                storage.clear()
            kept = books(path)
            assert kept["count"] <= maxsize
            assert max_bytes is None or kept["bytes"] <= max_bytes
            assert kept["tallies"] == (kept["count"], kept["bytes"])
            assert kept["rows"] == kept["frequencies"], "one counter per entry"
            for key, value in storage.items():
                assert value == written[key]
        storage.close()


def _sqlite(path: Path, bound: int, eviction: str) -> Storage:
    db = SQLite(path, synchronous="OFF")
    assert db.take_bound("entries", bound, eviction)
    return Storage(Codec("pickle"), db)


def test_a_popular_set_survives_a_stream_of_one_off_keys(tmp_path: Path) -> None:
    rng = random.Random(7)
    popular = [f"hot{i}" for i in range(50)]
    trace = [rng.choice(popular) if rng.random() < 0.5 else f"once{i}" for i in range(6_000)]
    used = hit_ratio(_sqlite(tmp_path / "used.db", 100, "used"), trace)
    tinylfu = hit_ratio(_sqlite(tmp_path / "tinylfu.db", 100, "tinylfu"), trace)
    assert tinylfu > 0.4  # nearly every access of the popular half, once learned
    assert tinylfu > used + 0.1


def test_a_loop_a_little_larger_than_the_cache_is_mostly_hits(tmp_path: Path) -> None:
    # LRU always evicts the key that the loop asks for next: every access misses.
    trace = [f"k{i % 110}" for i in range(6_000)]
    assert hit_ratio(_sqlite(tmp_path / "used.db", 100, "used"), trace) == 0.0
    assert hit_ratio(_sqlite(tmp_path / "tinylfu.db", 100, "tinylfu"), trace) > 0.5


def _counter(path: Path, key: str) -> tuple[int, int, int]:
    """The count of ``key``'s entry, the tick of its last change, and the clock now."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute(  # type: ignore[no-any-return]
            "SELECT f.count, f.tick, (SELECT tick FROM tallies) FROM frequencies f "
            "JOIN entries e ON e.rowid = f.id WHERE e.key = ?",
            (key.encode(),),
        ).fetchone()


def test_counters_count_reads_and_halve_as_the_clock_moves_on(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = bounded(path, 10)  # aging: every 10 x 10 ticks
    storage = Storage(Codec("raw"), db)
    storage["hot"] = b"1"
    for _ in range(400):
        storage["hot"]
    db.close()  # the reads noted are written (a write that evicts, or 1,000 reads, would)
    count, tick, now = _counter(path, "hot")
    assert count == MOST  # 400 reads, a quarter counted: the counter is full
    assert now >= 400  # each read moved the clock
    # Full: further reads write nothing to its row.
    for _ in range(50):
        storage["hot"]
    db.close()
    assert _counter(path, "hot")[1] == tick
    # Two periods of other reads: it is worth a quarter (its row is unchanged, the decay
    # is computed where it is read).
    storage["other"] = b"4"
    for _ in range(250):
        storage["other"]
    db.close()
    count, tick, now = _counter(path, "hot")
    assert count == MOST and (now - tick) // 100 >= 2
    assert db._policy is not None
    assert db._policy._decayed(count, tick, now) <= MOST // 4  # type: ignore[union-attr]
    storage.close()


def test_a_restart_keeps_what_the_policy_learned(tmp_path: Path) -> None:
    """The counters are in the file: after a restart, a scan of new keys still cannot
    push out the keys asked for often before it."""
    path = tmp_path / "c.db"
    popular = [f"hot{i}" for i in range(40)]
    storage = Storage(Codec("raw"), bounded(path, 100))
    for round_ in range(20):  # each read counts at random, a quarter of them
        for key in popular:
            if storage.get(key) is None:
                storage[key] = b"v"
        for index in range(20):
            storage[f"first{round_}-{index}"] = b"s"
    storage.close()
    again = Storage(Codec("raw"), bounded(path, 100))  # a new process would see the same
    for index in range(600):
        again[f"scan{index}"] = b"s"
    kept = sum(key in again for key in popular)
    assert kept >= 0.9 * len(popular), f"{kept} of {len(popular)} kept"
    again.close()


#: A writer process: keeps the bound of 20 entries with eviction="tinylfu", writes 200
#: keys of its own and reads them back (the value, or nothing: never another value).
WRITER = """
import sys
from pystorage import Storage
from pystorage.layers import Codec, SQLite
path, writer = sys.argv[1], sys.argv[2]
db = SQLite(path)
db.take_bound("entries", 20, "tinylfu")
storage = Storage(Codec("raw"), db)
print("ready", flush=True)
sys.stdin.readline()
for index in range(200):
    value = f"{writer}-{index}".encode()
    storage[f"w{writer}-{index % 40}"] = value
    assert storage.get(f"w{writer}-{index % 40}", value) == value
storage.close()
"""


def test_processes_sharing_a_file_keep_one_bound(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    bounded(path, 20).close()  # the database and its books exist before the children
    counts = sample_while_children_write(
        WRITER,
        [[str(path), str(writer)] for writer in range(4)],
        path,
        lambda db: db.execute("SELECT count(*) FROM entries").fetchone()[0],
    )
    kept = books(path)
    assert max(counts) <= 20 and kept["count"] == 20
    assert kept["tallies"] == (kept["count"], kept["bytes"])
    assert kept["rows"] == kept["frequencies"]


def test_a_byte_bound_evicts_as_many_as_a_large_value_needs(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    storage = Storage(Codec("raw"), bounded(path, None, 1_000))
    for index in range(50):
        storage[f"small{index}"] = b"s" * 20
    storage["large"] = b"L" * 900
    kept = books(path)
    assert kept["bytes"] <= 1_000 and storage["large"] == b"L" * 900
    storage.close()


def test_another_order_replaces_the_books_and_the_old_stack_fails_loudly(
    tmp_path: Path,
) -> None:
    """A database's books are of one family: a stack that opens it with the other order
    converts them (one pass), and a stack still holding the old order then fails instead
    of keeping a bound by books that nobody updates any more."""
    path = tmp_path / "c.db"
    old = SQLite(path)
    assert old.take_bound("entries", 10, "used")
    by_use = Storage(Codec("raw"), old)
    for index in range(15):
        by_use[f"k{index}"] = b"v"
    by_frequency = Storage(Codec("raw"), bounded(path, 10))
    assert len(by_frequency) == 10 and books(path)["rows"] == books(path)["frequencies"]
    with pytest.raises(BackendError):
        by_use["late"] = b"v"
    by_frequency["new"] = b"v"
    assert len(by_frequency) == 10
    back = SQLite(path)
    assert back.take_bound("entries", 5, "used")
    assert len(Storage(Codec("raw"), back)) == 5


def test_a_writer_without_the_policy_cannot_pass_the_bound(tmp_path: Path) -> None:
    """Writes within the bounds are one statement; the triggers that allow that refuse a
    write beyond them, from any connection (nothing is written)."""
    path = tmp_path / "c.db"
    storage = Storage(Codec("raw"), bounded(path, 3))
    for index in range(3):
        storage[f"k{index}"] = b"v"
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        with pytest.raises(sqlite3.IntegrityError, match="beyond the bounds"):
            other.execute("INSERT INTO entries VALUES (?, ?, NULL)", (b"intruder", b"v"))
        assert other.execute("SELECT count(*) FROM entries").fetchone() == (3,)
    storage["k3"] = b"v"  # through the policy: it evicts to make room
    assert len(storage) == 3 and storage["k3"] == b"v"
    storage.close()

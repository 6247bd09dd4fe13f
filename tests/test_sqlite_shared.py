"""SQLite shared by connections and processes: reads never wait for a writer, and every
stack a URL builds keeps its bound in the database (issue 17, items 1 and 2)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import pystorage
from pystorage import Storage
from pystorage.layers import Codec, CountLimit, Expiry, SQLite
from pystorage.layers import sqlite as sqlite_module
from tests.helpers import CHILD_DEADLINE, FakeClock, sample_while_children_write

#: Far above what a read costs, even on a loaded machine; far below the stores' timeout.
PROMPT = 2.0


@contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Another connection holds the write lock of the database meanwhile, as a long write
    of another process does."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_reads_that_record_uses_never_wait_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    storage = Storage(CountLimit(10), Codec("json"), SQLite(path, timeout=30))
    storage.set_many({f"k{n}": n for n in range(10)})
    with write_locked(path):
        began = time.monotonic()
        for n in range(2500):  # two flushes of the recorded uses come due meanwhile
            assert storage[f"k{n % 5}"] == n % 5
        assert storage.get_many(["k0", "k1", "nope"]) == {"k0": 0, "k1": 1}
        assert storage.get_with_ttl("k2") == (2, None)
        assert time.monotonic() - began < PROMPT
    # The uses read meanwhile were kept: written first by the next write, they make
    # k0-k4 more recent than k5-k9, so k5 (not k0, the oldest write) goes.
    storage["new"] = 10
    assert sorted(storage) == sorted([*(f"k{n}" for n in range(10) if n != 5), "new"])


def test_uses_kept_while_the_database_is_locked_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_USES_BATCH", 10)
    monkeypatch.setattr(sqlite_module, "_USES_KEPT", 20, raising=False)
    path = tmp_path / "c.db"
    backend = SQLite(path, timeout=30)
    storage = Storage(CountLimit(100), Codec("json"), backend)
    storage.set_many({f"k{n}": n for n in range(100)})
    with write_locked(path):
        for _ in range(3):
            for n in range(100):
                assert storage[f"k{n}"] == n
                assert len(backend._uses) < 20 + 10
    # What was kept is the latest reads: k80-k99 now the most recent, in their order.
    storage["new"] = 0
    assert storage.layers[-1].keys_by_age()[-21:] == [*(f"k{n}" for n in range(80, 100)), "new"]


def test_an_expired_key_read_while_a_writer_holds_the_lock_is_missing_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    clock = FakeClock()
    storage = Storage(Expiry(clock=clock), Codec("json"), SQLite(path, timeout=30))
    storage.set("gone", 1, ttl=1)
    storage.set("other", 2, ttl=1)
    storage["kept"] = 3
    clock.now += 2
    with write_locked(path):
        began = time.monotonic()
        with pytest.raises(KeyError):
            storage["gone"]
        with pytest.raises(KeyError):
            storage.get_with_ttl("gone")
        assert storage.get("gone") is None
        assert storage.get_many(["gone", "other", "kept"]) == {"kept": 3}
        assert time.monotonic() - began < PROMPT
    # Left for later, not lost: a read now removes the row.
    with pytest.raises(KeyError):
        storage["gone"]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT key FROM entries WHERE key = 'gone'").fetchall() == []


#: A writer process: opens the URL, says so, waits for the word, then writes 50 keys and
#: reads each back. A plain interpreter starts in a fraction of the
#: time a spawned one takes to import this test module.
WRITER = """
import sys
import pystorage
url, writer = sys.argv[1], sys.argv[2]
storage = pystorage.open(url)
print("ready", flush=True)
sys.stdin.readline()
for index in range(50):
    value = f"{writer}-{index:04d}"  # 8 bytes of JSON, all of them
    storage[f"w{writer}-{index}"] = value
    # Read back: the value, or nothing if another writer's write evicted it (the front
    # learns of that from the database's data_version), never another value.
    assert storage.get(f"w{writer}-{index}", value) == value
storage.close()
"""


def _rows(db: sqlite3.Connection) -> tuple[int, int]:
    """The rows of the database and the bytes of their values, as another process sees."""
    count, size = db.execute(
        "SELECT COUNT(*), ifnull(sum(length(value)), 0) FROM entries"
    ).fetchone()
    return int(count), int(size)


@pytest.mark.parametrize(
    "options", ["limit=10&lru=5", "max_bytes=80&lru=5", "limit=10&max_bytes=80&lru=5&ttl=60"]
)
def test_a_url_with_a_memory_tier_keeps_its_bound_across_processes(
    tmp_path: Path, options: str
) -> None:
    """Issue 17 item 2: with lru= the limit stayed a layer of each process, and 4 writers
    left 4 times the bound. Sampled from outside while they write."""
    path = tmp_path / "c.db"
    url = f"sqlite://{path}?codec=json&{options}"
    pystorage.open(url).close()  # the database exists before the children write
    samples = sample_while_children_write(
        WRITER, [[url, str(writer)] for writer in range(4)], path, _rows
    )
    assert max(count for count, _ in samples) <= 10
    assert max(size for _, size in samples) <= 80
    assert len(pystorage.open(url)) <= 10


def test_the_memory_tier_never_serves_what_the_database_evicted(tmp_path: Path) -> None:
    storage = pystorage.open(f"sqlite://{tmp_path}/c.db?codec=json&limit=3&lru=10")
    assert [type(layer).__name__ for layer in storage.layers] == ["Tier", "Codec", "SQLite"]
    for index in range(10):
        storage[f"k{index}"] = index
    assert sorted(storage) == ["k7", "k8", "k9"]
    assert storage.get("k0") is None and "k0" not in storage
    with pytest.raises(KeyError):
        storage["k6"]
    assert storage["k9"] == 9 and storage.stats()["evictions"] == 7


def test_the_async_memory_tier_never_serves_what_the_database_evicted(tmp_path: Path) -> None:
    async def scenario() -> None:
        storage = pystorage.open_async(f"sqlite://{tmp_path}/c.db?codec=json&limit=3&lru=10")
        for index in range(10):
            await storage.set(f"k{index}", index)
        assert await storage.get("k0") is None
        assert await storage.get("k9") == 9
        assert await storage.count() == 3
        await storage.aclose()

    asyncio.run(scenario())


def _open_and_write(path: str, start: Any, answers: Any) -> None:
    start.wait()
    try:
        with Storage(Codec("pickle"), SQLite(path)) as storage:
            storage[f"from {os.getpid()}"] = 1
        answers.put("ok")
    except Exception as exc:  # reported to the test
        answers.put(repr(exc))


def test_processes_creating_one_new_database_at_once_all_open_it(tmp_path: Path) -> None:
    """The format check read user_version and the tables in two statements: a creation
    committed between them by another process made the new database look like one of
    format 0 (1 trial in 30 of 6 processes, before the fix)."""
    context = multiprocessing.get_context("fork")
    for trial in range(10):
        path = str(tmp_path / f"new-{trial}.db")
        start, answers = context.Barrier(6), context.Queue()
        children = [
            context.Process(target=_open_and_write, args=(path, start, answers)) for _ in range(6)
        ]
        for child in children:
            child.start()
        got = [answers.get(timeout=CHILD_DEADLINE) for _ in children]
        for child in children:
            child.join(CHILD_DEADLINE)
        assert got == ["ok"] * 6, got
        assert len(Storage(Codec("pickle"), SQLite(path))) == 6

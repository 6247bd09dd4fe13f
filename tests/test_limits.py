"""Byte-size limits (SizeLimit) on every backend, eviction orders, limits handed to SQL."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

import pystorage
from pystorage import Storage, StorageProvider
from pystorage.aio.storage import AsyncStorage
from pystorage.errors import ConfigurationError, StorageProviderError, ValueTooLargeError
from pystorage.layers import (
    LRU,
    S3,
    Codec,
    CountLimit,
    Files,
    Layer,
    Memory,
    Redis,
    SizeLimit,
    SQLite,
    Stats,
    Tier,
)
from pystorage.layers.base import Wrapper
from tests.helpers import quick_and_long, unique

BACKENDS = ["memory", "files", "sqlite", "redis", "s3"]


def backend(name: str, request: pytest.FixtureRequest, place: Path) -> Layer:
    """A fresh, empty backend of kind ``name`` (servers from the session's fixtures)."""
    if name == "memory":
        return Memory()
    if name == "files":
        return Files(place / "files")
    if name == "sqlite":
        return SQLite(place / "cache.db")
    if name == "redis":
        import redis

        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        return Redis(client, prefix=unique("limits:") + ":")
    options = request.getfixturevalue("s3_options")
    return S3(
        request.getfixturevalue("s3_bucket"),
        unique("limits-"),
        endpoint_url=options["endpoint_url"],
        region=options["region_name"],
        aws_access_key_id=options["aws_access_key_id"],
        aws_secret_access_key=options["aws_secret_access_key"],
    )


def scope(name: str) -> dict[str, bool]:
    """A limit over S3 is a bound per process, accepted explicitly (it would be refused)."""
    return {"per_process": True} if name == "s3" else {}


def stored_bytes(storage: Storage) -> int:
    """The bytes of the values the backend holds, asked of the backend itself."""
    return sum(size for _, size in storage.layers[-1].sizes_by_age())


@pytest.mark.parametrize("name", BACKENDS)
def test_the_least_recently_used_go_first_and_the_bytes_never_exceed_the_limit(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    storage = Storage(
        Codec("raw"), SizeLimit(1000, **scope(name)), backend(name, request, tmp_path)
    )
    for number in range(10):
        storage[f"k{number}"] = bytes([number]) * 200
        assert stored_bytes(storage) <= 1000
    assert sorted(storage) == ["k5", "k6", "k7", "k8", "k9"]
    assert storage["k5"] == bytes([5]) * 200  # a use: k6 is now the least recent
    storage["k10"] = b"x" * 150
    assert sorted(storage) == ["k10", "k5", "k7", "k8", "k9"]
    assert stored_bytes(storage) == 950
    assert storage.stats()["evictions"] == 6


@pytest.mark.parametrize("name", BACKENDS)
def test_eviction_by_age_of_write_ignores_reads(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    storage = Storage(
        Codec("raw"),
        SizeLimit(600, eviction="stored", **scope(name)),
        backend(name, request, tmp_path),
    )
    storage.set_many({"a": b"1" * 200, "b": b"2" * 200, "c": b"3" * 200})
    assert storage.get_many(["a"]) == {"a": b"1" * 200}
    assert storage["a"] == b"1" * 200
    storage["d"] = b"4" * 200
    assert sorted(storage) == ["b", "c", "d"]


@pytest.mark.parametrize("name", BACKENDS)
def test_a_value_larger_than_the_whole_limit_is_refused_and_nothing_is_written(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    storage = Storage(
        Codec("raw"), SizeLimit(1000, **scope(name)), backend(name, request, tmp_path)
    )
    storage["a"] = b"old"
    with pytest.raises(ValueTooLargeError, match="'a' weighs 1001 bytes"):
        storage["a"] = b"x" * 1001
    with pytest.raises(ValueTooLargeError):
        storage.set_many({"b": b"fits", "c": b"x" * 1001})
    assert dict(storage.get_many(["a", "b", "c"])) == {"a": b"old"}
    storage["a"] = b"x" * 1000  # exactly the limit fits, and leaves room for nothing else
    assert dict(storage.get_many(["a"])) == {"a": b"x" * 1000}
    assert stored_bytes(storage) == 1000


@pytest.mark.parametrize("name", BACKENDS)
def test_an_overwrite_counts_the_new_size_not_both(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    storage = Storage(
        Codec("raw"), SizeLimit(1000, **scope(name)), backend(name, request, tmp_path)
    )
    storage["a"] = b"x" * 900
    storage["a"] = b"y" * 100
    storage["b"] = b"z" * 800
    assert sorted(storage) == ["a", "b"]
    storage["a"] = b"w" * 300  # 300 + 800 > 1000: b is now the least recent
    assert sorted(storage) == ["a"]


@pytest.mark.parametrize("name", ["files", "sqlite"])
def test_a_smaller_limit_at_the_next_open_trims_the_oldest_at_once(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    first = Storage(Codec("raw"), backend(name, request, tmp_path))
    for number in range(5):
        first[f"k{number}"] = b"v" * 200
    again = Storage(Codec("raw"), SizeLimit(600), backend(name, request, tmp_path))
    assert stored_bytes(again) == 600
    assert sorted(again) == ["k2", "k3", "k4"]


def test_files_sizes_leave_out_headers_and_key_lines(tmp_path: Path) -> None:
    files = Files(tmp_path)
    storage = Storage(Codec("raw"), files)
    long_key = "k" * 400  # stored under a hashed name, the key on the first line
    storage.set("short", b"a" * 100, ttl=60)
    storage.set(long_key, b"b" * 70, ttl=60)
    storage["plain"] = b"c" * 30
    assert sorted(files.sizes_by_age()) == [(long_key, 70), ("plain", 30), ("short", 100)]


def test_a_limit_over_sqlite_is_enforced_in_sql_and_leaves_the_stack(tmp_path: Path) -> None:
    database = tmp_path / "cache.db"
    limit = CountLimit(3)
    storage = Storage(Stats(), Codec("pickle"), limit, SizeLimit(1000), SQLite(database))
    assert not any(isinstance(layer, (CountLimit, SizeLimit)) for layer in storage.layers)
    # A second stack on the same file, as a second process would have: one bound.
    other = Storage(Codec("pickle"), CountLimit(3), SQLite(database))
    for number in range(6):
        (storage if number % 2 else other)[f"k{number}"] = number
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM entries").fetchone() == (3,)
    assert sorted(storage) == ["k3", "k4", "k5"]
    # Each counts its own: k3 and k5 (written here) evicted k0 and k2, k4 evicted k1.
    assert storage.stats()["evictions"] == 2
    assert other.stats()["evictions"] == 1


@pytest.mark.parametrize("tier_first", [True, False], ids=["tier-above", "limit-above"])
def test_a_tier_over_an_sqlite_that_evicts_drops_what_it_evicts(
    tmp_path: Path, tier_first: bool
) -> None:
    # The database tells the keys its writes evict, and they leave the front too: a limit
    # below the Tier or above it is kept in SQL either way (issue 17 item 2: above it, it
    # stayed a per-process layer, and processes together went over the bound).
    if tier_first:
        layers: list[Layer] = [Tier(LRU(4)), Codec("pickle"), CountLimit(2)]
    else:
        layers = [CountLimit(2), Tier(LRU(4)), Codec("pickle")]
    storage = Storage(*layers, SQLite(tmp_path / "cache.db"))
    assert [type(layer).__name__ for layer in storage.layers] == ["Tier", "Codec", "SQLite"]
    storage.set_many({"a": 1, "b": 2})
    storage["c"] = 3
    assert sorted(storage) == ["b", "c"]
    assert storage.get("a") is None
    assert storage.stats()["evictions"] == 1


class _EvictWhileReading(Wrapper):
    """Runs ``during`` (once) after a read below has found its value, before it returns."""

    during: Callable[[], None] | None = None

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        found = self._inner.get_with_ttl(key)
        during, self.during = self.during, None
        if during is not None:
            during()
        return found


def test_a_read_through_that_began_before_an_eviction_keeps_nothing_in_front(
    tmp_path: Path,
) -> None:
    tier = Tier(LRU(4))
    below = _EvictWhileReading()
    storage = Storage(
        CountLimit(2, eviction="stored"), tier, below, Codec("pickle"), SQLite(tmp_path / "c.db")
    )
    storage.set_many({"a": 1, "b": 2})
    tier.front.clear()
    below.during = lambda: storage.__setitem__("c", 3)  # evicts "a" once it was read
    assert storage["a"] == 1  # read before the eviction: right then
    assert storage.get("a") is None and sorted(storage) == ["b", "c"]


def test_two_limits_over_one_sqlite_must_evict_in_one_order(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="same order"):
        Storage(
            Codec("raw"),
            CountLimit(10, eviction="stored"),
            SizeLimit(100),
            SQLite(tmp_path / "cache.db"),
        )


def test_a_database_of_another_format_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "old.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE entries (key BLOB PRIMARY KEY, value BLOB, deadline REAL)")
    with pytest.raises(ConfigurationError, match="another format"):
        SQLite(database)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://?max_bytes=100", "needs a codec"),
        ("sqlite:///nowhere/x.db?max_bytes=0", "positive whole number"),
        ("sqlite:///nowhere/x.db?eviction=random", "one of used, stored, tinylfu"),
    ],
)
def test_bad_limit_options_fail_before_anything_is_built(url: str, message: str) -> None:
    with pytest.raises(StorageProviderError, match=message):
        pystorage.open(url)


def test_urls_and_presets_take_max_bytes_and_eviction(tmp_path: Path) -> None:
    storage = pystorage.open(f"sqlite://{tmp_path}/u.db?codec=raw&max_bytes=500&eviction=stored")
    assert [type(layer) for layer in storage.layers] == [Codec, SQLite]
    for number in range(4):
        storage[f"k{number}"] = b"v" * 200
    assert sorted(storage) == ["k2", "k3"]
    # With a memory tier: under the SizeLimit, it keeps encoded values.
    tiered = pystorage.open(f"file://{tmp_path}/f?max_bytes=1000&lru=4")
    assert [type(layer) for layer in tiered.layers] == [Codec, SizeLimit, Tier, Files]
    tiered.set_many({f"k{number}": "v" * 300 for number in range(5)})
    assert len(tiered) <= 3
    preset = StorageProvider().create(
        StorageProvider.STORAGE_SQLITE, path=tmp_path / "p.db", codec="raw", max_bytes=300
    )
    preset.set_many({"a": b"1" * 200, "b": b"2" * 200})
    assert sorted(preset) == ["b"]


# -- two limits over one folder -----------------------------------------------------------

DEADLOCK = 30.0  # seconds: far more than these few writes take


def finished(work: Callable[[], Any]) -> Any:
    """``work()`` in a daemon thread, failing the test if it has not returned by the
    deadline (a deadlock) rather than hanging the run."""
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(work()), daemon=True)
    thread.start()
    thread.join(DEADLOCK)
    assert outcome, "deadlocked"
    return outcome[0]


def test_a_count_and_a_byte_limit_over_one_folder_keep_both_bounds(tmp_path: Path) -> None:
    # Each limit takes the folder's exclusive section; the one below takes it inside the
    # section of the one above, which once waited for itself forever.
    url = f"file://{tmp_path}?codec=raw&limit=10&max_bytes=100"
    mine, other = pystorage.open(url), pystorage.open(url)  # as two processes would have
    assert [type(layer) for layer in mine.layers] == [CountLimit, Codec, SizeLimit, Files]
    finished(lambda: mine.set_many({"a": b"a" * 40, "b": b"b" * 40}))
    finished(lambda: other.set("c", b"c" * 40))  # 120 bytes: a goes
    finished(lambda: mine.set("d", b"d" * 40))  # both limits learn of c first: b goes
    assert sorted(key for key, _ in other.layers[-1].sizes_by_age()) == ["c", "d"]


def test_a_count_and_a_byte_limit_over_one_folder_from_asyncio(tmp_path: Path) -> None:
    def stack() -> AsyncStorage:
        return AsyncStorage(CountLimit(10), Codec("raw"), SizeLimit(100), Files(tmp_path))

    async def use() -> list[str]:
        async with stack() as mine, stack() as other:
            await mine.set_many({"a": b"a" * 40, "b": b"b" * 40})
            await other.set("c", b"c" * 40)  # 120 bytes: a goes
            await mine.set("d", b"d" * 40)  # both limits learn of c first: b goes
        return sorted(key for key, _ in Files(tmp_path).sizes_by_age())

    assert finished(lambda: asyncio.run(use())) == ["c", "d"]


# -- many processes on one database ------------------------------------------------------

WRITERS = 8
WRITES = 150
TIMEOUT = 120


def _write_through_a_limit(path: str, writer: int, max_bytes: int, result: Any) -> None:
    """A worker: writes through the preset, and checks the bound after each write."""
    try:
        storage = StorageProvider().create(
            StorageProvider.STORAGE_SQLITE, path=path, codec="raw", limit=20, max_bytes=max_bytes
        )
        for number in range(WRITES):
            storage[f"w{writer}-{number}"] = b"v" * (50 + (number * 37 + writer) % 200)
            with sqlite3.connect(path, timeout=30) as db:
                (total,) = db.execute(
                    "SELECT ifnull(sum(length(value)), 0) FROM entries"
                ).fetchone()
            if total > max_bytes:
                raise AssertionError(f"{total} bytes after a write returned")
        storage.close()
        result.put(None)
    except BaseException:
        result.put(traceback.format_exc())


def test_eight_processes_never_take_a_limited_database_over_its_bounds(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    max_bytes = 2_000
    StorageProvider().create(StorageProvider.STORAGE_SQLITE, path=path, codec="raw")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_write_through_a_limit, args=(path, n, max_bytes, results))
        for n in range(WRITERS)
    ]
    for worker in workers:
        worker.start()
    peak_count = peak_bytes = samples = 0
    deadline = time.monotonic() + TIMEOUT
    try:
        with sqlite3.connect(path, timeout=30) as db:
            while any(worker.is_alive() for worker in workers):
                assert time.monotonic() < deadline, "the writers did not finish in time"
                count, size = db.execute(
                    "SELECT count(*), ifnull(sum(length(value)), 0) FROM entries"
                ).fetchone()
                peak_count, peak_bytes = max(peak_count, count), max(peak_bytes, size)
                samples += 1
        errors = [results.get(timeout=TIMEOUT) for _ in workers]
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
            worker.join()
    assert [error for error in errors if error] == []
    assert samples > 0
    assert peak_count <= 20
    assert peak_bytes <= max_bytes
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        totals = db.execute("SELECT count, bytes FROM totals").fetchone()
        actual = db.execute("SELECT count(*), ifnull(sum(length(value)), 0) FROM entries")
        assert totals == actual.fetchone()  # the triggers kept the totals exact


def test_reopening_a_limited_database_reads_no_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cache.db"
    first = Storage(Codec("raw"), CountLimit(100), SizeLimit(10_000), SQLite(path))
    first.set_many({f"k{n}": b"v" for n in range(50)})
    first.close()
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = connect(*args, **kwargs)
        db.set_trace_callback(statements.append)
        return db

    monkeypatch.setattr(sqlite3, "connect", traced)
    again = Storage(Codec("raw"), CountLimit(100), SizeLimit(10_000), SQLite(path))
    assert again.get("k7") == b"v"
    # The books exist: opening neither makes nor fills them (a pass over every entry).
    assert statements and not [s for s in statements if "FROM entries" in s and "key =" not in s]


# -- reads that race a writer ------------------------------------------------------------

RACE_BOUND = 50_000


@pytest.mark.parametrize("name", ["memory", "files"])
@quick_and_long(1_000, 6_000)
def test_reads_racing_a_writer_never_take_a_size_limit_over_its_bound(
    name: str, scale: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Issue 17, item 3: a read recorded the weight of the value it had read after a
    # writer entered the new one, so the index under-counted and the bytes went over.
    storage = Storage(Codec("raw"), SizeLimit(RACE_BOUND), backend(name, request, tmp_path))
    keys = [f"k{number}" for number in range(20)]
    done = threading.Event()
    failures: list[str] = []

    def read() -> None:
        try:
            while not done.is_set():
                for key in keys:
                    storage.get(key)
        except BaseException:
            failures.append(traceback.format_exc())

    readers = [threading.Thread(target=read, daemon=True) for _ in range(3)]
    for reader in readers:
        reader.start()
    peak = 0
    try:
        for number in range(scale):
            storage[keys[number % 20]] = b"s" * 10 if number % 3 else b"L" * 9_000
            # The only writer: once its write returned, nothing may be over the bound.
            peak = max(peak, stored_bytes(storage))
            assert peak <= RACE_BOUND, f"{peak} bytes stored after write {number}"
    finally:
        done.set()
        for reader in readers:
            reader.join(DEADLOCK)
    assert not any(reader.is_alive() for reader in readers), "a reader did not stop"
    assert failures == []
    assert stored_bytes(storage) <= RACE_BOUND


@pytest.mark.parametrize("name", ["memory", "files"])
def test_a_read_that_a_write_overtook_does_not_give_back_the_old_weight(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # The interleaving of the test above, made certain: between the moment a read has
    # its value from below and the moment it records the read, a write replaces the
    # 10-byte value with a 9,000-byte one.
    below = backend(name, request, tmp_path)
    storage = Storage(Codec("raw"), SizeLimit(RACE_BOUND), Overtaken(), below)
    storage["k"] = b"s" * 10
    overtaking = [lambda: storage.set("k", b"L" * 9_000)]
    storage.layers[-2].after_get = lambda: overtaking and overtaking.pop()()
    assert storage["k"] == b"s" * 10  # the old value: the read began first
    for number in range(5):  # 9,000 + 5 x 9,000 = 54,000 if k still counted 10 bytes
        storage[f"o{number}"] = b"o" * 9_000
        assert stored_bytes(storage) <= RACE_BOUND
    assert storage["o4"] == b"o" * 9_000


@attrs.define(eq=False)
class Overtaken(Wrapper):
    """Passes everything down; after each ``get`` from below, runs ``after_get``."""

    after_get: Callable[[], Any] = attrs.field(default=lambda: None, init=False)

    def get(self, key: str) -> Any:
        value = self._inner.get(key)
        self.after_get()
        return value

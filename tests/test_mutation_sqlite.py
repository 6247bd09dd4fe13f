"""SQLite behaviour that no test pinned down until `make mutation MODULE=sqlite` showed it:
bounds of two limits, deadlines at their exact instant, counters, the renewal after a
fork, and errors that name the key and the action."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage, _fork
from pystorage.errors import (
    BackendError,
    ConfigurationError,
    InvalidKeyError,
    ValueTooLargeError,
)
from pystorage.layers import Codec, CountLimit, SizeLimit, SQLite
from pystorage.layers.base import ABSENT
from pystorage.layers.sqlite import _ABANDONED, _USES_BATCH, _busy
from tests.helpers import FakeClock, run_in_child


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path, clock: FakeClock) -> Iterator[SQLite]:
    backend = SQLite(tmp_path / "c.db", clock=clock)
    yield backend
    backend.close()


def _rows(path: Path) -> dict[bytes, tuple[bytes, float | None]]:
    """What the file holds, read by a connection of its own."""
    with sqlite3.connect(path) as other:
        found = other.execute("SELECT key, value, deadline FROM entries").fetchall()
    other.close()
    return {key: (value, deadline) for key, value, deadline in found}


# -- bounds ------------------------------------------------------------------------------


@pytest.mark.parametrize("bounds", [(2, 5), (5, 2)])
def test_two_limits_over_one_database_keep_the_smaller_bound(
    tmp_path: Path, bounds: tuple[int, int]
) -> None:
    db = SQLite(tmp_path / "c.db")
    first, second = (Storage(CountLimit(bound), Codec("raw"), db) for bound in bounds)
    second.set_many({f"k{i}": b"v" for i in range(4)})
    first["k4"] = b"v"
    assert len(first) == len(second) == 2
    assert sorted(second) == ["k3", "k4"]
    assert repr(db).endswith("limit=2, eviction='used')")
    assert db.counters()["evictions"] == 3


def test_two_limits_over_one_database_must_evict_in_the_same_order(tmp_path: Path) -> None:
    db = SQLite(tmp_path / "c.db")
    Storage(CountLimit(5), Codec("raw"), db)
    with pytest.raises(
        ConfigurationError,
        match=r"^two limits over one SQLite must evict in the same order \('used' and 'stored'\)$",
    ):
        Storage(CountLimit(2, eviction="stored"), Codec("raw"), db)
    assert repr(db).endswith("limit=5, eviction='used')")


def test_a_size_limit_and_a_count_limit_over_one_database_both_hold(tmp_path: Path) -> None:
    db = SQLite(tmp_path / "c.db")
    count = Storage(CountLimit(3), Codec("raw"), db)
    size = Storage(Codec("raw"), SizeLimit(10), db)
    count.set_many({"a": b"1234", "b": b"1234"})  # 8 bytes, 2 entries: within both
    assert sorted(size) == ["a", "b"]
    size["c"] = b"1234"  # 12 bytes: the oldest goes for the size
    assert sorted(count) == ["b", "c"]
    count["d"] = b"1"
    count["e"] = b"1"  # 10 bytes in 4 entries: the oldest goes for the count
    assert sorted(count) == ["c", "d", "e"]
    with pytest.raises(Exception, match="'big'"):
        count["big"] = b"x" * 11  # larger than the size bound alone: refused, not stored
    assert "big" not in count


def _flushed_order(db: SQLite) -> list[str]:
    """The order of use the database holds, once the reads noted so far are written (by
    a write transaction, as the next write of this object does)."""
    with db._transaction("test"):
        pass
    return db.keys_by_age()


def test_get_many_and_peek_many_under_eviction_by_use(tmp_path: Path) -> None:
    db = SQLite(tmp_path / "c.db")
    Storage(CountLimit(10), Codec("raw"), db)  # hands down its bound: eviction by use
    db.set_many({"a": b"1", "b": b"2", "c": b"3"})
    assert db.peek_many(["a", "missing"]) == {"a": b"1"}  # not a use
    assert _flushed_order(db) == ["a", "b", "c"]
    assert db.get_many(["b", "missing"]) == {"b": b"2"}  # a use of b only
    assert _flushed_order(db) == ["a", "c", "b"]
    assert db.get_many_with_ttl(["a"]) == {"a": (b"1", None)}
    assert _flushed_order(db) == ["c", "b", "a"]
    assert db.get_with_ttl("c") == (b"3", None)
    assert _flushed_order(db) == ["b", "a", "c"]
    assert db.sizes_by_age() == [("b", 1), ("a", 1), ("c", 1)]


def test_the_reads_of_a_batch_are_written_in_the_order_of_their_last_read(
    tmp_path: Path,
) -> None:
    db = SQLite(tmp_path / "c.db")
    Storage(CountLimit(10), Codec("raw"), db)
    db.set_many({"a": b"1", "b": b"2", "c": b"3", "d": b"4"})
    for key in ["a", "b", "c", "a", "b"]:
        db.get(key)
    assert _flushed_order(db) == ["d", "c", "a", "b"]


def test_without_a_limit_the_age_is_the_order_rows_were_made(db: SQLite) -> None:
    db.set_many({"b": b"22", "a": b"1"})
    db.set("c", b"333")
    db.set("b", b"4444")  # rewritten in place: its row keeps its place
    assert db.get("a") == b"1"  # not a use without eviction by use
    assert db.keys_by_age() == ["b", "a", "c"]
    assert db.sizes_by_age() == [("b", 4), ("a", 1), ("c", 3)]


def test_a_batch_read_of_more_keys_than_one_query_takes(db: SQLite, clock: FakeClock) -> None:
    many = {f"k{i}": str(i).encode() for i in range(1234)}
    db.set_many(many)
    db.set("gone", b"x", ttl=1)
    clock.now += 1
    wanted = [*many, "gone", "missing"]
    assert db.get_many(wanted) == many
    assert db.peek_many(wanted) == many
    assert db.counters() == {"expirations": 1}


def test_the_repr_names_the_class_and_the_file(db: SQLite) -> None:
    assert repr(db).startswith(f"SQLite(path={db.path!r}, timeout=30.0, ")


@pytest.mark.parametrize("limit", [CountLimit(3), SizeLimit(3)], ids=["count", "size"])
def test_a_limit_goes_for_expired_rows_first_and_only_beyond_its_bound(
    tmp_path: Path, clock: FakeClock, limit: CountLimit | SizeLimit
) -> None:
    db = SQLite(tmp_path / "c.db", clock=clock)
    Storage(Codec("raw"), limit, db)
    db.set("old", b"1", ttl=1)
    db.set_many({"a": b"2", "b": b"3"})
    clock.now += 1
    db.set("b", b"4")  # 3 entries, 3 bytes: at the bound, not beyond it
    assert db.counters() == {"evictions": 0}  # nothing removed, the expired row either
    assert set(_rows(db.path)) == {b"old", b"a", b"b"}
    db.set("c", b"5")  # beyond: the expired row goes, and no live one
    assert db.counters() == {"expirations": 1, "evictions": 0}
    assert db.keys_by_age() == ["a", "b", "c"]
    db.set("d", b"6")  # beyond again, nothing expired: the least recent live one goes
    assert db.counters() == {"expirations": 1, "evictions": 1}
    assert db.keys_by_age() == ["b", "c", "d"]


# -- deadlines at their instant, and the counters ----------------------------------------


def test_an_entry_is_gone_at_the_exact_instant_of_its_deadline(
    db: SQLite, clock: FakeClock
) -> None:
    db.set("k", b"old", ttl=10)
    clock.now += 10
    with pytest.raises(KeyError):
        db.get("k")
    assert db.counters() == {"expirations": 1}  # the read removed the row
    assert _rows(db.path) == {}


def test_modify_at_the_exact_deadline_starts_from_absent(db: SQLite, clock: FakeClock) -> None:
    seen: list[Any] = []

    def change(old: Any) -> bytes:
        seen.append(old)
        return b"new" if old is ABSENT else old + b"+"

    db.set("k", b"old", ttl=10)
    clock.now += 9.5
    assert db.modify("k", change) == b"old+"  # still live: the value, and its deadline kept
    assert db.get_with_ttl("k") == (b"old+", pytest.approx(0.5))
    clock.now += 0.5
    assert db.modify("k", change, ttl=30) == b"new"  # at the deadline: expired
    assert seen == [b"old", ABSENT]
    assert db.get_with_ttl("k") == (b"new", pytest.approx(30))


def test_get_never_returns_a_row_past_its_deadline(db: SQLite, clock: FakeClock) -> None:
    # The row is still in the file (nothing swept it): only get's own check keeps it out.
    db.set("k", b"v", ttl=1)
    clock.now += 2
    assert b"k" in _rows(db.path)
    with pytest.raises(KeyError):
        db.get("k")
    assert _rows(db.path) == {}
    assert db.counters() == {"expirations": 1}


def test_a_batch_read_at_the_exact_deadline_finds_nothing(db: SQLite, clock: FakeClock) -> None:
    db.set_many({"a": b"1", "b": b"2"}, ttl=10)
    db.set("c", b"3", ttl=20)
    clock.now += 10
    assert db.get_many_with_ttl(["a", "b", "c"]) == {"c": (b"3", pytest.approx(10))}
    assert db.counters() == {"expirations": 2}  # both rows the read met, removed
    assert set(_rows(db.path)) == {b"c"}


@pytest.mark.parametrize("read", [SQLite.get, SQLite.get_with_ttl])
def test_a_read_of_a_missing_or_expired_key_is_a_key_error_naming_it(
    db: SQLite, clock: FakeClock, read: Any
) -> None:
    with pytest.raises(KeyError) as missing:
        read(db, "missing")
    assert missing.value.args == ("missing",)
    db.set("k", b"v", ttl=1)
    clock.now += 1
    with pytest.raises(KeyError) as expired:
        read(db, "k")
    assert expired.value.args == ("k",)
    assert _rows(db.path) == {}  # the read removed the row it met
    assert db.counters() == {"expirations": 1}


def test_a_delete_of_a_missing_or_expired_key_is_a_key_error_naming_it(
    db: SQLite, clock: FakeClock
) -> None:
    with pytest.raises(KeyError) as missing:
        db.delete("missing")
    assert missing.value.args == ("missing",)
    db.set("k", b"v", ttl=1)
    clock.now += 1
    with pytest.raises(KeyError) as expired:
        db.delete("k")
    assert expired.value.args == ("k",)


def test_expire_counts_what_it_removed(db: SQLite, clock: FakeClock) -> None:
    assert db.counters() == {}  # nothing to count yet
    db.set_many({"a": b"1", "b": b"2", "c": b"3"}, ttl=5)
    db.set("kept", b"k")
    clock.now += 5
    assert db.expire() == 3
    assert db.counters() == {"expirations": 3}
    assert db.expire() == 0
    assert db.counters() == {"expirations": 3}
    assert _rows(db.path) == {b"kept": (b"k", None)}
    db.set_many({"d": b"4", "e": b"5"}, ttl=1)
    clock.now += 1
    assert db.expire() == 2
    assert db.counters() == {"expirations": 5}  # counted on, not restarted


@pytest.mark.parametrize(
    "write",
    [
        lambda db, key: db.set(key, b"v"),
        lambda db, key: db.add(key, b"v"),
        lambda db, key: db.modify(key, lambda old: b"v"),
    ],
    ids=["set", "add", "modify"],
)
@pytest.mark.parametrize("bounded", [False, True], ids=["unbounded", "bounded"])
def test_every_thousandth_write_sweeps_at_most_a_hundred_expired_rows(
    db: SQLite, clock: FakeClock, write: Any, bounded: bool
) -> None:
    if bounded:  # writes in a transaction with the books of a limit, never beyond it here
        Storage(CountLimit(10_000), Codec("raw"), db)
    db.set_many({f"old{i}": b"x" for i in range(150)}, ttl=1)  # 150 writes
    clock.now += 1
    for i in range(849):
        write(db, f"new{i}")
    assert db.counters().get("expirations", 0) == 0  # 999 writes: no sweep yet
    write(db, "last")
    assert db.counters().get("expirations") == 100
    assert len(_rows(db.path)) == 50 + 850
    for i in range(999):
        write(db, f"more{i}")
    assert db.counters().get("expirations") == 100  # counted again from the sweep
    write(db, "lastmore")
    assert db.counters().get("expirations") == 150


# -- after fork() ------------------------------------------------------------------------


def test_the_renewal_after_a_fork_leaves_the_parents_connection_alone(
    tmp_path: Path,
) -> None:
    # What os.fork() runs in the child, run here: mutmut maps a test only to the code that
    # the test's own process runs. A lock another thread held at the fork is replaced,
    # the parent's connection is kept open (never closed, never used), and the child's
    # reads are recorded afresh.
    db = SQLite(tmp_path / "c.db")
    storage = Storage(CountLimit(2), Codec("raw"), db)
    storage.set_many({"a": b"1", "b": b"2"})
    assert storage["a"] == b"1"  # a use noted, not yet written
    parents = db._local.db
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with db._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(30)
    try:
        _fork._renewals[db](db)
        assert storage["b"] == b"2"  # the child's first read: a use noted afresh
        storage["c"] = b"3"  # the parent's read of a is not the child's: a goes
    finally:
        release.set()
        holder.join(30)
    assert db._local.db is not parents
    assert parents in _ABANDONED
    assert parents.execute("SELECT count(*) FROM entries").fetchone() == (2,)
    assert sorted(storage) == ["b", "c"]
    assert db.counters()["evictions"] == 1


def test_a_forked_child_writes_on_a_connection_of_its_own(tmp_path: Path) -> None:
    db = SQLite(tmp_path / "c.db")
    db.set("parent", b"p")

    def child() -> tuple[bytes, int]:
        db.set("child", b"c")
        return db.get("parent"), len(db._mine)

    assert run_in_child(child) == (b"p", 1)
    assert db.get("child") == b"c"
    assert len(db._mine) == 1


# -- errors name the key and the action --------------------------------------------------


@pytest.fixture
def locked(db: SQLite) -> Iterator[SQLite]:
    """``db`` with a timeout of 0, while another connection holds the write lock."""
    db.set("k", b"v")
    db.timeout = 0
    db.close()  # its next connection waits for no lock
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    yield db
    other.execute("ROLLBACK")
    other.close()


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda db: db.set("k", b"new"), "cannot write 'k'"),
        (lambda db: db.delete("k"), "cannot delete 'k'"),
        (lambda db: db.add("fresh", b"v"), "cannot add 'fresh'"),
        (lambda db: db.modify("k", lambda old: b"new"), "cannot modify 'k'"),
        (lambda db: db.set_many({"a": b"1", "b": b"2"}), "cannot write 2 keys"),
        (lambda db: db.delete_many(["a", "b", "c"]), "cannot delete 3 keys"),
    ],
)
def test_a_write_refused_for_a_lock_names_the_key_and_the_action(
    locked: SQLite, action: Any, message: str
) -> None:
    where = re.escape(str(locked.path))
    with pytest.raises(BackendError, match=f"^SQLite {where}: {message}: database is locked"):
        action(locked)
    assert locked.get("k") == b"v"  # reads never wait for the writer


@pytest.fixture
def broken(db: SQLite) -> SQLite:
    """``db`` whose table another connection dropped."""
    db.set("k", b"v")
    with sqlite3.connect(db.path) as other:
        other.execute("DROP TABLE entries")
    other.close()
    return db


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda db: db.get("k"), "cannot read 'k'"),
        (lambda db: db.get_with_ttl("k"), "cannot read 'k'"),
        (lambda db: db.contains("k"), "cannot check 'k'"),
        (lambda db: db.get_many(["k", "j"]), "cannot read 2 keys"),
        (lambda db: db.set("k", b"w"), "cannot write 'k'"),
    ],
)
def test_a_read_of_a_broken_database_names_the_key_and_the_action(
    broken: SQLite, action: Any, message: str
) -> None:
    where = re.escape(str(broken.path))
    with pytest.raises(BackendError, match=f"^SQLite {where}: {message}: no such table"):
        action(broken)


def test_a_bounded_write_refused_for_a_lock_names_the_key_and_the_action(
    tmp_path: Path,
) -> None:
    db = SQLite(tmp_path / "c.db", timeout=0)
    Storage(CountLimit(10), Codec("raw"), db)
    db.set("k", b"v")
    with sqlite3.connect(db.path, isolation_level=None) as other:
        other.execute("BEGIN IMMEDIATE")
        for action, message in [
            (lambda: db.set("k", b"new"), "cannot write 'k'"),
            (lambda: db.add("fresh", b"v"), "cannot add 'fresh'"),
        ]:
            with pytest.raises(BackendError, match=f": {message}: database is locked$"):
                action()
        other.execute("ROLLBACK")
    other.close()
    assert db.get_many(["k", "fresh"]) == {"k": b"v"}


def test_a_value_larger_than_the_size_bound_is_refused_naming_its_key(tmp_path: Path) -> None:
    db = SQLite(tmp_path / "c.db")
    Storage(Codec("raw"), SizeLimit(4), db)
    db.set("k", b"1234")
    with pytest.raises(
        ValueTooLargeError,
        match=r"^the value of 'big' weighs 5 bytes, more than the whole limit of 4: not stored$",
    ):
        db.add("big", b"12345")
    with pytest.raises(ValueTooLargeError, match=r"^the value of 'k' weighs 5 bytes"):
        db.modify("k", lambda old: old + b"5")
    with pytest.raises(ValueTooLargeError, match=r"^the value of 'new' weighs 6 bytes"):
        db.modify("new", lambda old: b"123456")
    with pytest.raises(ValueTooLargeError, match=r"^the value of 'big' weighs 5 bytes"):
        db.set_many({"small": b"1", "big": b"12345"})
    with pytest.raises(ValueTooLargeError, match=r"^the value of 'big' weighs 5 bytes"):
        db.set("big", b"12345")
    assert db.get_many(["k", "big", "new", "small"]) == {"k": b"1234"}  # nothing written


# -- the book-keeping of reads, and locks ------------------------------------------------


def _order_on_disk(path: Path) -> list[bytes]:
    """The order of use another connection sees: what this one has written of it."""
    with sqlite3.connect(path) as other:
        found = [key for (key,) in other.execute("SELECT key FROM uses ORDER BY used")]
    other.close()
    return found


def test_reads_kept_while_locked_are_written_a_batch_of_reads_later(tmp_path: Path) -> None:
    db = SQLite(tmp_path / "c.db")
    storage = Storage(CountLimit(10), Codec("raw"), db)
    storage.set_many({"a": b"1", "b": b"2", "c": b"3"})
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    for _ in range(_USES_BATCH):
        assert storage["a"] == b"1"  # the batch is due: its write is tried, and put off
    other.execute("ROLLBACK")
    other.close()
    assert _order_on_disk(db.path) == [b"a", b"b", b"c"]
    for _ in range(_USES_BATCH - 1):
        assert storage["b"] == b"2"  # the next try is a whole batch of reads later
    assert _order_on_disk(db.path) == [b"a", b"b", b"c"]
    assert storage["b"] == b"2"
    assert _order_on_disk(db.path) == [b"c", b"a", b"b"]


def _operational(message: str, code: int | None = None) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    if code is not None:
        exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("exc", "busy"),
    [
        (_operational("any words", 5), True),  # SQLITE_BUSY
        (_operational("any words", 6), True),  # SQLITE_LOCKED
        (_operational("any words", 5 | 2 << 8), True),  # SQLITE_BUSY_SNAPSHOT
        (_operational("database is locked", 1), False),  # the code decides, not the words
        (_operational("database is locked"), True),  # Python 3.10: the message
        (_operational("database table is locked"), True),
        (_operational("disk I/O error"), False),
    ],
)
def test_busy_is_a_lock_held_elsewhere_by_code_or_else_by_message(
    exc: sqlite3.OperationalError, busy: bool
) -> None:
    assert _busy(exc) is busy


def test_the_version_grows_only_with_commits_of_other_connections(db: SQLite) -> None:
    first = db.version()
    assert db.version() == first
    db.set("mine", b"1")  # this connection's own commit: not a change from elsewhere
    assert db.version() == first
    with sqlite3.connect(db.path) as other:
        other.execute("INSERT INTO entries VALUES (?, ?, NULL)", (b"theirs", b"2"))
    other.close()
    second = db.version()
    assert second > first
    assert db.version() == second
    assert db.get("theirs") == b"2"


def test_a_failed_check_for_changes_names_the_action(db: SQLite) -> None:
    db.version()
    # Another connection commits, so that the check asks SQLite (while nobody commits it
    # only reads the WAL index)...
    SQLite(db.path).set("theirs", b"1")
    db._local.db.close()  # ...on this thread's connection, closed underneath
    with pytest.raises(BackendError, match=r": cannot check for changes: Cannot operate on a"):
        db.version()


# -- keys ----------------------------------------------------------------------------------


def test_a_key_with_a_lone_surrogate_round_trips(db: SQLite) -> None:
    key = "half \ud800 of a pair"
    db.set(key, b"v")
    assert db.get(key) == b"v"
    assert list(db.keys()) == [key]
    assert _rows(db.path) == {key.encode("utf-8", "surrogatepass"): (b"v", None)}


def test_a_key_that_is_not_a_str_is_refused_naming_it(db: SQLite) -> None:
    with pytest.raises(InvalidKeyError, match=r"^keys are str, not bytes: b'k'$"):
        db.set(b"k", b"v")  # type: ignore[arg-type]
    assert _rows(db.path) == {}


# -- options -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("synchronous", "level"), [("OFF", 0), ("NORMAL", 1), ("FULL", 2), ("EXTRA", 3)]
)
def test_each_synchronous_level_is_accepted_and_in_effect(
    tmp_path: Path, synchronous: str, level: int
) -> None:
    db = SQLite(tmp_path / "c.db", synchronous=synchronous)
    db.set("k", b"v")
    assert db._local.db.execute("PRAGMA synchronous").fetchone() == (level,)
    assert db.get("k") == b"v"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"synchronous": "full"},
            "^synchronous must be OFF, NORMAL, FULL or EXTRA, not 'full'$",
        ),
        ({"timeout": True}, "^timeout must be a number of seconds$"),
        ({"timeout": "30"}, "^timeout must be a number of seconds$"),
        ({"timeout": -1}, "^timeout must be a finite number of seconds, at least 0$"),
        ({"timeout": float("inf")}, "^timeout must be a finite number of seconds, at least 0$"),
    ],
)
def test_a_bad_option_is_refused_saying_what_it_must_be(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SQLite(tmp_path / "c.db", **options)
    assert not (tmp_path / "c.db").exists()  # refused before the file is made


def test_a_folder_is_refused_as_a_database(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"is a folder: SQLite needs a database file$"):
        SQLite(tmp_path)


@pytest.mark.parametrize(
    ("setup", "version"),
    [
        ("PRAGMA user_version = 3", 3),  # a newer pystorage's
        ("CREATE TABLE entries (key BLOB PRIMARY KEY, value BLOB)", 0),  # an older one's
    ],
)
def test_a_database_of_another_format_is_refused(tmp_path: Path, setup: str, version: int) -> None:
    path = tmp_path / "c.db"
    with sqlite3.connect(path) as other:
        other.execute(setup)
    other.close()
    path.chmod(0o600)
    with pytest.raises(
        ConfigurationError,
        match=rf"holds a cache of another format \({version}\) than this pystorage's \(2\): "
        r"delete it, or open it with the version that wrote it$",
    ):
        SQLite(path)


def test_a_database_of_this_format_opens_again(tmp_path: Path) -> None:
    SQLite(tmp_path / "c.db").set("k", b"v")
    assert SQLite(tmp_path / "c.db").get("k") == b"v"


def test_missing_folders_are_made_and_the_database_folder_is_private(tmp_path: Path) -> None:
    SQLite(tmp_path / "a" / "b" / "c.db").set("k", b"v")
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700


def test_each_connection_waits_for_a_lock_up_to_the_timeout(tmp_path: Path) -> None:
    db = SQLite(tmp_path / "c.db", timeout=2.5)
    db.set("k", b"v")
    assert db._local.db.execute("PRAGMA busy_timeout").fetchone() == (2500,)


def test_a_database_removed_underneath_is_a_backend_error_naming_it(tmp_path: Path) -> None:
    db = SQLite(tmp_path / "c.db")
    db.close()
    (tmp_path / "c.db").unlink()
    with pytest.raises(BackendError, match=r"^the database .*c\.db was removed$"):
        db.set("k", b"v")  # a new connection checks the files first

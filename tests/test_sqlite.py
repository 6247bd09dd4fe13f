"""The SQLite backend: deadlines in a column, processes, forks, crashes, ownership."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pystorage
from pystorage import AsyncStorage, Storage, StorageProvider
from pystorage.errors import BackendError, ConfigurationError
from pystorage.layers import Codec, CountLimit, Expiry, SizeLimit, SQLite
from pystorage.layers.limit import Limit
from tests.helpers import FakeClock


def test_deadlines_are_a_column_and_expired_rows_never_come_back(tmp_path: Path) -> None:
    clock = FakeClock()
    storage = Storage(Expiry(clock=clock), Codec("pickle"), SQLite(tmp_path / "c.db"))
    storage.set("short", ["pystorage.expires", None, 1], ttl=10)
    storage["forever"] = "f"
    with sqlite3.connect(tmp_path / "c.db") as db:
        rows = dict(db.execute("SELECT key, deadline FROM entries").fetchall())
    assert rows == {b"short": clock.now + 10, b"forever": None}
    clock.now += 11
    assert "short" not in storage and sorted(storage) == ["forever"] and len(storage) == 1
    assert storage.get_many(["short", "forever"]) == {"forever": "f"}
    assert storage.get("short") is None
    with sqlite3.connect(tmp_path / "c.db") as db:  # the read removed it
        assert db.execute("SELECT COUNT(*) FROM entries").fetchone() == (1,)
    assert storage.stats()["expirations"] == 1


def test_expire_removes_every_expired_row(tmp_path: Path) -> None:
    clock = FakeClock()
    storage = Storage(Expiry(clock=clock), Codec("pickle"), SQLite(tmp_path / "c.db"))
    storage.set_many({str(i): i for i in range(50)}, ttl=1)
    storage["kept"] = 1
    clock.now += 2
    assert storage.expire() == 50
    assert list(storage) == ["kept"]


def test_a_database_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    SQLite(path).close()
    os.chown(path, 65534, 65534)
    with pytest.raises(BackendError, match="belongs to user 65534"):
        SQLite(path)
    assert len(Storage(Codec("raw"), SQLite(path, trust_others=True))) == 0


def test_bad_options_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        SQLite(tmp_path / "c.db", synchronous="SOMETIMES")
    with pytest.raises(ConfigurationError):
        SQLite(tmp_path / "c.db", timeout=float("inf"))
    with pytest.raises(ConfigurationError):
        SQLite(tmp_path)  # a folder, not a file


def _count_up(path: Path, start: multiprocessing.synchronize.Event, number: int) -> None:
    storage = Storage(Codec("json"), SQLite(path))
    start.wait(timeout=60)
    for index in range(200):
        storage.set_many({f"w{number}-{index}": index, f"shared-{index % 7}": number})


def test_processes_write_at_once_and_every_write_lands(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    storage = Storage(Codec("json"), SQLite(path))
    storage["before"] = 0  # used before the fork: the children must open their own
    context = multiprocessing.get_context("fork")
    start = context.Event()
    children = [context.Process(target=_count_up, args=(path, start, n)) for n in range(4)]
    for child in children:
        child.start()
    start.set()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    assert len(storage) == 1 + 4 * 200 + 7
    assert all(storage[f"w{n}-199"] == 199 for n in range(4))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


WRITER = """
import sys
from pystorage import Storage
from pystorage.layers import Codec, SQLite
storage = Storage(Codec("raw"), SQLite(sys.argv[1]))
index = 0
while True:
    storage[f"k{index % 50}"] = bytes([index % 256]) * (1000 + index % 5000)
    print(index, flush=True)
    index += 1
"""


def test_a_writer_killed_mid_write_leaves_a_sound_database(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    for _ in range(5):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None
        acknowledged = -1
        deadline = time.monotonic() + 60
        while acknowledged < 200:  # wait until it has written for a while
            acknowledged = int(writer.stdout.readline())
            assert time.monotonic() < deadline
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        storage = Storage(Codec("raw"), SQLite(path))
        for key in storage:
            value = storage[key]
            assert len(set(value)) == 1 and 1000 <= len(value) < 6000  # whole, never torn
        # The last acknowledged write is there, or a later write of the same key.
        value = storage[f"k{acknowledged % 50}"]
        assert any(
            value == bytes([index % 256]) * (1000 + index % 5000)
            for index in range(acknowledged, acknowledged + 50 * 10_000, 50)
        )
        storage.close()


LIMITED_WRITER = """
import sys
from pystorage import Storage
from pystorage.layers import Codec, CountLimit, SizeLimit, SQLite
storage = Storage(Codec("raw"), CountLimit(30), SizeLimit(100_000), SQLite(sys.argv[1]))
index = 0
while True:
    storage.set_many({f"k{index % 97}-{n}": bytes([index % 256]) * (1000 + index % 5000)
                      for n in range(1 + index % 3)})
    print(index, flush=True)
    index += 1
"""


def test_a_writer_killed_while_evicting_leaves_exact_totals_within_the_bounds(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    for _ in range(5):
        writer = subprocess.Popen(
            [sys.executable, "-c", LIMITED_WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None
        deadline = time.monotonic() + 60
        while int(writer.stdout.readline()) < 200:  # every write beyond 30 evicts
            assert time.monotonic() < deadline
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            count, size = db.execute(
                "SELECT count(*), ifnull(sum(length(value)), 0) FROM entries"
            ).fetchone()
            assert db.execute("SELECT count, bytes FROM totals").fetchone() == (count, size)
        assert count <= 30
        assert size <= 100_000
        storage = Storage(Codec("raw"), SQLite(path))
        for key in storage:
            value = storage[key]
            assert len(set(value)) == 1 and 1000 <= len(value) < 6000  # whole, never torn
        storage.close()


def test_a_value_of_tens_of_megabytes_round_trips(tmp_path: Path) -> None:
    storage = Storage(Codec("raw"), SQLite(tmp_path / "c.db"))
    big = os.urandom(1 << 20) * 30  # 30 MiB
    storage["big"] = big
    storage["small"] = b"s"
    assert storage["big"] == big
    assert storage.get_many(["big", "small"]) == {"big": big, "small": b"s"}
    storage.close()
    assert Storage(Codec("raw"), SQLite(tmp_path / "c.db"))["big"] == big


OTHER_WRITER = """
import sys
from pystorage import Storage
from pystorage.layers import Codec, SQLite
storage = Storage(Codec("json"), SQLite(sys.argv[1]))
storage.set_many({f"b{i}": i for i in range(100)})
storage.close()
"""
COUNT_A_KEYS = """
import sqlite3, sys
query = "SELECT count(*) FROM entries WHERE substr(key, 1, 1) = x'61'"
print(sqlite3.connect(sys.argv[1]).execute(query).fetchone()[0])
"""


def _run(script: str, path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_a_second_open_in_one_process_loses_no_commit(tmp_path: Path) -> None:
    # Opening a database used to open and close a descriptor of it, which dropped every
    # POSIX lock of this process's other connection: the other process then took itself
    # for the last user and deleted the WAL at its close, with this process's commits.
    path = tmp_path / "c.db"
    first = Storage(Codec("json"), SQLite(path))
    first["first"] = 0
    second = Storage(Codec("json"), SQLite(path))
    _run(OTHER_WRITER, path)
    first.set_many({f"a{i}": i for i in range(100)})
    assert _run(COUNT_A_KEYS, path) == "100"  # a fresh process sees every commit
    first.close()
    second.close()
    assert _run(COUNT_A_KEYS, path) == "100"
    assert len(Storage(Codec("json"), SQLite(path))) == 201


def test_a_new_database_is_private_and_an_odd_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    SQLite(path).close()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    link = tmp_path / "link.db"
    link.symlink_to(path)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        SQLite(link)


@pytest.mark.parametrize("side", ["-wal", "-shm", "-journal"])
def test_a_side_file_another_user_planted_is_refused_before_it_is_read(
    tmp_path: Path, side: str
) -> None:
    # A folder others can write: while no process has the database open, another user
    # drops a WAL beside it. SQLite would replay it into the victim's next open.
    path = tmp_path / "c.db"
    storage = Storage(Codec("json"), SQLite(path))
    storage["k"] = "mine"
    storage.close()
    planted = Path(f"{path}{side}")
    planted.write_bytes(b"")
    os.chown(planted, 65534, 65534)
    with pytest.raises(BackendError, match=f"{side} belongs to user 65534"):
        SQLite(path)
    assert Storage(Codec("json"), SQLite(path, trust_others=True))["k"] == "mine"


def test_a_side_file_that_is_a_fifo_or_a_link_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    SQLite(path).close()
    os.mkfifo(f"{path}-wal")
    with pytest.raises(ConfigurationError, match="-wal is not a regular file"):
        SQLite(path)
    os.unlink(f"{path}-wal")
    os.symlink(tmp_path / "elsewhere", f"{path}-shm")
    with pytest.raises(ConfigurationError, match="-shm is not a regular file"):
        SQLite(path)


def test_the_repr_shows_the_limits_handed_down_to_sql(tmp_path: Path) -> None:
    # A CountLimit/SizeLimit above SQLite hands its bound to SQL and leaves the stack:
    # the repr of the backend must say it is bounded, and how.
    path = tmp_path / "c.db"
    url = f"sqlite://{path}?codec=json&limit=10&max_bytes=1000&ttl=60&stats=1"
    with pystorage.open(url) as storage:
        assert not any(isinstance(layer, Limit) for layer in storage.layers)
        assert repr(storage.layers[-1]).endswith(", limit=10, max_bytes=1000, eviction='used')")
        assert "limit=10, max_bytes=1000, eviction='used')" in repr(storage)
    preset = StorageProvider().create(StorageProvider.STORAGE_SQLITE, path, limit=5)
    with preset:
        assert repr(preset).endswith(", limit=5, eviction='used'))")
    with Storage(CountLimit(7, eviction="stored"), Codec("raw"), SQLite(path)) as stored:
        assert repr(stored).endswith(", limit=7, eviction='stored'))")
    with Storage(Codec("raw"), SQLite(path)) as unbounded:
        assert repr(unbounded).endswith("trust_others=False))")


def test_the_repr_of_an_async_stack_shows_the_limits_handed_down_to_sql(tmp_path: Path) -> None:
    async def main() -> str:
        storage = AsyncStorage(Codec("raw"), SizeLimit(500), SQLite(tmp_path / "c.db"))
        async with storage:
            await storage.set("k", b"v")
            return repr(storage)

    assert asyncio.run(main()).endswith(", max_bytes=500, eviction='used')))")  # OffLoop(...)


def test_opening_an_existing_database_and_reading_commit_nothing(tmp_path: Path) -> None:
    # A reader (a `pystorage get`) paid a commit at its open and a checkpoint at its close
    # when every open ran the schema script; another connection sees any commit.
    path = tmp_path / "c.db"
    writer = Storage(Codec("pickle"), SQLite(path))
    writer["k"] = 1
    writer.close()
    watcher = sqlite3.connect(path)
    try:
        (before,) = watcher.execute("PRAGMA data_version").fetchone()
        reader = Storage(Codec("pickle"), SQLite(path))
        assert reader["k"] == 1
        reader.close()
        (after,) = watcher.execute("PRAGMA data_version").fetchone()
        assert after == before
        # The probe sees a commit when there is one.
        again = Storage(Codec("pickle"), SQLite(path))
        again["k"] = 2
        again.close()
        assert watcher.execute("PRAGMA data_version").fetchone()[0] != before
    finally:
        watcher.close()

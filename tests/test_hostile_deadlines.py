"""Hostile tests of deadlines kept by the backends (issue 10, commits 1f6184f..9af8728).

Each test pins down one way found to break a guarantee of the new model: a value comes
back as written or the read raises; removing an expired entry never removes anything
live; a Tier's front never keeps an older value; nothing deadlocks, before or after a
fork; the count limit holds; descriptors are released.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from pystorage import Storage
from pystorage.errors import BackendError, InvalidKeyError
from pystorage.layers import LRU, Codec, CountLimit, Files, Memory, Redis, Tier, Wrapper
from tests.helpers import CHILD_DEADLINE, FakeClock, run_in_child, unique


def entry_files(folder: Path, ending: str) -> int:
    """The entry files of a storage (hidden files are its lock, marker and temp files)."""
    return sum(
        1 for name in os.listdir(folder) if name.endswith(ending) and not name.startswith(".")
    )


# -- (4) no deadlock -----------------------------------------------------------------------


def test_an_expired_get_inside_the_exclusive_section_does_not_deadlock(tmp_path: Path) -> None:
    # A layer (or the CLI) reading inside exclusive() must be able to meet an expired file:
    # removing it must not wait for the thread lock the section itself holds.
    clock = FakeClock()
    files = Files(tmp_path / "store", clock=clock)
    storage = Storage(Codec("pickle"), files)
    storage.set("a", 1, ttl=1)
    storage.set("b", 2, ttl=1)
    clock.now += 5

    def read_inside() -> tuple[Any, int]:
        with files.exclusive():
            return storage.get("a"), storage.expire()

    assert run_in_child(read_inside) == (None, 1)


# -- (5) fork ------------------------------------------------------------------------------


@contextmanager
def busy_writer(storage: Storage) -> Iterator[None]:
    """A thread writing to ``storage`` without pause while the caller forks."""
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            storage.set(f"busy{i % 50}", i, ttl=100)
            i += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("kind", ["memory", "lru"])
def test_a_child_forked_while_another_thread_writes_can_write(kind: str) -> None:
    # gunicorn --preload or a multiprocessing pool forks whatever another thread is
    # doing: a lock that thread held at the fork must not be held forever in the child.
    storage = Storage(Memory() if kind == "memory" else LRU(100))
    storage.set("before", 0, ttl=100)

    def child() -> Any:
        storage.set("x", 1, ttl=100)
        storage["y"] = 2
        return storage["x"], storage["y"], "before" in storage, len(storage) >= 2

    outcomes = []
    with busy_writer(storage):
        for _ in range(12):
            time.sleep(0.002)  # let the writer run into its lock
            outcomes.append(run_in_child(child))
    assert outcomes == [(1, 2, True, True)] * 12


class _BlockingFront(LRU):
    """An LRU whose writes wait for a signal: a Tier writing to it holds its own lock."""

    def __init__(self, maxsize: int, entered: threading.Event, release: threading.Event):
        super().__init__(maxsize)
        object.__setattr__(self, "entered", entered)
        object.__setattr__(self, "release", release)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if key == "slow":
            self.entered.set()  # type: ignore[attr-defined]
            self.release.wait()  # type: ignore[attr-defined]
        super().set(key, value, ttl)


def test_a_child_forked_during_a_tier_write_can_use_the_tier(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()
    front = _BlockingFront(10, entered, release)
    storage = Storage(Codec("pickle"), Tier(front), Files(tmp_path / "store"))

    def child() -> Any:
        storage["k"] = 2
        return storage["k"]

    thread = threading.Thread(target=storage.__setitem__, args=("slow", 1))
    thread.start()
    try:
        assert entered.wait(CHILD_DEADLINE)
        outcome = run_in_child(child)
    finally:
        release.set()
        thread.join()
    assert outcome == 2


def test_a_child_forked_during_a_memoized_call_can_call_it(tmp_path: Path) -> None:
    # The parent's thread holds the key's lease on the folder, and waits for the child:
    # the child waits for that holder like any other process, at most one lease, then
    # takes the lock over and computes (it never hangs on a lock of its parent's).
    storage = Storage(Codec("pickle"), Files(tmp_path / "store", lock_timeout=1.0))
    entered, release = threading.Event(), threading.Event()

    @storage.memoize(key="slow")  # a closure over events: named, not keyed by its cells
    def slow(x: int) -> int:
        if threading.current_thread() is not threading.main_thread():
            entered.set()
            release.wait()
        return x * 2

    thread = threading.Thread(target=slow, args=(21,))
    thread.start()
    try:
        assert entered.wait(CHILD_DEADLINE)
        outcome = run_in_child(lambda: slow(21))
    finally:
        release.set()
        thread.join()
    assert outcome == 42


def test_a_child_forked_during_an_exclusive_section_can_expire(tmp_path: Path) -> None:
    clock = FakeClock()
    files = Files(tmp_path / "store", suffix="v", clock=clock)
    storage = Storage(CountLimit(20), Codec("pickle"), files)
    storage.set("old", 1, ttl=1)
    clock.now += 5
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with files.exclusive():
            entered.set()
            release.wait()

    def child() -> Any:
        # Nothing here needs the parent's section (a limited write would rightly wait).
        plain = Storage(Codec("pickle"), files)
        plain["new"] = 2
        return storage.get("old"), plain["new"], storage.expire()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert entered.wait(CHILD_DEADLINE)
        outcome = run_in_child(child)
    finally:
        release.set()
        thread.join()
    assert outcome == (None, 2, 0)  # get removed "old" itself


@pytest.mark.parametrize("ttl", [None, 0.05])
def test_four_forked_writers_keep_a_count_limited_folder_bounded(
    tmp_path: Path, ttl: float | None
) -> None:
    folder = tmp_path / "store"
    storage = Storage(CountLimit(20), Codec("pickle"), Files(folder, suffix="v"))
    for i in range(30):  # used before the fork: its lock descriptor is open
        storage.set(f"p{i}", i, ttl=ttl)
    pids = []
    for writer in range(4):
        pid = os.fork()
        if pid == 0:
            try:
                for i in range(150):
                    storage.set(f"w{writer}-{i}", i, ttl=ttl)
            finally:
                os._exit(0)
        pids.append(pid)
    peak, running = 0, set(pids)
    give_up = time.monotonic() + 120
    while running and time.monotonic() < give_up:
        peak = max(peak, entry_files(folder, ".v"))
        running = {pid for pid in running if not os.waitpid(pid, os.WNOHANG)[0]}
    for pid in running:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert not running, "the writers did not finish"
    # Expired files are files too: an expiring cache must not grow past its limit either.
    assert peak <= 21, peak


# -- a count limit over expiring files -----------------------------------------------------


def test_evicting_expired_files_removes_them(tmp_path: Path) -> None:
    clock = FakeClock()
    folder = tmp_path / "store"
    storage = Storage(CountLimit(5), Codec("pickle"), Files(folder, suffix="v", clock=clock))
    for n in range(100):
        storage.set(f"k{n}", n, ttl=2)
        clock.now += 1
    assert len(storage) <= 5
    assert entry_files(folder, ".v") <= 6  # never 100 files for a limit of 5


def test_expired_files_do_not_pile_up_between_two_writers(tmp_path: Path) -> None:
    # Each writer rebuilds its index from the folder when the other wrote: expired files
    # are not in it, so no eviction ever removes them unless the rebuild does.
    clock = FakeClock()
    folder = tmp_path / "store"
    first, second = (
        Storage(CountLimit(5), Codec("pickle"), Files(folder, suffix="v", clock=clock))
        for _ in range(2)
    )
    for n in range(60):
        (first if n % 2 else second).set(f"k{n}", n, ttl=2)
        clock.now += 1
    assert entry_files(folder, ".v") <= 6


def test_deleting_an_expired_file_removes_it_and_says_missing(tmp_path: Path) -> None:
    clock = FakeClock()
    folder = tmp_path / "store"
    storage = Storage(Codec("pickle"), Files(folder, suffix="v", clock=clock))
    storage.set("k", 1, ttl=1)
    clock.now += 5
    with pytest.raises(KeyError):
        del storage["k"]
    assert entry_files(folder, ".v") == 0


@pytest.mark.parametrize("kind", ["memory", "lru"])
def test_deleting_an_expired_entry_says_missing_in_memory_too(kind: str) -> None:
    # (6): Files says KeyError for a key that get, in and len call missing; so must Memory.
    clock = FakeClock()
    backend = Memory(clock=clock) if kind == "memory" else LRU(10, clock=clock)
    storage = Storage(backend)
    storage.set("k", 1, ttl=1)
    clock.now += 5
    assert "k" not in storage
    with pytest.raises(KeyError):
        del storage["k"]


class _MissThenWrite(Wrapper):
    """Runs ``meanwhile`` after a read below misses, before the miss reaches the layers
    above: another thread's write landing in that instant, without the timing."""

    meanwhile: Callable[[str], None] | None = None

    def get(self, key: str) -> Any:
        try:
            return self._inner.get(key)
        except KeyError:
            if self.meanwhile is not None:
                meanwhile, self.meanwhile = self.meanwhile, None
                meanwhile(key)
            raise


def test_a_miss_racing_a_write_does_not_drop_the_write_from_the_count(tmp_path: Path) -> None:
    race = _MissThenWrite()
    folder = tmp_path / "store"
    storage = Storage(CountLimit(3), race, Codec("pickle"), Files(folder, suffix="v"))
    for n in range(10):
        race.meanwhile = lambda key: storage.__setitem__(key, "written meanwhile")
        assert storage.get(f"k{n}") is None
    assert entry_files(folder, ".v") <= 3


# -- (7) descriptors and work per operation ----------------------------------------------


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_ten_thousand_short_threads_writing_leak_no_descriptor(tmp_path: Path) -> None:
    storage = Storage(CountLimit(20), Codec("pickle"), Files(tmp_path / "store"))
    storage["warm"] = 0
    before = _open_descriptors()
    for i in range(10_000):
        thread = threading.Thread(target=storage.set, args=(f"k{i % 50}", i), kwargs={"ttl": 60})
        thread.start()
        thread.join()
    assert _open_descriptors() <= before + 2


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_close_releases_every_descriptor_a_storage_opened(tmp_path: Path) -> None:
    storage = Storage(CountLimit(20), Codec("pickle"), Files(tmp_path / "store"))
    before = _open_descriptors()
    pool_like = threading.Barrier(9)  # the threads stay alive, as in a pool

    def write_and_stay(i: int) -> None:
        storage[f"k{i}"] = i
        pool_like.wait()
        pool_like.wait()

    threads = [threading.Thread(target=write_and_stay, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    pool_like.wait()
    storage.close()
    closed = _open_descriptors()
    pool_like.wait()
    for thread in threads:
        thread.join()
    assert closed <= before


# -- descriptor pressure: an unreadable deadline is not a past one --------------------------


def _with_descriptors_left(left: int, work: Callable[[], Any]) -> Any:
    """``work()`` with only ``left`` descriptors free in this process: the limit is set a
    little above what it holds (a test worker may already hold hundreds), then filled."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = len(os.listdir("/dev/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(held + 64, soft), hard))
    taken = []
    try:
        while True:
            taken.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    for _ in range(left):
        os.close(taken.pop())
    try:
        return work()
    except BackendError as exc:
        return exc
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_sweep_short_of_descriptors_removes_no_live_entry(tmp_path: Path) -> None:
    storage = Storage(Codec("pickle"), Files(tmp_path / "store"))
    storage.set_many({f"k{i}": i for i in range(5)}, ttl=3600)

    def sweep_in_a_new_thread() -> Any:
        outcome: list[Any] = []
        # A new thread opens its gate descriptor during the sweep: the last one free.
        thread = threading.Thread(
            target=lambda: outcome.append(_with_descriptors_left(1, storage.expire))
        )
        thread.start()
        thread.join()
        return outcome[0]

    outcome = run_in_child(sweep_in_a_new_thread)
    assert outcome == 0 or isinstance(outcome, BackendError), outcome
    assert sorted(storage) == [f"k{i}" for i in range(5)]


def test_in_short_of_descriptors_raises_rather_than_says_missing(tmp_path: Path) -> None:
    storage = Storage(Codec("pickle"), Files(tmp_path / "store"))
    storage.set("k", 1, ttl=3600)
    outcome = run_in_child(lambda: _with_descriptors_left(0, lambda: "k" in storage))
    assert outcome is True or isinstance(outcome, BackendError), outcome


def test_a_listing_short_of_descriptors_does_not_leave_long_keys_out(tmp_path: Path) -> None:
    storage = Storage(Codec("pickle"), Files(tmp_path / "store"))
    storage["k" * 300] = 1  # a hashed name: listing reads the key from the file
    outcome = run_in_child(lambda: _with_descriptors_left(1, lambda: len(storage)))
    assert outcome == 1 or isinstance(outcome, BackendError), outcome


# -- (1) values as written: long keys and the size bound ----------------------------------


def test_a_long_key_with_a_value_at_the_size_bound_reads_back(tmp_path: Path) -> None:
    storage = Storage(Codec("raw"), Files(tmp_path / "store", max_value_bytes=1000))
    key = "k" * 600  # stored under a hash, the key on the file's first line
    for ttl in (None, 60.0):
        storage.set(key, b"x" * 1000, ttl=ttl)
        assert storage[key] == b"x" * 1000


def test_a_long_key_is_listed_or_refused(tmp_path: Path) -> None:
    storage = Storage(Codec("raw"), Files(tmp_path / "store", max_value_bytes=100))
    key = "k" * 1000
    try:
        storage[key] = b"v"
    except InvalidKeyError:
        return  # refused: fine, as S3 refuses keys it could store but never list
    assert key in storage
    assert list(storage) == [key]
    assert len(storage) == 1


def test_a_folder_created_by_a_concurrent_opener_is_not_taken_for_format_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two processes open a new folder at once: the other one creates the marker and
    # writes an entry between this one's look for the marker and its scan.
    folder = tmp_path / "store"
    folder.mkdir()
    real_lexists = os.path.lexists

    def other_process_wins(path: str) -> bool:
        found = real_lexists(path)
        if path.endswith(".pystorage") and not found:
            monkeypatch.setattr(os.path, "lexists", real_lexists)
            Storage(Codec("pickle"), Files(folder))["theirs"] = 1
        return found

    monkeypatch.setattr(os.path, "lexists", other_process_wins)
    storage = Storage(Codec("pickle"), Files(folder))
    assert storage["theirs"] == 1


def test_a_marker_removed_by_a_temp_cleaner_comes_back_at_the_next_write(
    tmp_path: Path,
) -> None:
    # systemd-tmpfiles ages files by their times: .pystorage is never written again after
    # it is made, so in /tmp it goes after 10 days while the entries, written since, stay.
    folder = tmp_path / "store"
    storage = Storage(Codec("pickle"), Files(folder))
    storage["a"] = 1
    (folder / ".pystorage").unlink()
    storage["b"] = 2  # the gate of this write, and of every later one, is the marker
    assert Storage(Codec("pickle"), Files(folder))["b"] == 2  # not refused as format 0


# -- (3) Tier ------------------------------------------------------------------------------


class _StoresThenFails(Wrapper):
    """Stores the value, then fails: a server that took a write whose reply was lost."""

    failing: bool = False

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._inner.set(key, value, ttl)
        if self.failing:
            raise BackendError("the reply was lost")

    def set_many(self, items: Any, ttl: float | None = None) -> None:
        self._inner.set_many(items, ttl)
        if self.failing:
            raise BackendError("the reply was lost")


@pytest.mark.parametrize("batch", [False, True])
def test_a_failed_write_leaves_no_older_value_in_the_front(batch: bool) -> None:
    below = _StoresThenFails()
    storage = Storage(Tier(LRU(10)), below, Memory())
    storage["k"] = "old"
    assert storage["k"] == "old"  # in front now
    below.failing = True
    with pytest.raises(BackendError):
        if batch:
            storage.set_many({"k": "new"})
        else:
            storage["k"] = "new"
    below.failing = False
    # Whatever the write did, the front must not answer with what the storage no longer holds.
    assert storage["k"] == below.get("k") == "new"


def test_a_redis_entry_read_with_its_ttl_has_time_left(redis_url: str) -> None:
    # PTTL answers 0 in the last millisecond: a TTL of 0 is no TTL any write accepts
    # (pystorage copy writes each entry with the TTL it read).
    client = redis.Redis.from_url(redis_url)
    storage = Storage(Codec("raw"), Redis(client, prefix=unique("hostile") + ":"))
    try:
        for _ in range(20):
            storage.set("k", b"v", ttl=0.02)
            while True:
                try:
                    _, ttl = storage.get_with_ttl("k")
                    found = storage.get_many_with_ttl(["k"])
                except KeyError:
                    break
                assert ttl is not None and ttl > 0, ttl
                assert all(left is not None and left > 0 for _, left in found.values()), found
                if not found:
                    break
    finally:
        storage.clear()
        client.close()

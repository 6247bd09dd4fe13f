"""CountLimit and STORAGE_DISKLRU: bounded count, LRU order, restarts, other processes."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage, StorageProvider
from pystorage.errors import BackendError, ConfigurationError
from pystorage.layers import LRU, Codec, CountLimit, Expiry, Files, Memory, Stats
from tests.helpers import FakeClock

SUFFIX = ".storage.lru"


def disklru(path: Path, limit: int = 100) -> Storage:
    storage: Storage = StorageProvider().create(
        StorageProvider.STORAGE_DISKLRU, limit=limit, path=path
    )
    return storage


def files_in(path: Path) -> set[str]:
    names = os.listdir(path)
    return {name[: -len(SUFFIX)] for name in names if name.endswith(SUFFIX) and name[0] != "."}


def test_the_readme_example(tmp_path: Path) -> None:
    storage = disklru(tmp_path, limit=100)
    for i in range(150):
        storage[f"key.{i}"] = f"value.{i}"
    assert len(storage) == 100
    assert files_in(tmp_path) == {f"key.{i}" for i in range(50, 150)}
    assert storage["key.149"] == "value.149"


def test_a_read_protects_a_key_from_the_next_eviction(tmp_path: Path) -> None:
    storage = disklru(tmp_path, limit=3)
    for key in "abc":
        storage[key] = key
    assert storage["a"] == "a"
    storage["d"] = "d"
    assert sorted(storage) == ["a", "c", "d"]
    assert storage.get_many(["c"]) == {"c": "c"}  # batch reads count as use too
    storage["e"] = "e"
    assert sorted(storage) == ["c", "d", "e"]


def test_order_and_limit_survive_a_restart(tmp_path: Path) -> None:
    first = disklru(tmp_path, limit=5)
    for key in "abcde":
        first[key] = key
    assert first["a"] == "a"  # order of use now: b c d e a
    first.close()
    second = disklru(tmp_path, limit=5)
    assert len(second) == 5
    second["f"] = "f"
    second["g"] = "g"
    assert files_in(tmp_path) == set("adefg")


def test_files_added_or_removed_behind_its_back(tmp_path: Path) -> None:
    storage = disklru(tmp_path, limit=3)
    for key in "abc":
        storage[key] = key
    (tmp_path / f"a{SUFFIX}").unlink()
    stranger = disklru(tmp_path / "elsewhere", limit=10)
    stranger["x"] = "x"
    os.replace(tmp_path / "elsewhere" / f"x{SUFFIX}", tmp_path / f"x{SUFFIX}")
    with pytest.raises(KeyError):
        storage["a"]
    assert len(storage) == 3  # b, c and the stranger x: the count corrected itself
    storage["d"] = "d"
    storage["e"] = "e"
    assert len(storage) == 3
    assert len(files_in(tmp_path)) == 3


def test_limit_must_be_positive() -> None:
    with pytest.raises(ConfigurationError):
        CountLimit(0)


def test_over_any_backend() -> None:
    storage = Storage(CountLimit(2), Codec("json"), Memory())
    for key in "abc":
        storage[key] = [key]
    assert sorted(storage) == ["b", "c"]
    storage.set_many({"x": 1, "y": 2, "z": 3})
    assert sorted(storage) == ["y", "z"]
    storage.delete_many(["y"])
    assert len(storage) == 1


def _writer(path: str, name: str, count: int, limit: int, done: object) -> None:
    storage = disklru(Path(path), limit=limit)
    for i in range(count):
        storage[f"{name}.{i}"] = "x" * (i % 50)
        if i % 7 == 0:
            storage.get(f"{name}.{i // 2}")
    storage.close()


def test_two_processes_share_one_folder_and_one_limit(tmp_path: Path) -> None:
    limit, writers = 40, 2
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_writer, args=(str(tmp_path), f"p{n}", 1500, limit, None))
        for n in range(writers)
    ]
    for process in processes:
        process.start()
    peak = 0
    deadline = time.monotonic() + 120
    while any(process.is_alive() for process in processes) and time.monotonic() < deadline:
        peak = max(peak, len(files_in(tmp_path)))
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert peak <= limit + writers
    assert len(files_in(tmp_path)) <= limit
    storage = disklru(tmp_path, limit=limit)
    for key in storage:
        assert storage[key] == "x" * (int(key.split(".")[1]) % 50)


def test_indexes_once_at_open_not_per_operation(tmp_path: Path) -> None:
    listings = []

    class CountingFiles(Files):
        def keys_by_age(self) -> list[str]:
            listings.append(1)
            return super().keys_by_age()

    storage = Storage(CountLimit(50), Codec("pickle"), CountingFiles(tmp_path))
    for i in range(200):
        storage[str(i)] = i
        storage.get(str(i // 2))
        assert len(storage) == min(i + 1, 50)  # a count that agrees needs no listing
    assert listings == [1]


def test_an_expiry_sweep_at_open_does_not_count_as_use(tmp_path: Path) -> None:
    # Expiry reads every entry when the stack is built; that must not reorder the LRU.
    def open_stack() -> Storage:
        return Storage(Expiry(3600), CountLimit(3), Codec("json"), Files(tmp_path, "json"))

    first = open_stack()
    for key in "cab":
        first[key] = key
    assert first["c"] == "c"  # order of use: a, b, c
    second = open_stack()
    second["d"] = "d"
    assert sorted(second) == ["b", "c", "d"]


def test_peeking_is_not_a_use() -> None:
    lru = LRU(2)
    storage = Storage(lru)
    storage["a"], storage["b"] = 1, 2
    assert lru.peek_many(["a", "zz"]) == {"a": 1}
    storage["c"] = 3
    assert sorted(storage) == ["b", "c"]


def test_len_keeps_the_order_of_use() -> None:
    storage = Storage(CountLimit(3), Memory())
    for key in "abc":
        storage[key] = key
    assert storage["a"] == "a"  # order of use now: b c a
    assert len(storage) == 3  # counting is not a reason to forget that order
    storage["d"] = "d"
    assert sorted(storage) == ["a", "c", "d"]


def test_evictions_below_a_count_limit_are_counted_too() -> None:
    storage = Storage(Stats(), CountLimit(3), LRU(2))
    for key in "abcd":
        storage[key] = key  # LRU(2) evicts a and b; the limit of 3 evicts a once more
    assert sorted(storage) == ["c", "d"]
    assert storage.stats()["evictions"] == 3


def test_an_entry_expiring_below_the_limit_does_not_reset_the_order_of_use() -> None:
    clock = FakeClock()
    storage = Storage(Expiry(3, clock), CountLimit(3), Memory())
    storage["old"] = 0
    clock.now += 1
    storage["a"] = 1
    storage["b"] = 2
    storage["a"] = 1  # rewritten: "a" is now the most recent
    clock.now += 2  # "old" expires
    assert len(storage) == 2
    storage["c"] = 3
    storage["d"] = 4  # one too many: the least recently used, "b", goes
    assert sorted(storage) == ["a", "c", "d"]


@pytest.mark.parametrize(
    "remove", ["del", "delete_many", "pop", "gone-below-then-read", "gone-below-then-read-with-ttl"]
)
def test_a_removed_key_leaves_the_index_so_no_live_entry_is_evicted(remove: str) -> None:
    backend = Memory()
    storage = Storage(CountLimit(3), backend)
    for key in "abc":
        storage[key] = key
    assert storage["a"] == "a"  # order of use now: b c a
    if remove == "del":
        del storage["a"]
    elif remove == "delete_many":
        storage.delete_many(["a"])
    elif remove == "pop":
        assert storage.pop("a") == "a"
    elif remove == "gone-below-then-read":
        backend.delete("a")  # another program removed it
        assert storage.get("a") is None
    else:
        backend.delete("a")
        with pytest.raises(KeyError):
            storage.get_with_ttl("a")
    storage["d"] = "d"  # three entries: room for it without evicting anything
    assert sorted(storage) == ["b", "c", "d"]
    assert storage.stats() == {"evictions": 0}


def test_entries_found_at_open_are_indexed_like_written_ones() -> None:
    backend = Memory()
    for key in "abc":
        backend.set(key, key)
    storage = Storage(CountLimit(3), backend)
    backend.delete("a")  # another program removed it
    assert storage.get("a") is None
    storage["d"] = "d"  # three entries: room for it without evicting anything
    assert sorted(storage) == ["b", "c", "d"]
    assert storage.stats() == {"evictions": 0}


def test_a_miss_raises_one_key_error_naming_the_key() -> None:
    storage = Storage(CountLimit(3), Memory())
    storage["a"] = "a"
    for read in (storage.__getitem__, storage.get_with_ttl):
        with pytest.raises(KeyError) as caught:
            read("never")
        assert caught.value.args == ("never",)
        assert caught.value.__context__ is None  # no second error raised handling the miss


class _Meddled(Memory):
    """A Memory where, once, another thread acts between a read's miss and its return
    (``meanwhile``), and whose writes can store their values and then fail, as a write
    whose reply was lost does (``failing``)."""

    meanwhile: Callable[[], None] | None = None
    failing = False

    def get(self, key: str) -> Any:
        try:
            return super().get(key)
        except KeyError:
            action, self.meanwhile = self.meanwhile, None
            if action is not None:
                action()
            raise

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        super().set(key, value, ttl)
        if self.failing:
            raise BackendError("the reply was lost")

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        super().set_many(items, ttl)
        if self.failing:
            raise BackendError("the reply was lost")


def _written(storage: Storage, backend: _Meddled) -> None:
    storage["k"] = "k"


def _written_and_failed(storage: Storage, backend: _Meddled) -> None:
    backend.failing = True
    try:
        with pytest.raises(BackendError):
            storage["k"] = "k"
    finally:
        backend.failing = False


def _written_below_then_counted(storage: Storage, backend: _Meddled) -> None:
    backend.set("k", "k")  # by another program
    assert len(storage) == 2


@pytest.mark.parametrize(
    ("arrival", "kept"),
    [
        (_written, ["c", "k"]),
        (_written_and_failed, ["c", "k"]),
        # a key learned from the backend has no use known here: it goes first
        (_written_below_then_counted, ["a", "c"]),
    ],
)
def test_a_key_arriving_while_a_read_misses_it_counts_toward_the_limit(
    arrival: Callable[[Storage, _Meddled], None], kept: list[str]
) -> None:
    backend = _Meddled()
    storage = Storage(CountLimit(2), backend)
    storage["a"] = "a"
    backend.meanwhile = lambda: arrival(storage, backend)
    assert storage.get("k") is None  # the read missed: it came before the arrival
    assert backend.meanwhile is None
    storage["c"] = "c"  # a, k and c: one too many
    assert sorted(storage) == kept
    assert storage.stats() == {"evictions": 1}


@pytest.mark.parametrize("many", [False, True])
def test_a_write_that_fails_after_storing_counts_toward_the_limit(many: bool) -> None:
    backend = _Meddled()
    storage = Storage(CountLimit(2), backend)
    storage["a"] = "a"
    storage["b"] = "b"
    backend.failing = True
    with pytest.raises(BackendError):
        if many:
            storage.set_many({"c": "c"})
        else:
            storage["c"] = "c"
    backend.failing = False
    assert backend.count() == 2  # stored all the same, and the bound kept
    storage["d"] = "d"
    assert backend.count() == 2
    assert "d" in storage

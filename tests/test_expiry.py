"""Expiry and STORAGE_VOLATILE, on a fake clock: no test sleeps."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from pystorage import Storage, StorageProvider
from pystorage.errors import ConfigurationError, UnsupportedError
from pystorage.layers import LRU, Backend, Codec, CountLimit, Expiry, Files, Memory, Stats, Tier
from tests.helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_the_readme_example(tmp_path: Path, clock: FakeClock) -> None:
    provider = StorageProvider()
    pkl_storage = provider.create(StorageProvider.STORAGE_PICKLE, path=tmp_path)
    storage = provider.create(
        StorageProvider.STORAGE_VOLATILE, storage=pkl_storage, expiration=5, clock=clock
    )
    storage["key"] = "value"
    assert storage["key"] == "value"
    clock.now += 4.9
    assert storage["key"] == "value"
    clock.now += 0.2
    with pytest.raises(KeyError):
        storage["key"]
    assert "key" not in storage
    assert not (tmp_path / "key.storage.pkl").exists()


def test_expired_entries_are_not_counted_nor_listed(clock: FakeClock) -> None:
    storage = Storage(Expiry(10, clock), Memory())
    storage["old"] = 1
    clock.now += 5
    storage["new"] = 2
    clock.now += 6
    assert len(storage) == 1
    assert list(storage) == ["new"]
    assert "old" not in storage
    assert storage.get_many(["old", "new"]) == {"new": 2}


def test_per_key_ttl_and_no_default(clock: FakeClock) -> None:
    storage = Storage(Expiry(clock=clock), Memory())
    storage["forever"] = 1
    storage.set("short", 2, ttl=1)
    storage.set_many({"a": 3, "b": 4}, ttl=3)
    clock.now += 2
    assert sorted(storage) == ["a", "b", "forever"]
    clock.now += 2
    assert sorted(storage) == ["forever"]


def test_rewriting_a_key_resets_its_deadline(clock: FakeClock) -> None:
    storage = Storage(Expiry(10, clock), Memory())
    storage["k"] = 1
    clock.now += 8
    storage["k"] = 2
    clock.now += 8
    assert storage["k"] == 2
    storage.set("k", 3, ttl=None)  # the storage's default applies again
    clock.now += 11
    assert "k" not in storage


def test_a_key_written_without_ttl_loses_its_old_deadline(clock: FakeClock) -> None:
    storage = Storage(Expiry(clock=clock), Memory())
    storage.set("k", 1, ttl=1)
    storage["k"] = 2
    clock.now += 5
    assert storage["k"] == 2


def test_deadlines_survive_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    tmp_path = tmp_path / "store"

    def open_storage() -> Storage:
        return Storage(Expiry(clock=clock), Codec("json"), Files(tmp_path, "json"))

    first = open_storage()
    first.set("short", "s", ttl=5)
    first.set("long", "l", ttl=50)
    first["forever"] = "f"
    clock.now += 10
    second = open_storage()  # a new process would see the same files
    assert sorted(second) == ["forever", "long"]
    assert len(second) == 2
    assert second.get("short") is None
    assert not (tmp_path / "short.json").exists()  # removed when read expired
    clock.now += 100
    assert second.expire() == 1
    assert _entries(tmp_path) == ["forever.json"]


def test_another_writer_s_deadline_is_honoured_on_read(tmp_path: Path, clock: FakeClock) -> None:
    reader = Storage(Expiry(clock=clock), Codec("pickle"), Files(tmp_path))
    writer = Storage(Expiry(clock=clock), Codec("pickle"), Files(tmp_path))
    writer.set("k", "v", ttl=1)
    assert reader["k"] == "v"
    clock.now += 2
    with pytest.raises(KeyError):
        reader["k"]


def test_expire_sweeps_everything(tmp_path: Path, clock: FakeClock) -> None:
    tmp_path = tmp_path / "store"
    storage = Storage(Expiry(clock=clock), Codec("pickle"), Files(tmp_path))
    other = Storage(Expiry(clock=clock), Codec("pickle"), Files(tmp_path))
    other.set_many({str(i): i for i in range(10)}, ttl=1)
    storage["kept"] = "yes"
    clock.now += 2
    assert storage.expire() == 10
    assert _entries(tmp_path) == ["kept"]


def test_expiry_on_bytes_below_a_codec(clock: FakeClock) -> None:
    storage = Storage(Codec("json"), Expiry(1, clock), Memory())
    storage["k"] = {"a": 1}
    assert storage["k"] == {"a": 1}
    clock.now += 2
    assert "k" not in storage


def test_expiry_over_count_limit(tmp_path: Path, clock: FakeClock) -> None:
    storage = Storage(Expiry(5, clock), CountLimit(3), Codec("pickle"), Files(tmp_path))
    for key in "abcd":
        storage[key] = key
    assert sorted(storage) == ["b", "c", "d"]  # "a" evicted, its deadline is moot
    clock.now += 6
    assert len(storage) == 0


def test_bad_ttl_values(clock: FakeClock) -> None:
    for ttl in (0, -1, "5", True):
        with pytest.raises(ConfigurationError):
            Expiry(ttl, clock)  # type: ignore[arg-type]
    storage = Storage(Expiry(clock=clock), Memory())
    with pytest.raises(ConfigurationError):
        storage.set("k", 1, ttl=0)
    for ttl in (math.inf, math.nan):
        with pytest.raises(ConfigurationError):
            storage.set("k", 1, ttl=ttl)
        with pytest.raises(ConfigurationError):
            Expiry(ttl)

    class Forgetful(Memory):  # a backend of the user's that keeps no deadlines
        supports_ttl = False

    with pytest.raises(UnsupportedError):
        Storage(CountLimit(3), Forgetful()).set("k", 1, ttl=1)
    with pytest.raises(ConfigurationError, match="cannot keep deadlines"):
        Storage(Expiry(5), Forgetful())


def test_expiring_cost_does_not_scan_every_key(clock: FakeClock) -> None:
    reads = []

    class CountingMemory(Memory):
        def keys(self):  # type: ignore[no-untyped-def]
            reads.append(1)
            return super().keys()

    storage = Storage(Expiry(1000, clock), CountingMemory())
    for i in range(1000):
        storage[str(i)] = i  # expires at start + i + 1000
        clock.now += 1
    clock.now += 500.5  # start + 1500.5: keys 0 to 500 are due
    for i in range(1000):
        storage.get(str(i))
    assert reads == []  # no sweep when the stack was built, none per access
    assert len(storage) == 499


def _entries(folder: Path) -> list[str]:
    """The files of entries in ``folder``: its hidden lock and format files left out."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


@pytest.mark.parametrize("backend", ["memory", "lru", "files"])
def test_set_many_gives_the_default_ttl_and_replaces_old_deadlines(
    tmp_path: Path, clock: FakeClock, backend: str
) -> None:
    below = {
        "memory": lambda: Memory(),
        "lru": lambda: LRU(10),
        "files": lambda: Files(tmp_path / "store"),
    }[backend]()
    above = [Codec("pickle")] if backend == "files" else []
    storage = Storage(Expiry(10, clock), *above, below)
    storage.set("shorter", 0, ttl=1)
    storage.set("longer", 0, ttl=100)
    storage.set_many({"a": 1, "shorter": 2, "longer": 3})
    assert storage.get_with_ttl("a") == (1, 10)
    clock.now += 5  # past the old deadline of "shorter": the new one holds
    assert sorted(storage) == ["a", "longer", "shorter"]
    clock.now += 5  # the default TTL, not the old 100 s of "longer"
    assert list(storage) == []
    storage.set("k", 0, ttl=1)
    storage.set_many({"k": 1}, ttl=20)
    clock.now += 15
    assert storage["k"] == 1


def test_stats_name_expirations_before_the_first_one(clock: FakeClock) -> None:
    storage = Storage(Stats(), Expiry(5, clock), Memory())
    assert storage.stats() == {
        "hits": 0, "misses": 0, "writes": 0, "deletes": 0, "bytes_read": 0,
        "bytes_written": 0, "expirations": 0,
    }  # fmt: skip
    storage["a"] = 1
    clock.now += 5
    assert storage.get("a") is None
    assert storage.stats()["expirations"] == 1


def test_a_misconfigured_expiry_says_what_is_wrong(clock: FakeClock) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Expiry(0)
    assert str(caught.value) == (
        "ttl must be a finite number of seconds above 0 and at most 3155760000 (100 years), not 0"
    )

    class Forgetful(Memory):  # a backend of the user's that keeps no deadlines
        supports_ttl = False

    with pytest.raises(ConfigurationError) as caught:
        Storage(Expiry(5), CountLimit(3), Forgetful())
    assert str(caught.value) == (
        "Forgetful cannot keep deadlines (it lacks the 'ttl' capability), "
        "so Expiry cannot sit above it"
    )


def test_a_test_clock_reaches_the_front_of_a_tier(clock: FakeClock) -> None:
    front = LRU(10)
    storage = Storage(Expiry(5, clock), Tier(front), Memory())
    storage["k"] = "v"
    assert front.get_with_ttl("k") == ("v", 5)
    clock.now += 5
    with pytest.raises(KeyError):
        storage["k"]
    assert not front.contains("k")


class _ServerSide(Backend):
    """A backend whose server expires keys by its own clock (as Redis and S3 do)."""

    supports_ttl = True


def test_a_clock_for_a_backend_that_expires_by_its_own_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Storage(Expiry(5, clock), _ServerSide())
    assert str(caught.value) == (
        "_ServerSide expires entries by its own clock: a clock cannot be given here"
    )
    Storage(Expiry(5), _ServerSide())  # without a clock it is fine

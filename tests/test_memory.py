"""Memory and LRU keep each deadline beside its value: the moment an entry expires, what
reading an expired entry releases, and what the counters say after many operations."""

from __future__ import annotations

import gc
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest

from pystorage import Storage
from pystorage.layers import LRU, Memory, Stats, TinyLFU
from pystorage.layers.memory import _Expiring
from tests.helpers import FakeClock

BACKENDS: dict[str, Callable[[FakeClock], Memory]] = {
    "memory": lambda clock: Memory(clock=clock),
    "lru": lambda clock: LRU(100, clock=clock),
    "tinylfu": lambda clock: TinyLFU(100, clock=clock),
}
READS = ["getitem", "get", "get_with_ttl", "get_many"]


class Value:
    """A stored object whose release a weak reference can observe."""


def _found(storage: Storage, read: str, key: str) -> bool:
    """Whether one read of ``key`` by the ``read`` path finds it."""
    try:
        if read == "getitem":
            storage[key]
        elif read == "get":
            return storage.get(key, Value) is not Value
        elif read == "get_with_ttl":
            storage.get_with_ttl(key)
        else:
            return key in storage.get_many([key])
    except KeyError:
        return False
    return True


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_an_entry_expires_at_its_deadline_by_every_read(kind: str) -> None:
    clock = FakeClock()
    storage = Storage(BACKENDS[kind](clock))
    for read in READS:
        storage.set(read, "v", ttl=5)
    clock.now += 4.5
    assert storage.get_with_ttl("get_with_ttl") == ("v", 0.5)
    assert all(_found(storage, read, read) for read in READS)
    assert all(read in storage for read in READS)
    clock.now += 0.5  # exactly the deadline: expired, as Files and Redis have it
    assert not any(read in storage for read in READS)
    assert not any(_found(storage, read, read) for read in READS)
    assert len(storage) == 0


@pytest.mark.parametrize("kind", sorted(BACKENDS))
@pytest.mark.parametrize("read", READS)
def test_reading_an_expired_entry_releases_its_value_at_once(kind: str, read: str) -> None:
    clock = FakeClock()
    backend = BACKENDS[kind](clock)
    storage = Storage(backend)
    value = Value()
    released = weakref.ref(value)
    storage.set("k", value, ttl=1)
    del value
    clock.now += 2
    assert not _found(storage, read, "k")
    gc.collect()
    assert released() is None  # not kept until some later sweep
    assert backend.counters()["expirations"] == 1


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_a_miss_names_its_key(kind: str) -> None:
    clock = FakeClock()
    storage = Storage(BACKENDS[kind](clock))
    storage.set("expired", 1, ttl=1)
    storage.set("expired-too", 1, ttl=1)
    clock.now += 1
    for key, read in [
        ("missing", storage.__getitem__),
        ("missing", storage.get_with_ttl),
        ("expired", storage.__getitem__),
        ("expired-too", storage.get_with_ttl),
    ]:
        with pytest.raises(KeyError) as caught:
            read(key)
        assert caught.value.args == (key,)


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_a_user_value_of_the_private_deadline_type_is_plain_data(kind: str) -> None:
    storage = Storage(BACKENDS[kind](FakeClock()))
    record = _Expiring("inner", 0.0)  # shaped like a deadline that passed long ago
    storage["k"] = record
    storage.set_many({"many": record})
    for key in ("k", "many"):
        assert storage[key] is record
        assert storage.get(key) is record
        value, ttl = storage.get_with_ttl(key)
        assert value is record and ttl is None
        assert storage.get_many([key])[key] is record
    assert sorted(storage) == ["k", "many"]
    assert storage.expire() == 0


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_expirations_add_up_over_operations(kind: str) -> None:
    clock = FakeClock()
    storage = Storage(Stats(), BACKENDS[kind](clock))
    storage.set("a", 1, ttl=1)
    storage.set("b", 2, ttl=2)
    storage["c"] = 3
    clock.now += 1.5
    assert len(storage) == 2
    clock.now += 1
    assert list(storage) == ["c"]
    assert storage.stats()["expirations"] == 2


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_expire_returns_how_many_it_removed(kind: str) -> None:
    clock = FakeClock()
    storage = Storage(BACKENDS[kind](clock))
    assert storage.expire() == 0  # nothing was ever written with a deadline
    storage.set("a", 1, ttl=1)
    storage.set("b", 2, ttl=5)
    storage["c"] = 3
    assert storage.expire() == 0  # deadlines, none due
    clock.now += 2
    assert storage.expire() == 1
    assert storage.expire() == 0
    assert sorted(storage) == ["b", "c"]


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_expired_entries_stay_uncounted_after_many_rewrites_with_a_ttl(kind: str) -> None:
    clock = FakeClock()
    backend = BACKENDS[kind](clock)
    storage = Storage(backend)
    storage["plain"] = 0
    storage.set("once", 1, ttl=5)
    for i in range(300):  # each rewrite leaves a stale deadline behind, dropped now and then
        storage.set("often", i, ttl=10)
    clock.now += 6
    assert sorted(storage) == ["often", "plain"]
    assert len(storage) == 2
    clock.now += 5
    assert list(storage) == ["plain"]
    assert backend.counters()["expirations"] == 2


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_deleting_an_expired_entry_is_a_miss_that_counts_an_expiration(kind: str) -> None:
    clock = FakeClock()
    storage = Storage(Stats(), BACKENDS[kind](clock))
    storage.set("a", 1, ttl=1)
    storage.set("b", 2, ttl=3)
    storage.set("live", 3, ttl=10)
    clock.now += 1  # exactly the deadline of "a": expired, as a read would have it
    with pytest.raises(KeyError) as caught:
        del storage["a"]
    assert caught.value.args == ("a",)
    clock.now += 5
    with pytest.raises(KeyError):
        del storage["b"]
    del storage["live"]
    assert storage.stats()["expirations"] == 2
    assert len(storage) == 0


def test_get_on_an_lru_stack_returns_values_that_have_a_deadline() -> None:
    storage = Storage(LRU(10, clock=FakeClock()))
    storage.set("k", "v", ttl=5)
    storage["plain"] = None
    assert storage.get("k") == "v"
    assert storage.get("k", "default") == "v"
    assert storage.get("plain", "default") is None  # a stored None is not a miss
    assert storage.get("missing", "default") == "default"
    assert storage.get_many(["k", "plain", "missing"]) == {"k": "v", "plain": None}


def test_every_read_of_an_lru_entry_is_a_use() -> None:
    storage = Storage(LRU(2, clock=FakeClock()))
    reads: list[Callable[[str], object]] = [
        storage.__getitem__,
        storage.get,
        storage.get_with_ttl,
        lambda key: storage.get_many([key]),
    ]
    for read in reads:
        storage.clear()
        storage.set("a", 1, ttl=10)
        storage["b"] = 2
        read("a")  # "a" is now the most recent
        storage["c"] = 3
        assert sorted(storage) == ["a", "c"]


def test_an_lru_counts_every_eviction() -> None:
    storage = Storage(Stats(), LRU(1))
    for key in "abc":
        storage[key] = key
    assert list(storage) == ["c"]
    assert storage.stats()["evictions"] == 2


def test_a_full_lru_removes_expired_entries_only_when_one_must_go() -> None:
    # A write that needs no room skips the sweep (it costs a clock read on the hot path);
    # the first write that needs room removes what expired before any live entry.
    clock = FakeClock()
    storage = Storage(Stats(), LRU(2, clock=clock))
    storage.set("old", 0, ttl=1)
    storage["b"] = 1
    clock.now += 1  # "old" has expired; the LRU is full
    storage["b"] = 2
    assert storage.stats().get("expirations", 0) == 0
    storage["c"] = 3
    assert storage.stats()["expirations"] == 1
    assert storage.stats()["evictions"] == 0
    assert sorted(storage) == ["b", "c"]


class _WrittenRightAfterARead(OrderedDict[str, Any]):
    """An LRU's mapping where another thread writes a key right after a read missed it."""

    def get(self, key: str, default: Any = None) -> Any:
        found = super().get(key, default)
        if key not in self:
            self[key] = "written meanwhile"
        return found


class _RacedLRU(LRU):
    def _empty(self) -> OrderedDict[str, Any]:
        return _WrittenRightAfterARead()


def test_an_lru_read_racing_a_write_returns_the_default_or_the_value_written() -> None:
    storage = Storage(_RacedLRU(10))
    assert storage.get("k", "default") in ("default", "written meanwhile")
    assert storage["k"] == "written meanwhile"

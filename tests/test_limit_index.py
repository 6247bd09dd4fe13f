"""The index that CountLimit and SizeLimit keep (their shared engine, ``Limit``).

Server-free and fast, so that ``make mutation`` runs them for every change to the engine:
what each operation counts, the order it keeps for both eviction policies, the weights it
learns, what it relearns after a failure or after another writer, and the refusal of a
value larger than the whole limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage
from pystorage.errors import BackendError, ConfigurationError, ValueTooLargeError
from pystorage.layers import Codec, CountLimit, Files, Memory, SizeLimit
from tests.helpers import FakeClock


def sized(max_bytes: int, backend: Memory | Files, **options: Any) -> Storage:
    """A raw bytes stack with a ``SizeLimit`` over ``backend``."""
    return Storage(Codec("raw"), SizeLimit(max_bytes, **options), backend)


def keys_below(backend: Memory) -> list[str]:
    return sorted(backend.keys())


# -- refusals ------------------------------------------------------------------------------

WRITES: dict[str, Callable[[Storage, str, bytes], Any]] = {
    "set": lambda storage, key, value: storage.set(key, value),
    "set_many": lambda storage, key, value: storage.set_many({"fits": b"f", key: value}),
    "add": lambda storage, key, value: storage.add(key, value),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_value_larger_than_the_limit_is_refused_by_name_and_nothing_is_written(
    write: str,
) -> None:
    backend = Memory()
    storage = sized(10, backend)
    storage["old"] = b"o"
    with pytest.raises(ValueTooLargeError) as caught:
        WRITES[write](storage, "big", b"x" * 11)
    assert str(caught.value) == (
        "the value of 'big' weighs 11 bytes, more than the whole limit of 10: not stored"
    )
    assert keys_below(backend) == ["old"]
    storage.set_many({"a": b"a" * 5, "b": b"b" * 4})  # the refusal took no room either
    assert keys_below(backend) == ["a", "b", "old"]
    assert storage.stats() == {"evictions": 0}


def test_limits_must_be_positive_and_evict_in_a_known_order() -> None:
    for bad in (0, -1):
        with pytest.raises(ConfigurationError, match="max_bytes must be a positive int"):
            SizeLimit(bad)
    with pytest.raises(ConfigurationError) as caught:  # a pystorage error, like every other
        CountLimit(3, eviction="random")  # type: ignore[arg-type]
    assert str(caught.value) == "eviction must be one of 'used', 'stored', 'tinylfu', not 'random'"


# -- the order of eviction -----------------------------------------------------------------

READS: dict[str, Callable[[Storage, str], Any]] = {
    "get": lambda storage, key: storage.get(key),
    "get_with_ttl": lambda storage, key: storage.get_with_ttl(key)[0],
    "get_many": lambda storage, key: storage.get_many([key])[key],
}


@pytest.mark.parametrize("read", sorted(READS))
@pytest.mark.parametrize("where", ["memory", "files"])
@pytest.mark.parametrize(("eviction", "kept"), [("used", "acd"), ("stored", "bcd")])
def test_each_read_is_a_use_only_when_evicting_by_use(
    eviction: str, kept: str, where: str, read: str, tmp_path: Path
) -> None:
    backend = Memory() if where == "memory" else Files(tmp_path)
    storage = Storage(CountLimit(3, eviction=eviction), Codec("pickle"), backend)  # type: ignore[arg-type]
    for key in "abc":
        storage[key] = key
    assert READS[read](storage, "a") == "a"
    storage["d"] = "d"
    assert sorted(storage) == list(kept)
    assert storage.stats()["evictions"] == 1


@pytest.mark.parametrize("read", sorted(READS))
def test_a_read_learns_the_size_another_writer_gave_an_entry(read: str) -> None:
    backend = Memory()
    storage = sized(1000, backend)
    storage["a"] = b"a" * 100
    storage["b"] = b"b" * 100
    backend.set("a", b"A" * 700)  # rewritten by another program, larger
    assert READS[read](storage, "a") == b"A" * 700
    storage["c"] = b"c" * 300  # 700 + 100 + 300: b, the least recently used, goes
    assert keys_below(backend) == ["a", "c"]


@pytest.mark.parametrize("read", sorted(READS))
def test_evicting_by_write_age_a_read_still_counts_an_entry_it_did_not_know(read: str) -> None:
    backend = Memory()
    storage = Storage(CountLimit(2, eviction="stored"), backend)
    storage["a"] = "a"
    backend.set("x", "x")  # written by another program
    assert READS[read](storage, "x") == "x"
    storage["b"] = "b"  # a, x and b: one too many, and a is the oldest
    assert keys_below(backend) == ["b", "x"]


#: Each write or removal, with a key ("n") no test has written before.
OPERATIONS: dict[str, Callable[[Storage], Any]] = {
    "set": lambda storage: storage.set("n", 1),
    "set_many": lambda storage: storage.set_many({"n": 1}),
    "add": lambda storage: storage.add("n", 1),
    "incr": lambda storage: storage.incr("n"),
    "del": lambda storage: storage.__delitem__("c"),
    "delete_many": lambda storage: storage.delete_many(["c"]),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_no_write_forgets_the_order_of_use(operation: str) -> None:
    backend = Memory()
    storage = Storage(CountLimit(3), backend)
    for key in "abc":
        storage[key] = key
    assert storage["a"] == "a"  # order of use b, c, a; of writes a, b, c
    OPERATIONS[operation](storage)
    if operation.startswith("del"):
        storage["d"] = "d"
        storage["e"] = "e"  # b, a, d, e: b goes
        assert keys_below(backend) == ["a", "d", "e"]
    else:  # b, c, a, n: b goes
        assert keys_below(backend) == ["a", "c", "n"]


# -- weights -------------------------------------------------------------------------------


def test_an_overwrite_through_each_write_counts_the_new_size_only() -> None:
    backend = Memory()
    storage = sized(10, backend)
    storage["a"] = b"a" * 9
    storage.set_many({"a": b"a"})  # 1 byte now, not 10
    storage["b"] = b"b" * 8
    assert storage.add("a", b"a" * 9) is False  # not stored: still 1 byte
    assert keys_below(backend) == ["a", "b"]
    storage["c"] = b"c"  # 10 bytes: fits exactly
    assert keys_below(backend) == ["a", "b", "c"]
    assert storage.stats() == {"evictions": 0}


def test_incr_weighs_the_number_it_stores() -> None:
    backend = Memory()
    storage = Storage(Codec("json"), SizeLimit(6), backend)
    storage["n"] = 99  # b"99": 2 bytes
    storage["a"] = 1  # 3 bytes in all
    assert storage.incr("n", 901) == 1000  # b"1000": 5 bytes in all
    storage["b"] = 2  # 6: fits exactly
    assert keys_below(backend) == ["a", "b", "n"]
    assert storage.incr("n") == 1001  # still 6, and n is the most recent
    storage["c"] = 3  # 7: a, the least recent, goes
    assert keys_below(backend) == ["b", "c", "n"]
    assert storage.stats() == {"evictions": 1}


def test_add_counts_what_it_stored_and_nothing_when_it_found_the_key() -> None:
    backend = Memory()
    storage = sized(10, backend)
    assert storage.add("a", b"a" * 4)
    assert storage.add("b", b"b" * 4)
    assert storage.add("a", b"x") is False  # no use either: a stays the least recent
    assert storage.add("c", b"cc")  # 10: fits
    assert storage.add("d", b"d")  # 11: a goes
    assert keys_below(backend) == ["b", "c", "d"]


def _gone_below_then_read(storage: Storage, backend: Memory) -> None:
    backend.delete("a")  # another program removed it
    assert storage.get("a") is None


def _gone_below_then_deleted(storage: Storage, backend: Memory) -> None:
    backend.delete("a")
    with pytest.raises(KeyError):
        del storage["a"]


REMOVALS: dict[str, Callable[[Storage, Memory], None]] = {
    "del": lambda storage, backend: storage.__delitem__("a"),
    "delete_many": lambda storage, backend: storage.delete_many(["a"]),
    "gone-below-then-read": _gone_below_then_read,
    "gone-below-then-deleted": _gone_below_then_deleted,
}


@pytest.mark.parametrize("removal", sorted(REMOVALS))
def test_a_removed_entry_gives_its_bytes_back(removal: str) -> None:
    backend = Memory()
    storage = sized(1000, backend)
    storage.set_many({"a": b"a" * 100, "b": b"b" * 400, "c": b"c" * 400})
    REMOVALS[removal](storage, backend)
    storage["d"] = b"d" * 300  # 400 + 400 + 300: b, the least recent, goes
    assert keys_below(backend) == ["c", "d"]
    assert storage.stats() == {"evictions": 1}


@pytest.mark.parametrize("limit", ["count", "size"])
def test_clear_empties_the_index(limit: str) -> None:
    backend = Memory()
    storage = Storage(Codec("raw"), CountLimit(2) if limit == "count" else SizeLimit(2), backend)
    storage.set_many({"a": b"a", "b": b"b"})
    storage.clear()
    storage["c"] = b"c"
    storage["d"] = b"d"
    assert keys_below(backend) == ["c", "d"]
    assert storage.stats() == {"evictions": 0}


# -- deadlines -----------------------------------------------------------------------------


def test_every_write_hands_its_ttl_down() -> None:
    clock = FakeClock()
    backend = Memory(clock=clock)
    storage = Storage(CountLimit(10), backend)
    storage.set("s", 1, ttl=5)
    storage.set_many({"m": 1}, ttl=5)
    assert storage.add("a", 1, ttl=5)
    assert storage.incr("n", ttl=5) == 1
    assert {key: backend.get_with_ttl(key) for key in "amns"} == dict.fromkeys("amns", (1, 5.0))


# -- entries the index did not write -------------------------------------------------------


def test_entries_found_beyond_the_limit_are_trimmed_when_the_stack_is_built() -> None:
    backend = Memory()
    for key in "abcde":
        backend.set(key, key)
    storage = Storage(CountLimit(3), backend)
    assert keys_below(backend) == ["c", "d", "e"]
    assert storage.stats() == {"evictions": 2}


def test_counting_trims_entries_written_behind_its_back_newcomers_first() -> None:
    backend = Memory()
    storage = Storage(CountLimit(2), backend)
    storage["a"] = "a"
    for key in "bcd":
        backend.set(key, key)
    assert len(storage) == 2
    # Keys it did not know go before the ones whose use it knows, in the backend's order.
    assert keys_below(backend) == ["a", "d"]
    assert storage.stats() == {"evictions": 2}


def test_two_limits_in_one_stack_each_keep_their_bound() -> None:
    backend = Memory()
    storage = Storage(CountLimit(2), Codec("raw"), SizeLimit(10), backend)
    assert [type(layer) for layer in storage.layers] == [CountLimit, Codec, SizeLimit, Memory]
    storage.set_many({"a": b"a", "b": b"b"})
    storage["c"] = b"c"  # the count: a goes
    assert keys_below(backend) == ["b", "c"]
    storage["d"] = b"d" * 10  # the bytes: b and c go
    assert keys_below(backend) == ["d"]


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_a_write_after_another_writer_on_the_same_folder_relearns_the_index(
    operation: str, tmp_path: Path
) -> None:
    def stack() -> Storage:
        return Storage(CountLimit(3), Codec("pickle"), Files(tmp_path))

    mine, other = stack(), stack()  # as two processes would have
    mine["a"] = "a"
    mine["b"] = "b"
    other["c"] = "c"
    other["d"] = "d"  # a, b, c, d: a goes
    OPERATIONS[operation](mine)  # mine learns first that b, c and d are there
    if operation.startswith("del"):
        mine["e"] = "e"
        mine["f"] = "f"  # b, d, e, f: b goes
        assert sorted(other) == ["d", "e", "f"]
    else:  # b, c, d, n: b goes
        assert sorted(other) == ["c", "d", "n"]


# -- writes that fail after doing their work -------------------------------------------------


class _Lossy(Memory):
    """A Memory whose writes, while ``failing``, do their work and then raise, as a write
    whose reply was lost does."""

    failing = False

    def _then_fail(self, result: Any) -> Any:
        if self.failing:
            raise BackendError("the reply was lost")
        return result

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        return self._then_fail(super().add(key, value, ttl))  # type: ignore[no-any-return]

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        return self._then_fail(super().modify(key, change, ttl))

    def delete(self, key: str) -> None:
        self._then_fail(super().delete(key))

    def delete_many(self, keys: Iterable[str]) -> None:
        self._then_fail(super().delete_many(keys))


FAILING: dict[str, Callable[[Storage], Any]] = {
    "add": lambda storage: storage.add("c", "c"),
    "incr": lambda storage: storage.incr("c"),
    "del": lambda storage: storage.__delitem__("a"),
    "delete_many": lambda storage: storage.delete_many(["a"]),
}


@pytest.mark.parametrize("operation", sorted(FAILING))
def test_after_a_write_that_failed_the_index_is_relearned_from_the_backend(
    operation: str,
) -> None:
    backend = _Lossy()
    storage = Storage(CountLimit(2), backend)
    storage["a"] = "a"
    storage["b"] = "b"
    backend.failing = True
    with pytest.raises(BackendError, match="the reply was lost"):
        FAILING[operation](storage)
    backend.failing = False
    if operation in ("add", "incr"):  # stored all the same: a, b and c, and a went
        assert keys_below(backend) == ["b", "c"]
        assert storage.stats() == {"evictions": 1}
    else:  # removed all the same: room for c without evicting anything
        storage["c"] = "c"
        assert keys_below(backend) == ["b", "c"]
        assert storage.stats() == {"evictions": 0}

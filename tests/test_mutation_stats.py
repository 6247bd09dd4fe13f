"""What a Stats layer counts, operation by operation (issue 24: `make mutation MODULE=stats`).

Each test pins the whole dict of counts after one kind of operation, so a count added to
the wrong name, by the wrong amount or when the operation failed, shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pystorage import Storage, _fork
from pystorage.layers import Codec, Expiry, Files, Memory, Stats
from tests.helpers import FakeClock
from tests.test_fork import _within_deadline, held_by_another_thread

ZERO = {"hits": 0, "misses": 0, "writes": 0, "deletes": 0, "bytes_read": 0, "bytes_written": 0}


def _raw() -> Storage:
    """Stats below a codec, where values are bytes and their sizes count."""
    return Storage(Codec("raw"), Stats(), Memory())


def _counts(**changed: int) -> dict[str, int]:
    return {**ZERO, **changed}


def test_a_get_counts_a_hit_with_its_bytes_and_a_miss_without() -> None:
    storage = _raw()
    storage["k"] = b"abcd"
    assert storage["k"] == b"abcd"
    with pytest.raises(KeyError):
        storage["nope"]
    assert storage.stats() == _counts(writes=1, bytes_written=4, hits=1, bytes_read=4, misses=1)


def test_get_with_ttl_counts_as_get_does() -> None:
    storage = Storage(Codec("raw"), Stats(), Expiry(100), Memory())
    storage.set("k", b"abc", ttl=50)
    value, left = storage.get_with_ttl("k")
    assert value == b"abc" and left is not None and 0 < left <= 50
    with pytest.raises(KeyError):
        storage.get_with_ttl("nope")
    counts = storage.stats()
    del counts["expirations"]  # Expiry's, none yet
    assert counts == _counts(writes=1, bytes_written=3, hits=1, bytes_read=3, misses=1)


def test_only_bytes_like_values_have_a_size() -> None:
    storage = Storage(Stats(), Memory())  # no codec: the values are objects
    storage.set_many({"b": b"12", "a": bytearray(b"345"), "m": memoryview(b"6789"), "o": "xyz"})
    storage.get_many(["b", "a", "m", "o"])
    assert storage.stats() == _counts(writes=4, bytes_written=9, hits=4, bytes_read=9)


def test_a_delete_counts_once_and_a_failed_one_not_at_all() -> None:
    storage = _raw()
    storage["k"] = b"x"
    del storage["k"]
    with pytest.raises(KeyError):
        del storage["k"]
    assert storage.stats() == _counts(writes=1, bytes_written=1, deletes=1)


def test_an_add_counts_a_write_only_when_it_stored() -> None:
    storage = _raw()
    assert storage.add("k", b"first")
    assert not storage.add("k", b"second, longer")
    assert storage["k"] == b"first"
    assert storage.stats() == _counts(writes=1, bytes_written=5, hits=1, bytes_read=5)


def test_an_incr_counts_a_write_of_the_new_value(tmp_path: Path) -> None:
    storage = Storage(Codec("json"), Stats(), Files(tmp_path))
    assert storage.incr("n", 9) == 9
    assert storage.incr("n", 1) == 10
    # The values written are the encoded numbers: "9" then "10".
    assert storage.stats() == _counts(writes=2, bytes_written=1 + 2)


def test_a_failed_write_counts_nothing() -> None:
    storage = Storage(Stats(), Memory())
    storage["k"] = "text"
    with pytest.raises(Exception, match="not an int"):
        storage.incr("k")
    assert storage.stats() == _counts(writes=1)


def test_set_many_and_delete_many_count_each_key_of_any_iterable() -> None:
    storage = _raw()
    storage.set_many({"a": b"1", "b": b"22", "c": b"333"})
    storage.delete_many(key for key in ["a", "b", "missing"])  # a generator, read once
    assert list(storage) == ["c"]  # listing counts nothing
    assert storage.stats() == _counts(writes=3, bytes_written=6, deletes=3)


def test_a_batch_of_keys_given_as_a_generator_is_read_and_counted_once() -> None:
    storage = _raw()
    storage.set_many({"a": b"1", "b": b"22"})
    assert storage.get_many(key for key in ["a", "b"]) == {"a": b"1", "b": b"22"}
    found = storage.get_many_with_ttl(key for key in ["b", "nope"])
    assert found == {"b": (b"22", None)}
    assert storage.stats() == _counts(writes=2, bytes_written=3, hits=3, bytes_read=3 + 2, misses=1)


def test_a_batch_with_every_key_found_counts_their_bytes() -> None:
    storage = _raw()
    storage.set_many({"a": b"1", "b": b"22"})
    storage.get_many_with_ttl(["a", "b"])
    storage.get_many(["b"])
    assert storage.stats() == _counts(writes=2, bytes_written=3, hits=3, bytes_read=3 + 2)


def test_stats_above_stats_add_up_with_what_the_layers_below_count() -> None:
    now = [0.0]
    storage = Storage(Stats(), Stats(), Expiry(5, lambda: now[0]), Memory())
    storage["k"] = 1
    now[0] = 10
    assert storage.get("k") is None
    # Each Stats counts the same operations: the totals are twice one layer's.
    assert storage.stats() == {"expirations": 1, **_counts(writes=2, misses=2)}
    # Asked twice, the counts are the same: reading them changes nothing.
    assert storage.stats() == {"expirations": 1, **_counts(writes=2, misses=2)}


def test_what_a_child_runs_first_frees_the_stats_lock_held_in_the_parent() -> None:
    # As tests/test_fork.py does for the other layers: the renewal a forked child runs,
    # run in this process, where mutmut sees it.
    stats = Stats()
    storage = Storage(stats, Memory())
    with held_by_another_thread(stats._lock):
        _fork._renewals[stats](stats)
        outcome = _within_deadline(lambda: (storage.set("k", 1), storage.stats()))
    assert outcome == (None, _counts(writes=1))


def test_the_ttl_of_a_write_passes_through_to_the_layers_below() -> None:
    storage = Storage(Stats(), Memory(clock=FakeClock()))
    storage.set_many({"m": 1}, ttl=30)
    assert storage.add("a", 2, ttl=40)
    assert storage.incr("n", ttl=50) == 1
    found = storage.get_many_with_ttl(["m", "a", "n"])
    assert found == {"m": (1, 30), "a": (2, 40), "n": (1, 50)}

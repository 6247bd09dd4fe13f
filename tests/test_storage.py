"""The Storage facade: stack assembly, its checks, and the layers that change behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest

from pystorage import Storage
from pystorage.errors import ConfigurationError, InvalidKeyError, UnsupportedError
from pystorage.layers import LRU, Codec, Files, Memory, Tier


def test_a_stack_needs_a_backend_last() -> None:
    with pytest.raises(ConfigurationError, match="at least a backend"):
        Storage()
    with pytest.raises(ConfigurationError, match="must be a backend"):
        Storage(Codec("json"))
    with pytest.raises(ConfigurationError, match="must be the last layer"):
        Storage(Memory(), Memory())


def test_a_bytes_backend_needs_a_codec_above(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="put a Codec layer above"):
        Storage(Files(tmp_path))
    with pytest.raises(ConfigurationError, match="put a Codec layer above"):
        Storage(Tier(LRU(2)), Files(tmp_path))


def test_a_layer_belongs_to_one_stack() -> None:
    codec = Codec("json")
    Storage(codec, Memory())
    with pytest.raises(ValueError, match="already part of a stack"):
        Storage(codec, Memory())


def test_layers_lists_the_stack_top_down(tmp_path: Path) -> None:
    storage = Storage(Codec("json"), Files(tmp_path))
    assert [type(layer).__name__ for layer in storage.layers] == ["Codec", "Files"]
    assert "Codec" in repr(storage)


def test_storage_on_top_of_a_storage_shares_its_backend() -> None:
    below = Storage(Codec("pickle"), Memory())
    above = Storage(Tier(LRU(2)), below)
    above["k"] = (1, 2)
    assert below["k"] == (1, 2)
    assert above.layers[1:] == below.layers


def test_ttl_on_a_backend_without_deadlines_is_refused_not_ignored() -> None:
    class Forgetful(Memory):  # a backend of the user's that keeps no deadlines
        supports_ttl = False

    storage = Storage(Forgetful())
    with pytest.raises(UnsupportedError, match="expire"):
        storage.set("k", 1, ttl=5)
    with pytest.raises(UnsupportedError):
        storage.set_many({"k": 1}, ttl=5)
    assert "k" not in storage
    with pytest.raises(ConfigurationError, match="above 0"):
        storage.set("k", 1, ttl=-1)
    storage.set("k", 1)
    assert storage["k"] == 1


def test_non_str_keys_are_refused_everywhere() -> None:
    storage = Storage(Memory())
    with pytest.raises(InvalidKeyError):
        storage.set(b"k", 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        storage.set_many({1: 1})  # type: ignore[dict-item]
    assert len(storage) == 0


def test_context_manager_closes_the_stack() -> None:
    closed = []

    class Recording(Memory):
        def close(self) -> None:
            closed.append(True)

    with Storage(Codec("json"), Recording()) as storage:
        storage["k"] = 1
    assert closed == [True]


def test_lru_evicts_the_least_recently_used() -> None:
    storage = Storage(LRU(3))
    for key in "abc":
        storage[key] = key
    assert storage["a"] == "a"  # a read makes "a" the most recent
    storage["d"] = "d"
    assert sorted(storage) == ["a", "c", "d"]
    storage["c"] = "C"  # so does a write
    storage["e"] = "e"
    assert sorted(storage) == ["c", "d", "e"]
    assert len(storage) == 3


def test_lru_size_must_be_positive() -> None:
    for size in (0, -1, 1.5, True, "3"):
        with pytest.raises(ConfigurationError, match="maxsize"):
            LRU(size)  # type: ignore[arg-type]


def test_tier_reads_through_writes_both_deletes_both(tmp_path: Path) -> None:
    slow = Storage(Codec("pickle"), Files(tmp_path))
    front = LRU(2)
    storage = Storage(Tier(front), slow)
    slow["old"] = "from disk"
    assert storage["old"] == "from disk"
    assert front.contains("old")  # kept after a read-through
    storage["new"] = "both"
    assert slow["new"] == "both" and front.contains("new")
    for key in "xyz":
        storage[key] = key
    assert front.count() == 2  # the front stays bounded
    assert len(storage) == 5  # while the slow storage keeps everything
    del storage["z"]
    assert not front.contains("z") and "z" not in slow
    assert storage.get_many(["old", "x", "gone"]) == {"old": "from disk", "x": "x"}
    storage.clear()
    assert len(slow) == 0 and front.count() == 0

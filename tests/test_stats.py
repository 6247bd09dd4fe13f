"""Stats: counts at its place in the stack; evictions and expirations from the layers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from pystorage import AsyncStorage, Storage, StorageProvider
from pystorage.errors import ConfigurationError
from pystorage.layers import LRU, Codec, CountLimit, Expiry, Files, Memory, Stats, Tier


def test_counts_hits_misses_writes_deletes() -> None:
    storage = Storage(Stats(), Memory())
    storage["a"] = 1
    storage.set_many({"b": 2, "c": 3})
    storage.get("a"), storage.get("zz")
    storage.get_many(["a", "b", "nope"])
    del storage["a"]
    storage.delete_many(["b"])
    assert storage.stats() == {
        "hits": 3, "misses": 2, "writes": 3, "deletes": 2, "bytes_read": 0, "bytes_written": 0
    }  # fmt: skip


def test_counts_bytes_below_a_codec(tmp_path: Path) -> None:
    storage = Storage(Codec("json"), Stats(), Files(tmp_path))
    storage["k"] = {"a": 1}
    storage["k"]
    assert storage.stats()["bytes_written"] == len(b'{"a": 1}')
    assert storage.stats()["bytes_read"] == len(b'{"a": 1}')


def test_evictions_and_expirations_are_counted_by_their_layers() -> None:
    now = [0.0]
    storage = Storage(Stats(), Expiry(5, lambda: now[0]), CountLimit(2), Memory())
    for key in "abc":
        storage[key] = key
    now[0] = 10
    assert len(storage) == 0
    counts = storage.stats()
    assert counts["evictions"] == 1 and counts["expirations"] == 2 and counts["writes"] == 3
    assert Storage(LRU(1)).stats() == {"evictions": 0}


def test_presets_take_stats() -> None:
    storage = StorageProvider().create(StorageProvider.STORAGE_LRU, maxsize=1, stats=True)
    storage["a"] = 1
    storage["b"] = 2
    assert storage.get("a") is None
    assert storage.stats() == {
        "evictions": 1, "hits": 0, "misses": 1, "writes": 2, "deletes": 0,
        "bytes_read": 0, "bytes_written": 0,
    }  # fmt: skip


def test_without_a_stats_layer_nothing_is_counted() -> None:
    assert Storage(Memory()).stats() == {}


def test_a_tier_above_layers_that_remove_entries_is_refused() -> None:
    for remover in (CountLimit(2), Expiry(5)):
        with pytest.raises(ConfigurationError, match="Tier cannot sit above"):
            Storage(Tier(LRU(10)), remover, Memory())
    volatile = StorageProvider().create(StorageProvider.STORAGE_VOLATILE, expiration=5)
    with pytest.raises(ConfigurationError):
        StorageProvider().create(StorageProvider.STORAGE_LRU, maxsize=10, storage=volatile)


def test_a_tier_over_an_lru_backend_or_with_a_bytes_front_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="Tier cannot sit above LRU"):
        Storage(Tier(LRU(10)), LRU(5))
    with pytest.raises(ConfigurationError, match="stores bytes"):
        Storage(Tier(Files(tmp_path)), Codec("json"), Memory())
    fine = Storage(Codec("json"), Tier(Files(tmp_path)), Memory())
    fine["k"] = [1]
    assert fine["k"] == [1]


KEYS = ["a", "a", "b", "nope", "nope", "a"]


def test_a_batch_counts_each_requested_key_as_a_loop_of_get_would() -> None:
    # A repeated key is a lookup the caller asked for, found or not, like each get.
    def counts(read: Callable[[Storage], object]) -> dict[str, int]:
        storage = Storage(Codec("raw"), Stats(), Memory())
        storage.set_many({"a": b"xyz", "b": b"12"})
        read(storage)
        return storage.stats()

    batch = counts(lambda storage: storage.get_many(KEYS))
    assert batch == counts(lambda storage: [storage.get(key) for key in KEYS])
    assert (batch["hits"], batch["misses"], batch["bytes_read"]) == (4, 2, 3 * 3 + 2)


def test_an_async_batch_counts_each_requested_key_as_a_loop_of_get_would() -> None:
    async def counts(batch: bool) -> dict[str, int]:
        async with AsyncStorage(Codec("raw"), Stats(), Memory()) as storage:
            await storage.set_many({"a": b"xyz", "b": b"12"})
            if batch:
                await storage.get_many(KEYS)
            else:
                for key in KEYS:
                    await storage.get(key)
            return storage.stats()

    batch = asyncio.run(counts(batch=True))
    assert batch == asyncio.run(counts(batch=False))
    assert (batch["hits"], batch["misses"], batch["bytes_read"]) == (4, 2, 3 * 3 + 2)


def test_a_batch_read_with_ttls_counts_as_the_loop_of_get_with_ttl() -> None:
    def counts(read: Callable[[Storage], object]) -> dict[str, int]:
        storage = Storage(Codec("raw"), Stats(), Memory())
        storage.set_many({"a": b"xyz", "b": b"12"})
        read(storage)
        return storage.stats()

    batch = counts(lambda storage: storage.get_many_with_ttl(KEYS))
    assert batch == counts(lambda storage: storage.get_many(KEYS))
    assert (batch["hits"], batch["misses"], batch["bytes_read"]) == (4, 2, 3 * 3 + 2)

"""Every stack the conformance suite runs on: presets, codec swaps and custom stacks.

A stack factory takes a fresh folder and returns a new Storage. Later backends join the
suite by adding an entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pystorage import Storage, StorageProvider
from pystorage.codecs import Gzip, MsgPack, Pickle, Zstd
from pystorage.layers import LRU, Codec, CountLimit, Expiry, Files, Memory, Tier

StackFactory = Callable[[Path], Storage]
provider = StorageProvider()


def _preset(name: str, **kwargs: object) -> StackFactory:
    def build(folder: Path) -> Storage:
        storage: Storage = provider.create(name, path=folder, **kwargs)
        return storage

    return build


STACKS: dict[str, StackFactory] = {
    "memory": lambda folder: provider.create(StorageProvider.STORAGE_MEMORY),
    "memory-json": lambda folder: provider.create(StorageProvider.STORAGE_MEMORY, codec="json"),
    "lru": lambda folder: provider.create(StorageProvider.STORAGE_LRU, maxsize=100_000),
    "json": _preset(StorageProvider.STORAGE_JSON),
    "json-as-msgpack": _preset(StorageProvider.STORAGE_JSON, codec="msgpack"),
    "pickle": _preset(StorageProvider.STORAGE_PICKLE),
    "pickle-gzip": _preset(StorageProvider.STORAGE_PICKLE_GZIP),
    "msgpack": _preset(StorageProvider.STORAGE_MSGPACK),
    "zstd": _preset(StorageProvider.STORAGE_ZSTD),
    "zstd-msgpack-memory": lambda folder: Storage(Codec(MsgPack() | Zstd()), Memory()),
    "gzip-pickle-files-nosuffix": lambda folder: Storage(Codec(Pickle() | Gzip(1)), Files(folder)),
    "lru-tier-over-pickle": lambda folder: Storage(
        Tier(LRU(3)), Codec("pickle"), Files(folder, "pkl")
    ),
    "disklru": _preset(StorageProvider.STORAGE_DISKLRU, limit=10_000),
    "disklru-as-json": _preset(StorageProvider.STORAGE_DISKLRU, limit=10_000, codec="json"),
    "volatile-memory": lambda folder: provider.create(
        StorageProvider.STORAGE_VOLATILE, expiration=3600
    ),
    "volatile-over-pickle": lambda folder: provider.create(
        StorageProvider.STORAGE_VOLATILE,
        storage=provider.create(StorageProvider.STORAGE_PICKLE, path=folder),
        expiration=3600,
    ),
    "expiry-countlimit-codec-files": lambda folder: Storage(
        Expiry(3600), CountLimit(10_000), Codec("zstd-msgpack"), Files(folder, "bin")
    ),
    "expiry-tier-countlimit-memory": lambda folder: Storage(
        Expiry(), Tier(LRU(4)), CountLimit(10_000), Memory()
    ),
}

"""Every stack the conformance suite runs on: presets, codec swaps and custom stacks.

A stack factory takes a :class:`Place` (a fresh folder, and the test's fixtures for
remote servers) and returns a new Storage. Backends join the suite by adding an entry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from pystorage import Storage, StorageProvider
from pystorage.aio.storage import AsyncStorage
from pystorage.codecs import Gzip, MsgPack, Pickle, Zstd
from pystorage.layers import (
    LRU,
    S3,
    Codec,
    CountLimit,
    Expiry,
    Files,
    Memory,
    Redis,
    SizeLimit,
    SQLite,
    Tags,
    Tier,
    TinyLFU,
)
from tests.conformance.async_view import AsyncView
from tests.helpers import unique


@attrs.frozen
class Place:
    """Where a stack lives: a fresh folder, and fixtures for servers when it needs them."""

    folder: Path
    request: pytest.FixtureRequest

    def fixture(self, name: str) -> Any:
        return self.request.getfixturevalue(name)


StackFactory = Callable[[Place], Storage]
provider = StorageProvider()


def _preset(name: str, **kwargs: object) -> StackFactory:
    def build(place: Place) -> Storage:
        storage: Storage = provider.create(name, path=place.folder, **kwargs)
        return storage

    return build


def _by_frequency(db: SQLite, entries: int, size: int) -> SQLite:
    """``db`` keeping both bounds by ``eviction="tinylfu"`` in SQL, as a ``CountLimit`` and
    a ``SizeLimit`` with that eviction hand them down when the stack is built."""
    for measure, bound in (("entries", entries), ("bytes", size)):
        assert db.take_bound(measure, bound, "tinylfu")  # type: ignore[arg-type]
    return db


#: Stacks that live in this process and on local disk.
STACKS: dict[str, StackFactory] = {
    "memory": lambda place: provider.create(StorageProvider.STORAGE_MEMORY),
    "memory-json": lambda place: provider.create(StorageProvider.STORAGE_MEMORY, codec="json"),
    "lru": lambda place: provider.create(StorageProvider.STORAGE_LRU, maxsize=100_000),
    "json": _preset(StorageProvider.STORAGE_JSON),
    "json-as-msgpack": _preset(StorageProvider.STORAGE_JSON, codec="msgpack"),
    "pickle": _preset(StorageProvider.STORAGE_PICKLE),
    "pickle-gzip": _preset(StorageProvider.STORAGE_PICKLE_GZIP),
    "msgpack": _preset(StorageProvider.STORAGE_MSGPACK),
    "zstd": _preset(StorageProvider.STORAGE_ZSTD),
    "zstd-msgpack-memory": lambda place: Storage(Codec(MsgPack() | Zstd()), Memory()),
    "gzip-pickle-files-nosuffix": lambda place: Storage(
        Codec(Pickle() | Gzip(1)), Files(place.folder)
    ),
    "lru-tier-over-pickle": lambda place: Storage(
        Tier(LRU(3)), Codec("pickle"), Files(place.folder, "pkl")
    ),
    "tinylfu": lambda place: Storage(TinyLFU(100_000)),
    "tinylfu-tier-over-pickle": lambda place: Storage(
        Tier(TinyLFU(3)), Codec("pickle"), Files(place.folder, "pkl")
    ),
    "disklru": _preset(StorageProvider.STORAGE_DISKLRU, limit=10_000),
    "disklru-as-json": _preset(StorageProvider.STORAGE_DISKLRU, limit=10_000, codec="json"),
    "volatile-memory": lambda place: provider.create(
        StorageProvider.STORAGE_VOLATILE, expiration=3600
    ),
    "volatile-over-pickle": lambda place: provider.create(
        StorageProvider.STORAGE_VOLATILE,
        storage=provider.create(StorageProvider.STORAGE_PICKLE, path=place.folder),
        expiration=3600,
    ),
    "expiry-countlimit-codec-files": lambda place: Storage(
        Expiry(3600), CountLimit(10_000), Codec("zstd-msgpack"), Files(place.folder, "bin")
    ),
    "expiry-countlimit-tier-memory": lambda place: Storage(
        Expiry(), CountLimit(10_000), Tier(LRU(4)), Memory()
    ),
    "sqlite": lambda place: provider.create(
        StorageProvider.STORAGE_SQLITE, path=place.folder / "cache.db"
    ),
    "sqlite-expiring-limited-json": lambda place: provider.create(
        StorageProvider.STORAGE_SQLITE,
        path=place.folder / "cache.db",
        codec="json",
        limit=10_000,
        expiration=3600,
    ),
    "expiry-tier-sqlite-msgpack": lambda place: Storage(
        Expiry(3600), Tier(LRU(4)), Codec("msgpack"), SQLite(place.folder / "t.db")
    ),
    # Both limits handed down to SQL, by use and by age of the write.
    "sqlite-count-and-bytes-limited": lambda place: provider.create(
        StorageProvider.STORAGE_SQLITE,
        path=place.folder / "cache.db",
        limit=10_000,
        max_bytes=50_000_000,
        expiration=3600,
    ),
    "sqlite-bytes-limited-by-write-age": lambda place: provider.create(
        StorageProvider.STORAGE_SQLITE,
        path=place.folder / "cache.db",
        max_bytes=50_000_000,
        eviction="stored",
    ),
    # Both limits kept in SQL by the frequency policy (sqlite_eviction.ByFrequency).
    "expiry-sqlite-tinylfu-count-and-bytes": lambda place: Storage(
        Expiry(3600),
        Codec("pickle"),
        _by_frequency(SQLite(place.folder / "t.db"), 10_000, 50_000_000),
    ),
    # A Tier keeps the limit above it a layer (its front would outlive SQL evictions).
    "countlimit-tier-sqlite": lambda place: Storage(
        CountLimit(10_000), Tier(LRU(4)), Codec("pickle"), SQLite(place.folder / "t.db")
    ),
    "sizelimit-files": lambda place: Storage(
        Expiry(3600), Codec("pickle"), SizeLimit(50_000_000), Files(place.folder)
    ),
    "sizelimit-by-write-age-memory": lambda place: Storage(
        Codec("msgpack"), SizeLimit(50_000_000, eviction="stored"), Memory()
    ),
    # Adaptive W-TinyLFU behind the limits (issue 18), on every kind of backend.
    "expiry-countlimit-tinylfu-files": lambda place: Storage(
        Expiry(3600), CountLimit(10_000, eviction="tinylfu"), Codec("pickle"), Files(place.folder)
    ),
    "sizelimit-tinylfu-memory": lambda place: Storage(
        Codec("msgpack"), SizeLimit(50_000_000, eviction="tinylfu"), Memory()
    ),
    # Tags on top (issue 19): every value in an envelope, the mapping unchanged.
    "tags-memory": lambda place: Storage(Tags(), Memory()),
    "tags-tier-files-json": lambda place: Storage(
        Tags(), Tier(LRU(4)), Codec("json", tagged=True), Files(place.folder)
    ),
    "tags-expiry-countlimit-tier-sqlite": lambda place: Storage(
        Tags(),
        Expiry(3600),
        CountLimit(10_000),
        Tier(LRU(4)),
        Codec("msgpack", tagged=True),
        SQLite(place.folder / "t.db"),
    ),
    "sqlite-limited-tinylfu": lambda place: provider.create(
        StorageProvider.STORAGE_SQLITE,
        path=place.folder / "cache.db",
        limit=10_000,
        max_bytes=50_000_000,
        expiration=3600,
        eviction="tinylfu",
    ),
}


def _redis(
    codec: str,
    *above: Any,
    cluster: bool = False,
    below: tuple[Any, ...] = (),
    tagged: bool = False,
) -> StackFactory:
    def build(place: Place) -> Storage:
        import redis
        from redis.cluster import RedisCluster

        if cluster:
            client = RedisCluster.from_url(place.fixture("redis_cluster_url"))
        else:
            client = redis.Redis.from_url(place.fixture("redis_url"))
        # A fresh prefix per storage: tests never see each other's keys.
        prefix = unique("t:") + ":"
        return Storage(*above, Codec(codec, tagged=tagged), *below, Redis(client, prefix=prefix))

    return build


def _redis_preset(name: str, **kwargs: object) -> StackFactory:
    def build(place: Place) -> Storage:
        storage: Storage = provider.create(
            name, url=place.fixture("redis_url"), prefix=unique("p:") + ":", **kwargs
        )
        return storage

    return build


def _s3(codec: str, *above: Any, below: tuple[Any, ...] = (), tagged: bool = False) -> StackFactory:
    def build(place: Place) -> Storage:
        options = place.fixture("s3_options")
        backend = S3(
            place.fixture("s3_bucket"),
            unique("t-"),  # a fresh folder per storage
            endpoint_url=options["endpoint_url"],
            region=options["region_name"],
            aws_access_key_id=options["aws_access_key_id"],
            aws_secret_access_key=options["aws_secret_access_key"],
        )
        return Storage(*above, Codec(codec, tagged=tagged), *below, backend)

    return build


#: Stacks on real servers, started by the session's fixtures (see tests/conftest.py).
REMOTE_STACKS: dict[str, StackFactory] = {
    "redis-json": _redis_preset(StorageProvider.STORAGE_REDIS_JSON),
    "redis-as-pickle": _redis_preset(StorageProvider.STORAGE_REDIS, codec="pickle"),
    "redis-expiring": _redis_preset(StorageProvider.STORAGE_REDIS_JSON, expiration=3600),
    "redis-expiry-countlimit-zstd": lambda place: _redis(
        "zstd-msgpack", Expiry(3600), CountLimit(10_000)
    )(place),
    "redis-cluster-json": _redis("json", cluster=True),
    "redis-cluster-expiry-countlimit-msgpack": lambda place: _redis(
        # A bound per process, accepted: a cluster cannot keep one index of every key.
        "msgpack",
        Expiry(3600),
        CountLimit(10_000, per_process=True),
        cluster=True,
    )(place),
    "redis-sizelimit-json": lambda place: _redis(
        "json", Expiry(3600), below=(SizeLimit(50_000_000),)
    )(place),
    "s3-json": _s3("json"),
    # S3 keeps no shared index: its limits are bounds per process, accepted explicitly.
    "s3-sizelimit-pickle": lambda place: _s3(
        "pickle", below=(SizeLimit(50_000_000, per_process=True),)
    )(place),
    "s3-expiry-countlimit-gzip-pickle": lambda place: _s3(
        "gzip-pickle", Expiry(3600), CountLimit(10_000, per_process=True)
    )(place),
    # Redis keeps shared bounds by recency only: tinylfu is a bound per process there.
    "redis-countlimit-tinylfu-json": lambda place: _redis(
        "json", CountLimit(10_000, eviction="tinylfu", per_process=True)
    )(place),
    "redis-tags-expiry-tier-json": lambda place: _redis(
        "json", Tags(), Expiry(3600), Tier(LRU(4)), tagged=True
    )(place),
    "redis-cluster-tags-msgpack": lambda place: _redis(
        "msgpack", Tags(), cluster=True, tagged=True
    )(place),
    "s3-tags-pickle": lambda place: _s3("pickle", Tags(), tagged=True)(place),
    "s3-sizelimit-tinylfu-pickle": lambda place: _s3(
        "pickle", below=(SizeLimit(50_000_000, eviction="tinylfu", per_process=True),)
    )(place),
}

SYNC_STACKS = STACKS | REMOTE_STACKS


def _async(factory: StackFactory) -> StackFactory:
    """The same stack, built as an AsyncStorage and seen through a sync view."""

    def build(place: Place) -> Any:
        sync = factory(place)
        return AsyncView(AsyncStorage(sync), sync.layers[-1])

    return build


#: Every stack again, awaited: built from the sync stack's layers by AsyncStorage.
ASYNC_STACKS: dict[str, StackFactory] = {
    f"async-{name}": _async(factory) for name, factory in SYNC_STACKS.items()
}


def _crowded(factory: StackFactory) -> StackFactory:
    """The async stack, each operation's first command in a pipeline with others'."""

    def build(place: Place) -> Any:
        sync = factory(place)
        return AsyncView(AsyncStorage(sync), sync.layers[-1], crowded=True)

    return build


#: Redis stacks whose operations go through autopipelining's pipelines (issue 23).
ASYNC_STACKS |= {
    f"async-crowded-{name}": _crowded(SYNC_STACKS[name])
    for name in ("redis-expiry-countlimit-zstd", "redis-cluster-json")
}
ALL_STACKS = SYNC_STACKS | ASYNC_STACKS

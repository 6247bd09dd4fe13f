"""The Redis backend and presets, against a real redis-server started by the fixtures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.client import NEVER_DECODE
from redis.cluster import RedisCluster

import pystorage
from pystorage import AsyncStorage, Storage, StorageProvider
from pystorage.errors import (
    BackendError,
    ConfigurationError,
    InvalidKeyError,
    StorageProviderError,
)
from pystorage.layers import Codec, Expiry, Redis
from pystorage.testing import RedisServer, free_port
from tests.helpers import unique


@pytest.fixture
def prefix() -> str:
    return unique("test:") + ":"


def calls(client: redis.Redis, command: str) -> int:
    """How many times the server ran ``command`` so far (INFO commandstats)."""
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_the_readme_example(redis_url: str, prefix: str) -> None:
    redis_client = redis.from_url(redis_url)
    storage = StorageProvider().create(
        StorageProvider.STORAGE_REDIS, redis_client=redis_client, prefix=prefix
    )
    storage["key"] = "value"
    assert storage["key"] == "value"
    assert redis_client.get(f"{prefix}key") == b"value"  # plain text in Redis


@pytest.mark.parametrize("decode_responses", [False, True])
def test_text_comes_back_as_str_whatever_the_client(
    redis_url: str, prefix: str, decode_responses: bool
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=decode_responses)
    storage = StorageProvider().create(
        StorageProvider.STORAGE_REDIS, redis_client=client, prefix=prefix
    )
    storage["k"] = "ünïcode"
    assert storage["k"] == "ünïcode"
    assert storage.get_many(["k"]) == {"k": "ünïcode"}


def test_redis_json_stores_json(client: redis.Redis, redis_url: str, prefix: str) -> None:
    storage = StorageProvider().create(
        StorageProvider.STORAGE_REDIS_JSON, url=redis_url, prefix=prefix
    )
    storage["k"] = {"a": [1, 2]}
    assert client.get(f"{prefix}k") == b'{"a": [1, 2]}'
    assert storage["k"] == {"a": [1, 2]}


def test_a_storage_touches_only_its_prefix_and_never_keys_or_flushdb(
    client: redis.Redis, prefix: str
) -> None:
    client.set("foreign", b"keep me")
    client.set(f"{prefix[:-1]}x", b"a neighbour prefix")
    storage = Storage(Codec("text"), Redis(client, prefix=prefix))
    storage.set_many({f"k{i}": str(i) for i in range(30)})
    keys_before, flush_before, scan_before = (
        calls(client, "keys"),
        calls(client, "flushdb"),
        calls(client, "scan"),
    )
    assert len(storage) == 30
    assert sorted(storage) == sorted(f"k{i}" for i in range(30))
    storage.clear()
    assert len(storage) == 0
    assert client.get("foreign") == b"keep me"
    assert client.get(f"{prefix[:-1]}x") == b"a neighbour prefix"
    assert calls(client, "keys") == keys_before
    assert calls(client, "flushdb") == flush_before
    assert calls(client, "scan") > scan_before


def test_a_prefix_with_glob_characters_is_literal(client: redis.Redis) -> None:
    base = unique("g")
    client.set(f"{base}Xa[:b", b"not mine")
    storage = Storage(Codec("text"), Redis(client, prefix=f"{base}?*[:"))
    storage["a"] = "mine"
    assert list(storage) == ["a"]


def test_batches_are_one_round_trip(client: redis.Redis, prefix: str) -> None:
    storage = Storage(Codec("json"), Redis(client, prefix=prefix))
    keys = [f"k{i}" for i in range(100)]
    mset, mget, get, set_ = (calls(client, c) for c in ("mset", "mget", "get", "set"))
    storage.set_many({key: [key] for key in keys})
    found = storage.get_many([*keys, "missing"])
    assert found == {key: [key] for key in keys}
    assert calls(client, "mset") == mset + 1
    assert calls(client, "mget") == mget + 1
    assert (calls(client, "get"), calls(client, "set")) == (get, set_)
    delete = calls(client, "eval")
    storage.delete_many(keys[:50])
    assert calls(client, "eval") == delete + 1  # one script: it deletes strings only
    assert len(storage) == 50


def test_expiry_is_native(client: redis.Redis, redis_url: str, prefix: str) -> None:
    storage = StorageProvider().create(
        StorageProvider.STORAGE_REDIS_JSON, url=redis_url, prefix=prefix, expiration=60
    )
    storage["default"] = {"a": 1}
    began = time.monotonic()
    storage.set("short", "s", ttl=0.5)
    storage.set_many({"batch": 1}, ttl=30)
    assert 59_000 < client.pttl(f"{prefix}default") <= 60_000
    short = client.pttl(f"{prefix}short")
    # Gone already (-2) only if half a second has passed, as on a loaded machine it can.
    assert 0 < short <= 500 or (short == -2 and time.monotonic() - began >= 0.5), short
    assert 29_000 < client.pttl(f"{prefix}batch") <= 30_000
    assert client.get(f"{prefix}default") == b'{"a": 1}'  # no envelope: Redis keeps the books
    deadline = time.monotonic() + 10  # Redis expires it by its own clock: wait for that
    while client.exists(f"{prefix}short"):
        assert time.monotonic() < deadline, "Redis kept a key past its TTL"
    assert "short" not in storage


def test_per_key_ttl_works_without_an_expiry_layer(client: redis.Redis, prefix: str) -> None:
    storage = Storage(Codec("text"), Redis(client, prefix=prefix))
    storage.set("k", "v", ttl=10)
    assert 9_000 < client.pttl(f"{prefix}k") <= 10_000


def test_expiry_layer_hands_the_ttl_down(client: redis.Redis, prefix: str) -> None:
    storage = Storage(Expiry(20), Codec("text"), Redis(client, prefix=prefix))
    storage["k"] = "v"
    assert client.get(f"{prefix}k") == b"v"
    assert 19_000 < client.pttl(f"{prefix}k") <= 20_000


def test_configuration_errors(client: redis.Redis, redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="client= or a url="):
        Redis()
    with pytest.raises(ConfigurationError, match="not both"):
        Redis(client, redis_url)
    with pytest.raises(ConfigurationError):
        Storage(Redis(client))  # bytes backend without a codec
    storage = Storage(Codec("text"), Redis(client, prefix="x:"))
    with pytest.raises(InvalidKeyError):
        storage[3] = "v"  # type: ignore[index]


def test_missing_keys(client: redis.Redis, prefix: str) -> None:
    storage = Storage(Codec("text"), Redis(client, prefix=prefix))
    with pytest.raises(KeyError):
        storage["nope"]
    with pytest.raises(KeyError):
        del storage["nope"]
    assert "nope" not in storage


def test_an_outage_is_a_backend_error_and_the_same_storage_recovers(
    redis_server: RedisServer | None,
) -> None:
    if redis_server is None:
        pytest.skip("needs the session's own redis-server: it is stopped and started")
    storage = StorageProvider().create(
        StorageProvider.STORAGE_REDIS, url=redis_server.url, prefix=unique("o:") + ":"
    )
    storage["before"] = "1"
    with redis_server.down():
        started = time.monotonic()
        with pytest.raises(BackendError, match=f"127.0.0.1:{redis_server.port}") as error:
            storage["during"] = "2"
        assert time.monotonic() - started < 10
        assert isinstance(error.value.__cause__, redis.ConnectionError)
        with pytest.raises(BackendError):
            storage["before"]
    storage["after"] = "3"  # the server came back empty (it keeps no data on disk)
    assert storage["after"] == "3"


# -- what is an entry: prefixes, other types, foreign names, locks ------------------------


@pytest.fixture(params=["server", "server-decoding", "cluster", "cluster-decoding"])
def any_client(
    request: pytest.FixtureRequest, redis_url: str, redis_cluster_url: str
) -> Iterator[Any]:
    """A client of each kind the layer takes, with and without decode_responses."""
    decode = request.param.endswith("-decoding")
    if request.param.startswith("cluster"):
        connection: Any = RedisCluster.from_url(redis_cluster_url, decode_responses=decode)
    else:
        connection = redis.Redis.from_url(redis_url, decode_responses=decode)
    yield connection
    connection.close()


@pytest.fixture
def private_db(redis_server: RedisServer | None) -> Iterator[str]:
    """The URL of a database of the session's own server that no other test uses."""
    if redis_server is None:
        pytest.skip("needs the session's own redis-server: it empties a whole database")
    url = redis_server.url.rsplit("/", 1)[0] + "/9"
    with redis.Redis.from_url(url) as connection:
        connection.flushdb()
        yield url
        connection.flushdb()


def test_prefix_rules() -> None:
    client = redis.Redis()  # never connects: every case is refused or only built
    assert Redis(client).prefix == "pystorage:"
    for bad in ("app", "app:x", "a/"):
        with pytest.raises(ConfigurationError, match="must end with ':'"):
            Redis(client, prefix=bad)
    with pytest.raises(ConfigurationError, match="whole_database=True"):
        Redis(client, prefix="")
    with pytest.raises(ConfigurationError, match='prefix="" only'):
        Redis(client, prefix="app:", whole_database=True)
    assert Redis(client, prefix="", whole_database=True).prefix == ""


def test_the_default_prefix_of_presets_and_urls(client: redis.Redis, redis_url: str) -> None:
    key = unique("k")
    preset = StorageProvider().create(StorageProvider.STORAGE_REDIS, redis_client=client)
    preset[key] = "v"
    assert client.get(f"pystorage:{key}") == b"v"
    assert pystorage.open(f"{redis_url}?codec=text")[key] == "v"
    del preset[key]
    for query in ("prefix=", "prefix=app"):
        with pytest.raises(StorageProviderError, match="prefix"):
            pystorage.open(f"{redis_url}?{query}")


def test_a_prefix_covers_exactly_the_names_that_start_with_it(client: redis.Redis) -> None:
    base = unique("n")
    outer = Storage(Codec("text"), Redis(client, prefix=f"{base}:"))
    inner = Storage(Codec("text"), Redis(client, prefix=f"{base}:sub:"))
    sibling = Storage(Codec("text"), Redis(client, prefix=f"{base}:other:"))
    longer = Storage(Codec("text"), Redis(client, prefix=f"{base}x:"))
    outer["k"], inner["k"], sibling["k"], longer["k"] = "outer", "inner", "sibling", "longer"
    # Siblings and a longer name never see each other; a nested prefix is part of its
    # parent, as documented: its entries are the parent's keys "sub:...".
    assert sorted(outer) == ["k", "other:k", "sub:k"]
    assert list(inner) == ["k"] and list(sibling) == ["k"] and list(longer) == ["k"]
    inner.clear()
    assert sorted(outer) == ["k", "other:k"] and list(longer) == ["k"]
    for storage in (outer, longer):
        storage.clear()


def _foreign_values(client: Any, prefix: str) -> None:
    """Keys under ``prefix`` that are not entries: other types, names that are not UTF-8."""
    client.hset(f"{prefix}hash", "field", "value")
    client.rpush(f"{prefix}list", "a")
    client.sadd(f"{prefix}set", "a")
    client.zadd(f"{prefix}zset", {"a": 1.0})
    for tail in (b"\xff", b"\xc3(", b"ok\xfe"):
        # Hash-tagged on a cluster like the other names would be is irrelevant here.
        client.set(prefix.encode() + tail, b"not a key's UTF-8")


def _foreign_names(client: Any, prefix: str) -> set[bytes]:
    found = client.scan_iter(match=prefix.encode() + b"*", count=1000, **{NEVER_DECODE: True})
    return set(found)


def test_keys_of_other_types_and_foreign_names_are_never_entries(any_client: Any) -> None:
    prefix = unique("types:") + ":"
    storage = Storage(Codec("text"), Redis(any_client, prefix=prefix))
    _foreign_values(any_client, prefix)
    foreign = _foreign_names(any_client, prefix)
    storage.set_many({"a": "1", "b": "2"})
    assert sorted(storage) == ["a", "b"]
    assert len(storage) == 2
    for name in ("hash", "list", "set", "zset"):
        assert name not in storage
        with pytest.raises(KeyError):
            storage[name]
        with pytest.raises(KeyError):
            del storage[name]
    assert storage.get_many(["hash", "a"]) == {"a": "1"}
    storage.delete_many(["hash", "list", "a"])
    assert list(storage) == ["b"]
    storage.clear()
    assert len(storage) == 0
    assert _foreign_names(any_client, prefix) == foreign  # every foreign key is still there
    any_client.delete(*foreign)


@pytest.mark.parametrize("kind", ["usual", "old-lock-namespace", "whole-database"])
def test_memoize_locks_are_never_entries_and_clear_keeps_them(
    kind: str, redis_url: str, request: pytest.FixtureRequest
) -> None:
    if kind == "whole-database":
        url, options = request.getfixturevalue("private_db"), {"whole_database": True}
        prefix = ""
    else:
        url, options = redis_url, {}
        prefix = unique("memo:") + ":" if kind == "usual" else "pystorage-lock:"
    storage = Storage(Codec("pickle"), Redis(url=url, prefix=prefix, **options))
    raw = redis.Redis.from_url(url)
    pattern = _glob(prefix.encode()) + b"*"
    if kind == "old-lock-namespace":  # a fixed name on a server that may have seen it
        for name in raw.scan_iter(match=pattern):
            raw.delete(name)  # (make mutation: what an earlier mutant left, lock included)
    seen: dict[str, Any] = {}

    @storage.memoize(key="compute")
    def compute(x: int) -> int:
        # Inside the call its lock is held: a name under the prefix, and not an entry.
        seen["names"] = set(raw.scan_iter(match=pattern))
        seen["keys"], seen["count"] = sorted(storage), len(storage)
        storage.clear()
        seen["after clear"] = set(raw.scan_iter(match=pattern))
        return x + 1

    storage["other"] = "entry"
    assert compute(1) == 2
    locks = {name for name in seen["names"] if b"\xff" in name}
    assert len(locks) == 1, seen["names"]
    assert seen["keys"] == ["other"] and seen["count"] == 1
    assert seen["after clear"] == locks  # clear() left the running call's lock alone
    assert list(storage) == [compute.cache_key(1)]
    assert not locks & set(raw.scan_iter(match=pattern))  # freed when the call ended
    storage.clear()
    raw.close()


def _glob(prefix: bytes) -> bytes:
    for special in (b"\\", b"*", b"?", b"[", b"]"):
        prefix = prefix.replace(special, b"\\" + special)
    return prefix


def test_a_whole_database_storage_lists_and_clears_only_strings(private_db: str) -> None:
    raw = redis.Redis.from_url(private_db)
    _foreign_values(raw, "")
    foreign = _foreign_names(raw, "")
    storage = Storage(Codec("text"), Redis(url=private_db, prefix="", whole_database=True))
    storage.set_many({"a": "1", "app:b": "2"})
    assert sorted(storage) == ["a", "app:b"]
    storage.clear()
    assert len(storage) == 0
    assert _foreign_names(raw, "") == foreign
    raw.close()


# -- clients of redis.asyncio --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cluster", "server"])
def test_an_async_client_works_in_an_async_storage(
    redis_cluster_url: str, redis_url: str, prefix: str, kind: str
) -> None:
    # The client given is the one used (with every option it was built with), and left
    # open for its owner: as the sync layer does with a client it is given.
    entries = {f"k{i}": i for i in range(50)}  # over many slots: batches split by slot

    async def main() -> None:
        client: Any = (
            redis.asyncio.cluster.RedisCluster.from_url(redis_cluster_url)
            if kind == "cluster"
            else redis.asyncio.Redis.from_url(redis_url)
        )
        try:
            async with AsyncStorage(Codec("json"), Redis(client, prefix=prefix)) as storage:
                backend = storage.layers[-1]
                assert backend.client.template is client  # used as given, on this loop
                async with backend.key_lock("k0"):
                    pass
                await storage.set_many(entries)
                assert await storage.get_many(list(entries)) == entries
                await storage.set("brief", "v", ttl=100)
                value, left = await storage.get_with_ttl("brief")
                assert value == "v" and left is not None and 50 < left <= 100
                assert await storage.incr("k1", 5) == 6
                assert sorted([key async for key in storage]) == sorted([*entries, "brief"])
                await storage.delete_many(list(entries))
                assert await storage.count() == 1
                await storage.clear()
            assert await client.dbsize() >= 0  # still open
        finally:
            await client.aclose()

    asyncio.run(main())


def test_an_unreachable_async_cluster_client_is_a_backend_error_naming_it() -> None:
    port = free_port()

    async def main() -> None:
        client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port)
        try:
            async with AsyncStorage(Codec("json"), Redis(client)) as storage:
                with pytest.raises(BackendError, match=f"127.0.0.1:{port}"):
                    await storage.get("k")
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["cluster", "server"])
def test_an_async_client_in_a_sync_storage_is_refused_at_build(redis_url: str, kind: str) -> None:
    # Its commands are coroutines that nothing awaits: a write would return and write
    # nothing, a read would fail on a coroutine.
    client: Any = (
        redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=free_port())
        if kind == "cluster"
        else redis.asyncio.Redis.from_url(redis_url)
    )
    with pytest.raises(ConfigurationError, match="in an AsyncStorage"):
        Storage(Codec("json"), Redis(client))
    with pytest.raises(ConfigurationError, match="in an AsyncStorage"):
        StorageProvider().create(StorageProvider.STORAGE_REDIS, redis_client=client)

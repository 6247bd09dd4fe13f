"""The Redis backend and presets, against a real redis-server started by the fixtures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from pystorage import Storage, StorageProvider
from pystorage.errors import BackendError, ConfigurationError, InvalidKeyError
from pystorage.layers import Codec, Expiry, Redis
from pystorage.testing import RedisServer
from tests.helpers import unique


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


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
    client.set(f"{base}Xa", b"not mine")
    storage = Storage(Codec("text"), Redis(client, prefix=f"{base}?*["))
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
    delete = calls(client, "del")
    storage.delete_many(keys[:50])
    assert calls(client, "del") == delete + 1
    assert len(storage) == 50


def test_expiry_is_native(client: redis.Redis, redis_url: str, prefix: str) -> None:
    storage = StorageProvider().create(
        StorageProvider.STORAGE_REDIS_JSON, url=redis_url, prefix=prefix, expiration=60
    )
    storage["default"] = {"a": 1}
    storage.set("short", "s", ttl=0.5)
    storage.set_many({"batch": 1}, ttl=30)
    assert 59_000 < client.pttl(f"{prefix}default") <= 60_000
    assert 0 < client.pttl(f"{prefix}short") <= 500
    assert 29_000 < client.pttl(f"{prefix}batch") <= 30_000
    assert client.get(f"{prefix}default") == b'{"a": 1}'  # no envelope: Redis keeps the books
    time.sleep(0.6)
    assert "short" not in storage
    assert client.exists(f"{prefix}short") == 0


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
        StorageProvider.STORAGE_REDIS, url=redis_server.url, prefix=unique("o:")
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

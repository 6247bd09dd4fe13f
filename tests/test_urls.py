"""pystorage.open(url): every scheme, the layer options, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

import pystorage
from pystorage.errors import BackendError, StorageProviderError
from pystorage.layers import LRU, Codec, CountLimit, Expiry, Files, Memory, Redis, Stats, Tier
from tests.helpers import unique


def kinds(storage: pystorage.Storage) -> list[str]:
    return [type(layer).__name__ for layer in storage.layers]


def test_memory() -> None:
    storage = pystorage.open("memory://")
    storage["k"] = object  # no codec: objects as they are
    assert storage["k"] is object
    assert kinds(storage) == ["Memory"]


def test_file_with_codec_and_suffix(tmp_path: Path) -> None:
    storage = pystorage.open(f"file://{tmp_path}?codec=json&suffix=storage.json")
    storage["some_key"] = {"text": "Hello World!"}
    assert json.loads((tmp_path / "some_key.storage.json").read_text()) == {"text": "Hello World!"}
    assert kinds(storage) == ["Codec", "Files"]


def test_every_layer_option_in_its_place(tmp_path: Path) -> None:
    storage = pystorage.open(
        f"file://{tmp_path}?codec=zstd-msgpack&ttl=60&lru=100&limit=10&stats=1"
        "&secret=a-secret-of-sixteen-bytes"
    )
    assert [type(layer) for layer in storage.layers] == [
        Stats, Expiry, CountLimit, Tier, Codec, Files
    ]  # fmt: skip
    assert isinstance(storage.layers[3].front, LRU)  # type: ignore[attr-defined]
    assert storage.layers[4].codec.label == "signed-zstd-msgpack"  # type: ignore[attr-defined]
    for i in range(15):
        storage[str(i)] = {"n": i}
    assert len(storage) == 10
    assert storage.stats()["writes"] == 15 and storage.stats()["evictions"] == 5


def test_redis_url_with_prefix_codec_and_ttl(redis_url: str) -> None:
    prefix = unique("url:") + ":"
    storage = pystorage.open(f"{redis_url}?prefix={prefix}&codec=json&ttl=60&socket_timeout=3")
    storage["k"] = [1, 2]
    client = redis.Redis.from_url(redis_url)
    assert client.get(f"{prefix}k") == b"[1, 2]"
    assert 59_000 < client.pttl(f"{prefix}k") <= 60_000
    backend = storage.layers[-1]
    assert isinstance(backend, Redis) and backend.prefix == prefix


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/x", "unknown scheme"),
        ("file://", "needs a folder"),
        ("file://otherhost/x", "local folder"),
        ("memory://host", "no host"),
        ("memory://?ttl=soon", "ttl= must be a number"),
        ("memory://?limit=-1", "whole number"),
        ("memory://?lru=1.5", "whole number"),
        ("memory://?stats=maybe", "1 or 0"),
        ("memory://?colour=blue", "unknown options colour"),
        ("memory://?secret=abcdefghijklmnopq", "needs a codec"),
        ("memory://?codec=yaml", "unknown codec 'yaml'"),
        ("memory://?codec=json&secret=short", "16 bytes"),
        ("s3://", "needs a bucket"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(StorageProviderError, match=message):
        pystorage.open(url)


def test_not_a_string() -> None:
    with pytest.raises(StorageProviderError):
        pystorage.open(Path("/tmp"))  # type: ignore[arg-type]


def test_memory_with_codec_copies_values() -> None:
    storage = pystorage.open("memory://?codec=pickle")
    value = {"a": [1]}
    storage["k"] = value
    value["a"].append(2)
    assert storage["k"] == {"a": [1]}
    assert isinstance(storage.layers[-1], Memory)


def test_messages_never_show_passwords_or_secrets() -> None:
    url = "redis://:hunter2@127.0.0.1:1/0?bogus=1&secret=sixteen-bytes-or-more"
    with pytest.raises(StorageProviderError) as error:
        pystorage.open(url)
    assert "hunter2" not in str(error.value) and "sixteen-bytes" not in str(error.value)
    assert "unknown options bogus" in str(error.value)
    storage = pystorage.open("redis://:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in repr(storage)
    with pytest.raises(BackendError) as failure:
        storage["k"] = 1
    assert "hunter2" not in str(failure.value) and "127.0.0.1:1" in str(failure.value)


def test_urls_without_secrets_are_quoted_as_given() -> None:
    with pytest.raises(StorageProviderError, match=r"'memory://\?limt=3': unknown options limt"):
        pystorage.open("memory://?limt=3")

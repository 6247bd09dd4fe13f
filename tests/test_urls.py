"""pystorage.open(url): every scheme, the layer options, and clear errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import pystorage
from pystorage.errors import BackendError, ConfigurationError, StorageProviderError
from pystorage.layers import LRU, CountLimit, Expiry, Files, Memory, Redis, Stats, Tier
from pystorage.layers.codec import SignedCodec
from tests.helpers import in_child, other_user, shared_folder, unique


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
        Stats, Expiry, CountLimit, Tier, SignedCodec, Files
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
        ("file://", "by its absolute path"),
        ("file://otherhost/x", "local folder"),
        ("memory://host", "no host"),
        ("memory://?ttl=soon", "ttl= must be a finite number"),
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


# -- every failure is a pystorage error, raised before anything is created (issue 10 #15) --


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://", "needs a host"),
        ("rediss://", "needs a host"),
        ("redis:///0", "needs a host"),
        ("unix://", "needs the socket's path"),
        ("memory://?limit=²", "positive whole number"),
        ("memory://?lru=٣", "positive whole number"),
        ("memory://?limit=0", "positive whole number"),
        ("redis://127.0.0.1:99999/0", "not a valid URL"),
        ("redis://127.0.0.1:0/0", "port"),
        ("redis://127.0.0.1:abc/0", "not a valid URL"),
        ("redis://[::1/0", "not a valid URL"),
        ("redis://[zz]/0", "not a valid URL"),
        ("redis://127.0.0.1:6379/db0", "database number"),
        ("redis://127.0.0.1/0?socket_timeout=abc", "socket_timeout"),
        ("redis://127.0.0.1/0?db=abc", "db"),
        ("s3://bucket/f?region=", "region= must not be empty"),
        ("s3://bucket/f?region=%20", "region"),
        ("s3://bucket/f?endpoint_url=", "endpoint_url= must not be empty"),
        ("s3://bucket/f?endpoint_url=127.0.0.1:8333", "endpoint_url= must be"),
        ("s3://bucket:99999/f", "bucket"),
        ("memory://?ttl=inf", "finite"),
        ("memory://?ttl=nan", "finite"),
        ("memory://?ttl=1e400", "finite"),
        ("memory://?ttl=-1", "finite"),
        ("memory://?ttl=1_0", "finite"),
        ("memory://?limit=3&limit=4", "limit= is given twice"),
        ("memory://?stats=1&stats=0", "stats= is given twice"),
        ("redis://127.0.0.1/0?socket_timeout=1&socket_timeout=2", "socket_timeout= is given"),
        ("file:///tmp/a%00b", "file:///var/cache/app"),
    ],
)
def test_every_bad_url_is_a_provider_error(url: str, message: str) -> None:
    with pytest.raises(StorageProviderError, match=message):
        pystorage.open(url)


@pytest.mark.parametrize("url", ["file:relative", "file://host/path", "file://", "file:"])
def test_file_urls_that_name_no_local_absolute_folder_get_one_message(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    with pytest.raises(StorageProviderError) as error:
        pystorage.open(url)
    assert str(error.value).endswith(
        "a file URL names a local folder by its absolute path: file:///var/cache/app"
    )
    assert list(workdir.iterdir()) == []  # no folder "relative" in the working directory


@pytest.mark.parametrize(
    "options",
    [
        "limit=abc",
        "limit=1&limit=2",
        "codec=nosuch",
        "bogus=1",
        "ttl=inf",
        "stats=maybe",
        "suffix=a/b",
        "codec=json&secret=short",
        "secret=abcdefghijklmnopq&lru=x",
    ],
)
def test_options_are_checked_before_the_folder_is_created(options: str, tmp_path: Path) -> None:
    folder = tmp_path / "new"
    with pytest.raises(StorageProviderError):
        pystorage.open(f"file://{folder}?{options}")
    assert not folder.exists()


def test_the_messages_of_broken_urls_hide_the_password() -> None:
    with pytest.raises(StorageProviderError) as error:
        pystorage.open("redis://user:hunter2@[::1/0?secret=sixteen-bytes-or-more")
    assert "hunter2" not in str(error.value) and "sixteen-bytes" not in str(error.value)
    assert "user:***@" in str(error.value)


def test_memory_lru_bounds_the_memory() -> None:
    storage = pystorage.open("memory://?lru=2")
    assert kinds(storage) == ["LRU"]
    for key in "abc":
        storage[key] = key
    assert sorted(storage) == ["b", "c"] and len(storage) == 2


def test_unix_socket_urls_reach_redis_py() -> None:
    storage = pystorage.open("unix:///run/no-such-redis.sock?db=3&prefix=app:")
    backend = storage.layers[-1]
    assert isinstance(backend, Redis) and backend.prefix == "app:"
    kwargs = backend.client.connection_pool.connection_kwargs
    assert kwargs["path"] == "/run/no-such-redis.sock" and kwargs["db"] == 3


def test_ipv6_hosts_work() -> None:
    storage = pystorage.open("redis://[::1]:6379/2")
    kwargs = storage.layers[-1].client.connection_pool.connection_kwargs  # type: ignore[attr-defined]
    assert kwargs["host"] == "::1" and kwargs["port"] == 6379 and kwargs["db"] == 2


# -- a folder that cannot be opened is a BackendError, not an OSError ---------------------


def _open_and_list(url: str) -> Any:
    with pystorage.open(url) as storage:
        return sorted(storage)


def test_an_unreadable_folder_is_a_backend_error() -> None:
    with shared_folder() as folder:
        private = folder / "private"
        private.mkdir(mode=0o700)
        outcome = in_child(lambda: _open_and_list(f"file://{private}"), user=other_user())
    assert isinstance(outcome, BackendError), repr(outcome)
    assert str(private) in str(outcome)


def test_a_folder_under_an_untraversable_one_is_a_backend_error() -> None:
    with shared_folder() as folder:
        closed = folder / "closed"
        closed.mkdir(mode=0o700)
        outcome = in_child(lambda: _open_and_list(f"file://{closed}/inner"), user=other_user())
    assert isinstance(outcome, BackendError), repr(outcome)


def test_a_full_disk_at_first_open_is_a_backend_error(tmp_path: Path) -> None:
    # RLIMIT_FSIZE=0 makes every write to a file fail (EFBIG), as a full disk does
    # (ENOSPC): a count-limited folder writes its lock file when it is opened.
    url = f"file://{tmp_path}/new?limit=3"
    outcome = in_child(lambda: _open_and_list(url), max_file_size=0)
    assert isinstance(outcome, BackendError), repr(outcome)


@pytest.mark.parametrize("preset", ["volatile", "redis"])
def test_preset_expirations_are_finite(preset: str) -> None:
    options = {"url": "redis://127.0.0.1:1/0"} if preset == "redis" else {}
    with pytest.raises(ConfigurationError, match="finite"):
        pystorage.StorageProvider().create(preset, expiration=float("inf"), **options)


@pytest.mark.parametrize(
    "url",
    ["file:///tmp/folder", "sqlite:///tmp/cache.db", "redis://h:7/0", "s3://bucket/folder"],
)
def test_lock_timeout_sets_how_long_a_lease_lasts_on_each_backend_with_leases(url: str) -> None:
    backend: Any = pystorage.urls.parse(f"{url}?lock_timeout=2.5").make_backend()
    assert backend.lock_timeout == 2.5
    assert pystorage.urls.parse(url).make_backend().lock_timeout == 60.0  # type: ignore[attr-defined]
    for bad in ("0", "-1", "inf", "x", ""):
        with pytest.raises(StorageProviderError, match="lock_timeout= must be a finite number"):
            pystorage.urls.parse(f"{url}?lock_timeout={bad}")


def test_memory_has_no_leases_to_time(tmp_path: Path) -> None:
    with pytest.raises(StorageProviderError, match="unknown options lock_timeout"):
        pystorage.open("memory://?lock_timeout=5")


def test_a_hung_holders_lease_from_the_url_is_taken_over_after_lock_timeout(
    tmp_path: Path,
) -> None:
    storage = pystorage.open(f"sqlite://{tmp_path}/cache.db?lock_timeout=0.3")
    backend: Any = storage.layers[-1]
    with backend.key_lock("k") as hung:
        waited = time.monotonic()
        with backend.key_lock("k") as next_holder:  # as another process's would, after it
            assert time.monotonic() - waited >= 0.3 * 0.9
            assert next_holder._token != hung._token

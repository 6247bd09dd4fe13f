"""The S3 backend, against the real SeaweedFS of the session (no mocks).

Each test works in its own folder of the session bucket; tests that list or clear a
whole bucket create a bucket of their own.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from pystorage import Storage
from pystorage.errors import (
    BackendError,
    ConfigurationError,
    InvalidKeyError,
)
from pystorage.layers import Codec, Expiry
from pystorage.layers.s3 import MAX_ESCAPED_KEY_BYTES, S3
from pystorage.testing import SeaweedS3Server
from tests.helpers import unique

MiB = 1 << 20


# -- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_args(s3_options: dict[str, Any]) -> dict[str, Any]:
    """The fixture's boto3.client kwargs mapped onto the S3 layer's parameters."""
    options = dict(s3_options)
    return {
        "endpoint_url": options.pop("endpoint_url"),
        "region": options.pop("region_name"),
        **options,  # the credentials go through **client_options
    }


@pytest.fixture(scope="module")
def boto(s3_options: dict[str, Any]) -> Any:
    """A plain boto3 client, to look at the bucket behind the storage's back."""
    return boto3.client("s3", **s3_options)


@pytest.fixture
def make(s3_bucket: str, s3_args: dict[str, Any]) -> Iterator[Callable[..., Storage]]:
    """``make(folder=None, codec="raw", bucket=None, **layer_args)``: a storage, closed later."""
    made: list[Storage] = []

    def build(
        folder: str | None = None, codec: str = "raw", bucket: str | None = None, **extra: Any
    ) -> Storage:
        folder = unique("t-") if folder is None else folder
        storage = Storage(Codec(codec), S3(bucket or s3_bucket, folder, **{**s3_args, **extra}))
        made.append(storage)
        return storage

    yield build
    for storage in made:
        storage.close()


@pytest.fixture
def own_bucket(boto: Any) -> Iterator[str]:
    """A bucket for this test alone, for whole-bucket listings; removed afterwards."""
    name = unique("pystorage-own-")
    boto.create_bucket(Bucket=name)
    yield name
    for key in bucket_objects(boto, name):
        boto.delete_object(Bucket=name, Key=key)
    boto.delete_bucket(Bucket=name)


def layer(storage: Storage) -> S3:
    backend = storage.layers[-1]
    assert isinstance(backend, S3)
    return backend


def bucket_objects(boto: Any, bucket: str, prefix: str = "") -> list[str]:
    pages = boto.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [entry["Key"] for page in pages for entry in page.get("Contents", ())]


def count_requests(storage: Storage, operation: str) -> list[dict[str, Any]]:
    """A list that grows by one per ``operation`` request (``"*"``: any) the client sends.

    An event hook on the real client: instrumentation, not a mock.
    """
    calls: list[dict[str, Any]] = []

    def hook(**kwargs: Any) -> None:
        calls.append(kwargs)

    event = "before-call.s3" if operation == "*" else f"before-call.s3.{operation}"
    layer(storage).client.meta.events.register(event, hook)
    return calls


# -- the README use case -----------------------------------------------------------------


def test_readme_use_case_stores_a_file_as_it_is(
    make: Callable[..., Storage], s3_bucket: str, boto: Any, tmp_path: Path
) -> None:
    page = tmp_path / "test.html"
    page.write_bytes(b"<!doctype html>\n<h1>Hello \xc3\xa9</h1>\n")
    folder = unique("t-") + "/some/folder/"
    storage = make(folder)

    with page.open("rb") as fp:
        storage["test.html"] = fp.read()

    assert "test.html" in storage
    assert storage["test.html"] == page.read_bytes()
    assert list(storage) == ["test.html"]
    # Plain keys keep their names in the bucket, byte for byte.
    assert bucket_objects(boto, s3_bucket, folder) == [folder + "test.html"]
    stored = boto.get_object(Bucket=s3_bucket, Key=folder + "test.html")["Body"].read()
    assert stored == page.read_bytes()


def test_missing_keys(make: Callable[..., Storage]) -> None:
    storage = make()
    with pytest.raises(KeyError):
        storage["nope"]
    with pytest.raises(KeyError):
        del storage["nope"]
    assert "nope" not in storage
    assert storage.get("nope") is None
    assert storage.pop("nope", 1) == 1

    storage["k"] = b"v"
    del storage["k"]
    assert "k" not in storage
    with pytest.raises(KeyError):
        del storage["k"]


def test_small_values_take_one_request_each(make: Callable[..., Storage]) -> None:
    storage = make()
    calls = count_requests(storage, "*")
    storage["k"] = b"small"
    assert storage["k"] == b"small"
    assert "k" in storage
    operations = [call["model"].name for call in calls]
    assert operations == ["PutObject", "GetObject", "HeadObject"]


# -- listing -----------------------------------------------------------------------------


def test_more_than_a_thousand_keys(make: Callable[..., Storage]) -> None:
    folder = unique("t-") + "/deep/"
    storage = make(folder)
    items = {f"key-{i:04d}": str(i).encode() for i in range(1100)}
    storage.set_many(items)

    assert len(storage) == 1100
    keys = list(storage)
    assert sorted(keys) == sorted(items)  # no folder in the keys
    assert storage.get_many(["key-0000", "key-1099"]) == {
        "key-0000": b"0",
        "key-1099": b"1099",
    }

    calls = count_requests(storage, "DeleteObjects")
    storage.clear()
    assert len(storage) == 0
    assert len(calls) == 2  # 1,000 + 100


def test_folders_do_not_see_each_other(make: Callable[..., Storage], boto: Any) -> None:
    base = unique("t-")
    outer = make(base)
    inner = make(base + "/inner")  # a sub-folder of the other one
    sibling = make(base + "-2")  # a name starting like the other one

    outer["a"] = b"outer"
    inner["a"] = b"inner"
    inner["b"] = b"inner"
    sibling["c"] = b"sibling"

    assert list(outer) == ["a"]
    assert sorted(inner) == ["a", "b"]
    assert list(sibling) == ["c"]
    assert outer["a"] == b"outer"
    assert inner["a"] == b"inner"
    assert "b" not in outer

    outer.clear()
    assert len(outer) == 0
    assert sorted(inner) == ["a", "b"]
    assert list(sibling) == ["c"]


def test_top_level_folder(make: Callable[..., Storage], own_bucket: str, boto: Any) -> None:
    top = make("", bucket=own_bucket)
    sub = make("sub/", bucket=own_bucket)
    top["x"] = b"1"
    sub["y"] = b"2"
    assert sorted(bucket_objects(boto, own_bucket)) == ["sub/y", "x"]
    assert list(top) == ["x"]
    top.clear()
    assert bucket_objects(boto, own_bucket) == ["sub/y"]


def test_foreign_objects_are_ignored(
    make: Callable[..., Storage], s3_bucket: str, boto: Any
) -> None:
    folder = unique("t-") + "/"
    storage = make(folder)
    storage["A"] = b"ours"
    # Not canonical escapes of any key, or in a sub-folder: not entries of this storage.
    for name in ("%41", "a%2e", "%2E%2E", "sub/x", "with space"):
        boto.put_object(Bucket=s3_bucket, Key=folder + name, Body=b"foreign")

    assert list(storage) == ["A"]
    assert len(storage) == 1
    storage.clear()
    remaining = sorted(bucket_objects(boto, s3_bucket, folder))
    assert remaining == sorted(
        folder + name for name in ("%41", "a%2e", "%2E%2E", "sub/x", "with space")
    )


def test_keys_by_age_oldest_write_first(make: Callable[..., Storage]) -> None:
    storage = make()
    storage["old"] = b"1"
    time.sleep(1.1)  # S3 times have one-second resolution
    storage["new"] = b"2"
    assert layer(storage).keys_by_age() == ["old", "new"]


# -- keys --------------------------------------------------------------------------------

HOSTILE_KEYS = [
    "a/b",
    "../x",
    "",
    ".",
    "..",
    "a//b",
    "trailing/",
    "/leading",
    "é",
    "日本語",
    "😀 emoji",
    "\ud800",  # a lone surrogate
    "%41",
    "%",
    "a%2Fb",
    " spaces ",
    "tab\tnew\nline",
    "?query=1&x#frag",
    "back\\slash",
    "*",
    "~",
    "CaSe",
    "case",
    "x" * 300,
]


def test_hostile_keys_round_trip_or_refuse(
    make: Callable[..., Storage], own_bucket: str, boto: Any
) -> None:
    folder = "hostile/"
    storage = make(folder, bucket=own_bucket)
    stored = []
    refused = []
    for index, key in enumerate(HOSTILE_KEYS):
        value = f"value {index}".encode()
        try:
            storage[key] = value
        except InvalidKeyError:
            refused.append(key)
            continue
        stored.append(key)
        assert storage[key] == value, key
        assert key in storage

    assert refused == []  # the over-long key too: stored under its hash
    assert sorted(storage) == sorted(stored)
    assert len(storage) == len(stored)
    assert storage.get_many(HOSTILE_KEYS) == {
        key: f"value {HOSTILE_KEYS.index(key)}".encode() for key in stored
    }
    # Every object of the whole bucket sits directly in the storage's folder.
    names = bucket_objects(boto, own_bucket)
    assert len(names) == len(stored)
    assert all(name.startswith(folder) and "/" not in name[len(folder) :] for name in names)

    for key in stored:
        del storage[key]
    assert bucket_objects(boto, own_bucket) == []


def test_invalid_keys(make: Callable[..., Storage]) -> None:
    storage = make()
    backend = layer(storage)
    for key in (1, b"bytes", None, ("t",)):
        with pytest.raises(InvalidKeyError):
            storage[key] = b"v"  # type: ignore[index]
        with pytest.raises(InvalidKeyError):
            backend.get(key)  # type: ignore[arg-type]
        with pytest.raises(InvalidKeyError):
            backend.delete_many([key])  # type: ignore[list-item]
    # A folder that leaves no room within S3's 1,024 bytes for even a hashed name:
    # refused before any request, for every operation.
    cramped = make(folder="/".join(["f" * 200] * 5))  # 1,005 bytes with its slash
    calls = count_requests(cramped, "*")
    key = "x" * 100  # 19 bytes are left: too few for it, or for its 65-byte hash
    for operation in (
        lambda: cramped.__setitem__(key, b"v"),
        lambda: cramped[key],
        lambda: key in cramped,
        lambda: cramped.get_many([key]),
    ):
        with pytest.raises(InvalidKeyError):
            operation()
    assert calls == []


def test_long_keys_are_stored_under_a_hash_and_listed_as_themselves(
    make: Callable[..., Storage], boto: Any, s3_bucket: str
) -> None:
    storage = make()
    long_keys = ["é" * 200, "x" * 300, "x" * 299 + "y", "k" * 10_000]
    for index, key in enumerate(long_keys):
        storage[key] = bytes([index]) * 10
    assert sorted(storage) == sorted(long_keys)
    assert all(storage[key] == bytes([i]) * 10 for i, key in enumerate(long_keys))
    assert storage.get_many(long_keys[:2]) == {long_keys[0]: b"\0" * 10, long_keys[1]: b"\1" * 10}
    folder = layer(storage).folder
    objects = bucket_objects(boto, s3_bucket)
    mine = [name for name in objects if name.startswith(folder)]
    assert len(mine) == 4 and all(len(name) - len(folder) == 65 for name in mine)
    storage.delete_many(long_keys)
    assert len(storage) == 0


def test_a_key_too_long_to_be_listed_is_refused_before_any_request(
    make: Callable[..., Storage],
) -> None:
    storage = make()
    longest = "k" * MAX_ESCAPED_KEY_BYTES  # its first line, newline included, is 1 MiB
    too_long = "k" * (MAX_ESCAPED_KEY_BYTES + 1)
    escapes_too_long = "/" * (MAX_ESCAPED_KEY_BYTES // 3 + 1)  # "%2F" each
    storage[longest] = b"v"
    assert list(storage) == [longest] and len(storage) == 1
    calls = count_requests(storage, "*")
    for key in (too_long, escapes_too_long):
        for operation in (
            lambda k: storage.__setitem__(k, b"v"),
            lambda k: storage.set_many({"fine": b"v", k: b"v"}),
            lambda k: storage[k],
            lambda k: storage.get_many([k]),
        ):
            with pytest.raises(InvalidKeyError, match="never listed"):
                operation(key)
    assert calls == []  # nothing was written, nor even asked
    storage.clear()
    assert len(storage) == 0


# -- batches -----------------------------------------------------------------------------


def test_batch_semantics(make: Callable[..., Storage]) -> None:
    storage = make()
    storage.set_many({"a": b"1", "b": b"2", "c": b"3"})
    assert storage.get_many(["a", "missing", "c", "a"]) == {"a": b"1", "c": b"3"}
    assert storage.get_many([]) == {}
    assert storage.get_many(["missing"]) == {}
    storage.delete_many(["a", "missing", "a"])
    assert sorted(storage) == ["b", "c"]
    storage.delete_many([])
    storage.set_many({})
    storage.set_many({"b": b"new", "d": bytearray(b"4")})
    assert storage.get_many(["b", "d"]) == {"b": b"new", "d": b"4"}


def test_delete_many_sends_one_request_per_thousand_keys(make: Callable[..., Storage]) -> None:
    storage = make()
    keys = [f"k{i}" for i in range(2500)]
    storage.set_many({key: b"x" for key in keys[:2400]})  # the last 100 stay missing
    assert len(storage) == 2400

    calls = count_requests(storage, "DeleteObjects")
    storage.delete_many(keys)
    assert len(calls) == 3
    # before-call sees the request as sent: count the keys in each XML body.
    assert [call["params"]["body"].count(b"<Key>") for call in calls] == [1000, 1000, 500]
    assert len(storage) == 0


def test_thread_pool_is_reused_and_closed(make: Callable[..., Storage]) -> None:
    storage = make(max_workers=4)
    backend = layer(storage)
    storage.set_many({str(i): b"v" for i in range(10)})
    pool = backend._pool
    assert pool is not None
    assert len(storage.get_many([str(i) for i in range(10)])) == 10
    assert backend._pool is pool
    storage.close()
    assert backend._pool is None
    # A closed storage still works: the pool and the connections come back on demand.
    assert len(storage.get_many([str(i) for i in range(10)])) == 10
    storage.close()
    storage.close()


def test_large_value_round_trips(make: Callable[..., Storage]) -> None:
    storage = make()
    value = os.urandom(MiB) * 64  # at the default multipart threshold; one allocation
    digest = hashlib.sha256(value).digest()
    uploads = count_requests(storage, "CreateMultipartUpload")
    storage["big"] = value
    del value
    assert len(uploads) == 1  # above the threshold, the value went up in parts
    read = storage["big"]
    assert len(read) == 64 * MiB
    assert hashlib.sha256(read).digest() == digest


# -- stacks over S3 ----------------------------------------------------------------------


def test_json_codec_over_s3(make: Callable[..., Storage]) -> None:
    storage = make(codec="json")
    storage["doc"] = {"text": "Hello World!", "n": [1, 2.5, None]}
    storage.set_many({"x": {"a": 1}, "y": []})
    assert storage["doc"] == {"text": "Hello World!", "n": [1, 2.5, None]}
    assert storage.get_many(["x", "y", "z"]) == {"x": {"a": 1}, "y": []}


def test_a_ttl_lives_in_the_object_metadata(
    make: Callable[..., Storage], s3_bucket: str, boto: Any
) -> None:
    storage = make()
    storage.set("k", b"v", ttl=100)
    backend = storage.layers[-1]
    assert isinstance(backend, S3)
    head = boto.head_object(Bucket=s3_bucket, Key=backend.folder + "k")
    deadline = float(head["Metadata"]["pystorage-deadline"])
    assert 50 < deadline - time.time() <= 100
    assert boto.get_object(Bucket=s3_bucket, Key=backend.folder + "k")["Body"].read() == b"v"
    assert storage.expire() == 0  # not expired yet


def test_expiry_over_s3(s3_bucket: str, s3_args: dict[str, Any], boto: Any) -> None:
    now = [1_000_000.0]
    folder = unique("t-") + "/"
    with Storage(
        Expiry(clock=lambda: now[0]), Codec("pickle"), S3(s3_bucket, folder, **s3_args)
    ) as storage:
        storage.set("short", {"v": 1}, ttl=10)
        storage["forever"] = {"v": 2}
        assert storage["short"] == {"v": 1}
        now[0] += 11
        with pytest.raises(KeyError):
            storage["short"]
        assert "short" not in storage
        assert storage.get_many(["short", "forever"]) == {"forever": {"v": 2}}
        assert storage["forever"] == {"v": 2}
        # The reads above noted short's deadline: listings leave it out...
        assert sorted(storage) == ["forever"]
        assert len(storage) == 1
        # ...though it is still there until expire() removes it.
        assert bucket_objects(boto, s3_bucket, folder) == [folder + "forever", folder + "short"]
        assert storage.expire() == 1
        assert bucket_objects(boto, s3_bucket, folder) == [folder + "forever"]


def test_expire_sweeps_in_batches_and_spares_what_was_rewritten(
    s3_bucket: str, s3_args: dict[str, Any], boto: Any
) -> None:
    # Issue 17, item 8: len() and iteration counted expired objects, and expire() raised.
    now = [1_000_000.0]
    folder = unique("t-") + "/"
    backend = S3(s3_bucket, folder, **s3_args)
    backend.clock = lambda: now[0]
    with Storage(Codec("raw"), backend) as storage:
        storage.set_many({f"e{number:04}": b"x" for number in range(1_005)}, ttl=10)
        storage.set_many({"live": b"l", "later": b"l"})
        storage.set("later", b"v", ttl=100)
        deletes = count_requests(storage, "DeleteObjects")
        now[0] += 11
        assert len(storage) == 1_007  # never read here: the listing cannot tell
        # A writer replaces e0000 after expire() saw it expired, before it deletes.
        rewritten = threading.Event()

        def rewrite(**_: Any) -> None:
            if not rewritten.is_set():  # the first page's DeleteObjects, e0000 in it
                rewritten.set()
                boto.put_object(Bucket=s3_bucket, Key=folder + "e0000", Body=b"new")

        storage.layers[-1].client.meta.events.register("before-call.s3.DeleteObjects", rewrite)
        assert storage.expire() == 1_004
        assert len(deletes) == 2  # 1,000 keys per request at most
        assert sorted(storage) == ["e0000", "later", "live"]
        assert storage["e0000"] == b"new"
        assert storage.stats() == {"expirations": 1_004}


# -- configuration -----------------------------------------------------------------------


def test_folder_is_normalised(s3_bucket: str, s3_args: dict[str, Any]) -> None:
    assert S3(s3_bucket, "a", **s3_args).folder == "a/"
    assert S3(s3_bucket, "a/b/", **s3_args).folder == "a/b/"
    assert S3(s3_bucket, "a/b//", **s3_args).folder == "a/b/"
    assert S3(s3_bucket, **s3_args).folder == ""
    for bad in ("/a", "a//b", "./a", "a/../b", "/", "a/."):
        with pytest.raises(ConfigurationError):
            S3(s3_bucket, bad, **s3_args)


def test_configuration_errors(s3_bucket: str, s3_args: dict[str, Any], boto: Any) -> None:
    with pytest.raises(ConfigurationError):
        S3(s3_bucket, max_workers=0, **s3_args)
    with pytest.raises(ConfigurationError):
        S3("", **s3_args)
    with pytest.raises(ConfigurationError):
        S3(s3_bucket, client=boto, endpoint_url="http://elsewhere")
    given = S3(s3_bucket, unique("t-"), client=boto)
    assert given.client is boto
    given.close()  # a given client is not ours to close
    boto.list_buckets()


def test_client_options_reach_the_client(s3_bucket: str, s3_args: dict[str, Any]) -> None:
    config = Config(connect_timeout=2, retries={"max_attempts": 1, "mode": "standard"})
    backend = S3(s3_bucket, max_workers=3, config=config, **s3_args)
    meta = backend.client.meta
    assert meta.endpoint_url == s3_args["endpoint_url"]
    assert meta.region_name == s3_args["region"]
    assert meta.config.connect_timeout == 2  # the caller's config wins ...
    assert meta.config.retries["total_max_attempts"] == 2
    assert meta.config.max_pool_connections >= 3  # ... over our defaults where it says
    backend.close()


def test_missing_bucket_is_a_backend_error(make: Callable[..., Storage], s3_args: Any) -> None:
    storage = make(bucket=unique("no-such-bucket-"))
    for operation in (lambda: storage["k"], lambda: storage.__setitem__("k", b"v")):
        with pytest.raises(BackendError) as info:
            operation()
        assert "no-such-bucket-" in str(info.value)
        assert s3_args["endpoint_url"] in str(info.value)
        assert info.value.__cause__ is not None


# -- faults ------------------------------------------------------------------------------


def test_server_outage(
    s3_server: SeaweedS3Server | None, make: Callable[..., Storage], s3_args: dict[str, Any]
) -> None:
    if s3_server is None:
        pytest.skip("the S3 server is not ours to stop")
    config = Config(
        connect_timeout=1, read_timeout=2, retries={"max_attempts": 1, "mode": "standard"}
    )
    storage = make(config=config)
    storage["k"] = b"before"

    with s3_server.down():
        operations: list[Callable[[], object]] = [
            lambda: storage["k"],
            lambda: storage.__setitem__("k", b"during"),
            lambda: "k" in storage,
            lambda: list(storage),
            lambda: storage.set_many({"a": b"1", "b": b"2"}),
            lambda: storage.delete_many(["k"]),
        ]
        for operation in operations:
            began = time.monotonic()
            with pytest.raises(BackendError) as info:
                operation()
            assert time.monotonic() - began < 5
            assert s3_args["endpoint_url"] in str(info.value)
            assert layer(storage).bucket in str(info.value)
            assert info.value.__cause__ is not None

    # The same storage object, no rebuild.
    assert storage["k"] == b"before"
    storage["k"] = b"after"
    assert storage["k"] == b"after"
    assert storage.get_many(["k"]) == {"k": b"after"}


def test_put_and_read_options_reach_every_request(make: Callable[..., Storage]) -> None:
    # SeaweedFS has no KMS here, so the pass-through is shown with metadata (which the
    # server stores and returns) and a read option; SSE arguments travel the same way.
    storage = make(
        put_options={"Metadata": {"owner": "tests"}, "ContentType": "application/x-test"},
        read_options={"ChecksumMode": "ENABLED"},
        multipart_threshold=5 * 1024 * 1024,
    )
    backend = layer(storage)
    sent: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, dict(params)))

    backend.client.meta.events.register("provide-client-params.s3.*", record)
    storage["small"] = b"x"
    storage["large"] = b"y" * (6 * 1024 * 1024)  # a multipart upload
    assert storage["small"] == b"x" and "small" in storage
    for name in ("small", "large"):
        head = backend.client.head_object(Bucket=backend.bucket, Key=backend.folder + name)
        assert head["Metadata"] == {"owner": "tests"}
        assert head["ContentType"] == "application/x-test"
    first = {name: params for name, params in reversed(sent)}
    assert first["GetObject"]["ChecksumMode"] == "ENABLED"
    assert first["PutObject"]["Metadata"] == {"owner": "tests"}
    assert first["CreateMultipartUpload"]["Metadata"] == {"owner": "tests"}

"""The S3 backend, pinned where `make mutation MODULE=s3` found it unpinned (issue 24).

Against the real SeaweedFS of tests/conftest.py. Failures are provoked for real: a bucket
that does not exist, an object rewritten by another client between the read and the
conditional write of ``add``/``incr`` (from inside the change, in this one thread), a lock
object another holder put there. Requests are counted with botocore's event hooks on the
real client (instrumentation, not mocks).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from pystorage.errors import BackendError, ConfigurationError, InvalidKeyError
from pystorage.layers import s3 as s3_layer
from pystorage.layers.base import ABSENT
from pystorage.layers.s3 import S3
from tests.helpers import FakeClock, unique

MiB = 1 << 20


@pytest.fixture
def args(s3_options: dict[str, Any]) -> dict[str, Any]:
    """The S3 layer's arguments for the session's server."""
    options = dict(s3_options)
    return {
        "endpoint_url": options.pop("endpoint_url"),
        "region": options.pop("region_name"),
        **options,
    }


@pytest.fixture
def boto(s3_options: dict[str, Any]) -> Any:
    return boto3.client("s3", **s3_options)


@pytest.fixture
def make(s3_bucket: str, args: dict[str, Any]) -> Iterator[Callable[..., S3]]:
    """``make(folder=None, bucket=None, **options)``: an S3 layer in a folder of its own."""
    made: list[S3] = []

    def build(folder: str | None = None, bucket: str | None = None, **options: Any) -> S3:
        backend = S3(
            bucket or s3_bucket, unique("m-") if folder is None else folder, **args, **options
        )
        made.append(backend)
        return backend

    yield build
    for backend in made:
        backend.close()


def _requests(backend: S3, operation: str = "*") -> list[str]:
    """A list that grows by the name of each request the client sends from now on."""
    sent: list[str] = []

    def hook(model: Any, **_: Any) -> None:
        sent.append(model.name)

    event = "before-call.s3" if operation == "*" else f"before-call.s3.{operation}"
    backend.client.meta.events.register(event, hook)
    return sent


def _objects(boto: Any, bucket: str, prefix: str) -> list[str]:
    pages = boto.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(entry["Key"] for page in pages for entry in page.get("Contents", ()))


# -- failures name the action, the key, the bucket and the server ------------------------------


def test_every_failure_names_the_action_the_key_the_bucket_and_the_server(
    make: Callable[..., S3], args: dict[str, Any]
) -> None:
    bucket = unique("no-such-bucket-")
    backend = make(bucket=bucket)
    where = f"in bucket {bucket!r} at {args['endpoint_url']}: "
    backend._lease_tags["token"] = '"etag"'  # as if it held the lock: its release is sent
    actions: dict[str, Callable[[], Any]] = {
        "read key 'k'": lambda: backend.get("k"),
        "read key 'a'": lambda: backend.get_many(["a"]),
        "write key 'k'": lambda: backend.set("k", b"v"),
        "write key 'b'": lambda: backend.set_many({"b": b"v"}, ttl=5),
        "read key 'n'": lambda: backend.modify("n", lambda old: b"1"),
        "read key 'x'": lambda: backend.add("x", b"1"),
        "delete": lambda: backend.delete_many(["a", "b"]),
        "list": lambda: list(backend.keys()),
        "read the token of tag key 't'": lambda: backend.tag_tokens(["t"], True),
        "write the token of tag key 't'": lambda: backend.renew_tag("t"),
        "take the lock of key 'k'": lambda: backend.take_lease("k", "token", 10),
        "release the lock of key 'k'": lambda: backend.end_lease("k", "token"),
    }
    for action, call in actions.items():
        with pytest.raises(BackendError) as caught:
            call()
        assert str(caught.value).startswith(f"S3 cannot {action} {where}"), str(caught.value)
        assert caught.value.__cause__ is not None
    # A HEAD of a missing bucket is a bare 404: a missing key.
    assert backend.contains("k") is False
    with pytest.raises(KeyError):
        backend.delete("k")


def test_a_value_that_is_not_bytes_is_refused_naming_its_type(make: Callable[..., S3]) -> None:
    backend = make()
    with pytest.raises(TypeError) as caught:
        backend.set("k", "text")
    assert str(caught.value) == "S3 stores bytes, not str: put a Codec layer above it"
    backend.set("b", bytearray(b"ab"))
    backend.set_many({"m": memoryview(b"cd")})
    assert backend.get_many(["b", "m"]) == {"b": b"ab", "m": b"cd"}
    assert type(backend.get("b")) is bytes


# -- options ------------------------------------------------------------------------------------


def test_options_are_refused_with_what_is_wrong(
    s3_bucket: str, args: dict[str, Any], boto: Any
) -> None:
    for name in ("max_workers", "multipart_threshold"):
        for bad in (0, -1, True, 1.5, "2"):
            with pytest.raises(ConfigurationError) as caught:
                S3(s3_bucket, **{name: bad}, **args)
            assert str(caught.value) == f"{name} must be a positive int, not {bad!r}"
    assert S3(s3_bucket, max_workers=1, multipart_threshold=1, **args).max_workers == 1
    for bad_bucket in ("", None, 3):
        with pytest.raises(ConfigurationError) as caught:
            S3(bad_bucket, **args)  # type: ignore[arg-type]
        assert str(caught.value) == f"bucket must be a non-empty str, not {bad_bucket!r}"
    with pytest.raises(ConfigurationError) as caught:
        S3(s3_bucket, client=boto, region="eu-west-1")
    assert str(caught.value) == (
        "a client is used as it is: give endpoint_url=, region= and client options "
        "to the client, or leave client= out"
    )
    with pytest.raises(ConfigurationError, match="a client is used as it is"):
        S3(s3_bucket, client=boto, aws_access_key_id="x")
    with pytest.raises(ConfigurationError) as caught:
        S3(s3_bucket, endpoint_url=args["endpoint_url"], region="a", region_name="b")
    assert str(caught.value) == "give region= or region_name=, not both"
    given = S3(s3_bucket, client=boto)
    assert given.client is boto


def test_folders_are_refused_with_what_is_wrong(s3_bucket: str, args: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        S3(s3_bucket, 3, **args)  # type: ignore[arg-type]
    assert str(caught.value) == "folder must be a str, not int"
    for bad in ("/", "//"):
        with pytest.raises(ConfigurationError) as caught:
            S3(s3_bucket, bad, **args)
        assert str(caught.value) == f"folder {bad!r}: use '' for the bucket's top level"
    for bad in ("/a", "a//b", "a/./b", "a/.."):
        with pytest.raises(ConfigurationError) as caught:
            S3(s3_bucket, bad, **args)
        assert str(caught.value) == (
            f"folder {bad!r} must not start with '/' nor contain '//', '.' or '..' "
            "segments: S3-compatible servers rewrite such names"
        )
    assert S3(s3_bucket, "a/b//", **args).folder == "a/b/"
    assert S3(s3_bucket, "XdataX", **args).folder == "XdataX/"  # only slashes are stripped
    assert S3(s3_bucket, "", **args).folder == ""


def test_the_client_built_has_our_defaults_under_the_callers(
    s3_bucket: str, args: dict[str, Any]
) -> None:
    from botocore.config import Config

    backend = S3(s3_bucket, max_workers=5, **args)
    config = backend.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 30)
    assert config.retries == {"total_max_attempts": 4, "mode": "standard"}  # 3 retries
    assert config.max_pool_connections == 5 + 8
    assert backend.client.meta.region_name == args["region"]
    backend.close()
    named = {**args, "region": None, "region_name": "eu-west-3"}
    other = S3(s3_bucket, config=Config(read_timeout=7), **named)
    assert other.client.meta.region_name == "eu-west-3"
    assert (other.client.meta.config.read_timeout, other.client.meta.config.connect_timeout) == (
        7,
        5,
    )
    other.close()


# -- sizes, parts and requests ------------------------------------------------------------------


def test_a_value_of_the_threshold_goes_up_in_parts_of_16_mib(make: Callable[..., S3]) -> None:
    backend = make(multipart_threshold=5 * MiB)
    parts = _requests(backend, "UploadPart")
    puts = _requests(backend, "PutObject")
    backend.set("below", b"b" * (5 * MiB - 1))
    assert (len(puts), len(parts)) == (1, 0)
    backend.set("at", b"a" * (5 * MiB))
    assert (len(puts), len(parts)) == (1, 1)
    value = os.urandom(16 * MiB + 1)
    backend.set("two parts", value)
    assert (len(puts), len(parts)) == (1, 3)  # 16 MiB, then 1 byte
    assert backend.get("two parts") == value
    assert backend.get("at") == b"a" * (5 * MiB)


def test_a_batch_of_one_runs_in_the_callers_thread(make: Callable[..., S3]) -> None:
    backend = make(max_workers=2)
    backend.set_many({"a": b"1"})
    assert backend.get_many(["a"]) == {"a": b"1"}
    assert backend._pool is None  # no thread hop for one
    backend.set_many({"a": b"1", "b": b"2"})
    assert backend._pool is not None
    assert backend._pool._max_workers == 2


def test_the_first_failure_of_a_batch_is_raised(make: Callable[..., S3]) -> None:
    backend = make()
    with pytest.raises(InvalidKeyError):
        backend.set_many({"fine": b"1", 3: b"2"})  # type: ignore[dict-item]
    assert backend.get_many(["fine"]) == {}  # checked before the first request
    bad = make(bucket=unique("no-such-bucket-"))
    with pytest.raises(BackendError, match="cannot read key"):
        bad.get_many([f"k{n}" for n in range(20)])


# -- deadlines ----------------------------------------------------------------------------------


def test_deadlines_are_judged_by_the_clock_to_the_instant(make: Callable[..., S3]) -> None:
    clock = FakeClock()
    backend = make()
    backend.clock = clock
    backend.set("k", b"v", ttl=10)
    backend.set("forever", b"f")
    assert backend.get_with_ttl("k") == (b"v", 10)
    assert backend.get_many_with_ttl(["k", "forever"]) == {"k": (b"v", 10), "forever": (b"f", None)}
    clock.now += 9.5
    assert backend.get_with_ttl("k") == (b"v", 0.5)
    assert backend.contains("k")
    clock.now += 0.5  # exactly at the deadline: gone
    for read in (lambda: backend.get("k"), lambda: backend.get_with_ttl("k")):
        with pytest.raises(KeyError):
            read()
    assert backend.get_many(["k", "forever"]) == {"forever": b"f"}
    assert not backend.contains("k")
    with pytest.raises(KeyError):
        backend.delete("k")
    assert sorted(backend.keys()) == ["forever"]  # noted as expired by the reads above
    assert sorted(key for key, _ in backend._objects(live=False)) == ["forever", "k"]
    assert backend.counters() == {}
    assert backend.expire() == 1
    assert backend.counters() == {"expirations": 1}
    assert backend.expire() == 0
    assert backend.counters() == {"expirations": 1}


def test_an_unreadable_deadline_is_long_past(
    make: Callable[..., S3], s3_bucket: str, boto: Any
) -> None:
    backend = make()
    for text in ("soon", "nan?"):
        boto.put_object(
            Bucket=s3_bucket,
            Key=backend.folder + "k",
            Body=b"v",
            Metadata={"pystorage-deadline": text},
        )
        with pytest.raises(KeyError):
            backend.get("k")
    assert s3_layer._deadline_in({"pystorage-deadline": "x"}) == float("-inf")
    assert s3_layer._deadline_in({"pystorage-deadline": "12.5"}) == 12.5
    assert s3_layer._deadline_in(None) is None
    assert s3_layer._deadline_in({"other": "1"}) is None


def test_a_rewritten_object_is_listed_again(
    make: Callable[..., S3], s3_bucket: str, boto: Any
) -> None:
    clock = FakeClock()
    backend = make()
    backend.clock = clock
    backend.set("k", b"v", ttl=10)
    clock.now += 20
    assert not backend.contains("k")  # noted: expired
    assert list(backend.keys()) == []
    # Another writer puts the same key (other bytes, no deadline): not the object noted.
    boto.put_object(Bucket=s3_bucket, Key=backend.folder + "k", Body=b"new")
    assert list(backend.keys()) == ["k"]
    assert backend.get("k") == b"new"


def test_the_notes_of_deadlines_are_bounded(
    make: Callable[..., S3], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_layer, "_SEEN_MAX", 16)
    backend = make()
    backend.set_many({f"k{n:02}": b"v" for n in range(17)}, ttl=100)
    backend.set("plain", b"p")
    for n in range(17):
        backend.get(f"k{n:02}")
    backend.get("plain")  # no deadline: nothing to note
    names = [name[len(backend.folder) :] for name in backend._seen]
    assert names == [f"k{n:02}" for n in range(2, 17)]  # the oldest two went at the 17th


def test_an_expired_object_is_replaced_by_add_and_incr_with_a_new_deadline(
    make: Callable[..., S3],
) -> None:
    clock = FakeClock()
    backend = make()
    backend.clock = clock
    backend.set("a", b"old", ttl=5)
    backend.set("n", b"7", ttl=5)
    assert backend.add("a", b"x", ttl=100) is False  # still there
    assert backend.modify("n", lambda old: old + b"1", ttl=100) == b"71"
    assert backend.get_with_ttl("n") == (b"71", 5)  # the deadline stays
    clock.now += 5
    assert backend.add("a", b"new", ttl=100) is True
    assert backend.get_with_ttl("a") == (b"new", 100)
    seen: list[Any] = []

    def change(old: Any) -> bytes:
        seen.append(old)
        return b"1"

    assert backend.modify("n", change, ttl=50) == b"1"
    assert seen == [ABSENT] and backend.get_with_ttl("n") == (b"1", 50)
    assert backend.add("fresh", b"f") is True
    assert backend.get_with_ttl("fresh") == (b"f", None)


# -- compare and swap ---------------------------------------------------------------------------


def test_a_write_that_loses_to_another_writer_reads_again(
    make: Callable[..., S3], s3_bucket: str, boto: Any
) -> None:
    backend = make()
    backend.set("n", b"1")
    name = backend.folder + "n"
    seen: list[Any] = []

    def change(old: Any) -> bytes:
        seen.append(old)
        if len(seen) == 1:  # another writer gets there between the read and the write
            boto.put_object(Bucket=s3_bucket, Key=name, Body=b"5")
        return old + b"0"

    assert backend.modify("n", change) == b"50"
    assert seen == [b"1", b"5"]
    assert backend.get("n") == b"50"
    # And a missing key created meanwhile by another writer: add loses, then sees it.
    calls = []

    def create(old: Any) -> bytes:
        calls.append(old)
        if len(calls) == 1:
            boto.put_object(Bucket=s3_bucket, Key=backend.folder + "new", Body=b"theirs")
        return b"mine" if old is ABSENT else old

    assert backend.modify("new", create) == b"theirs"
    assert calls == [ABSENT, b"theirs"]


def test_writers_that_always_win_are_given_up_on(
    make: Callable[..., S3], s3_bucket: str, boto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_layer, "_MAX_RACES", 3)
    backend = make()
    backend.set("n", b"1")
    tries = []

    def change(old: Any) -> bytes:
        tries.append(old)
        boto.put_object(
            Bucket=s3_bucket, Key=backend.folder + "n", Body=f"theirs {len(tries)}".encode()
        )
        return b"mine"

    with pytest.raises(BackendError) as caught:
        backend.modify("n", change)
    assert str(caught.value) == (
        f"S3 key 'n' in bucket {s3_bucket!r}: 3 conditional writes in a row lost to other "
        "writers (does the server compare ETags as it should?)"
    )
    assert len(tries) == 3


# -- leases -------------------------------------------------------------------------------------


def test_a_lease_is_taken_held_taken_over_and_given_back(
    make: Callable[..., S3], s3_bucket: str, boto: Any
) -> None:
    backend = make()
    name = backend.folder + ".key-lock-k"
    assert backend.take_lease("k", "mine", 30) == "mine"
    lock = boto.get_object(Bucket=s3_bucket, Key=name)
    assert lock["Body"].read() == b"mine"
    assert 25 < float(lock["Metadata"]["pystorage-deadline"]) - time.time() <= 30
    assert backend.take_lease("k", "yours", 30) == "mine"  # held: the holder's token
    requests = _requests(backend)
    backend.end_lease("k", "yours")  # never held by that token: nothing sent
    assert requests == []
    backend.end_lease("k", "mine")
    assert requests == ["DeleteObject"]
    assert _objects(boto, s3_bucket, name) == []
    backend.end_lease("k", "mine")  # given back already: nothing sent
    assert requests == ["DeleteObject"]
    # A lapsed lock is taken over; its holder then gives back nothing of the new one.
    assert backend.take_lease("k", "old", 0.001) == "old"
    deadline = time.monotonic() + 10
    while (taken := backend.take_lease("k", "new", 30)) != "new":
        assert taken == "old" and time.monotonic() < deadline
    backend.end_lease("k", "old")
    assert boto.get_object(Bucket=s3_bucket, Key=name)["Body"].read() == b"new"
    backend.end_lease("k", "new")
    assert list(backend.keys()) == []  # locks are never entries


def test_a_lock_without_a_deadline_is_lapsed(
    make: Callable[..., S3], s3_bucket: str, boto: Any
) -> None:
    backend = make()
    boto.put_object(Bucket=s3_bucket, Key=backend.folder + ".key-lock-k", Body=b"ghost")
    assert backend.take_lease("k", "mine", 30) == "mine"


def test_tag_tokens_are_made_once_and_renewed(
    make: Callable[..., S3], s3_bucket: str, boto: Any
) -> None:
    backend = make()
    assert backend.tag_tokens([], True) == {}
    assert backend.tag_tokens(["t", "u"], False) == {}
    made = backend.tag_tokens(["t", "u"], True)
    assert set(made) == {"t", "u"} and made["t"] != made["u"]
    assert backend.tag_tokens(["u", "t", "v"], False) == made
    stored = boto.get_object(Bucket=s3_bucket, Key=backend.folder + ".tag-t")["Body"].read()
    assert stored == made["t"].encode()
    assert backend.tag_tokens(["t"], True) == {"t": made["t"]}  # made once
    backend.renew_tag("t")
    renewed = backend.tag_tokens(["t", "u"], False)
    assert renewed["u"] == made["u"] and renewed["t"] != made["t"]
    assert list(backend.keys()) == []


def test_a_folder_without_room_for_a_tag_or_a_lock_says_so(make: Callable[..., S3]) -> None:
    cramped = make(folder="/".join(["f" * 200] * 5))  # 1,005 bytes with its slash
    with pytest.raises(InvalidKeyError) as caught:
        cramped.tag_tokens(["t"], True)
    assert str(caught.value) == f"the folder {cramped.folder!r} leaves no room for tag 't'"
    with pytest.raises(InvalidKeyError) as caught:
        cramped.set("k" * 20, b"v")
    assert str(caught.value) == (
        f"the folder {cramped.folder!r} leaves no room for key {'k' * 20!r} within S3's 1024 bytes"
    )
    cramped.set("k" * 19, b"v")  # exactly the 19 bytes left
    assert list(cramped.keys()) == ["k" * 19]
    cramped.clear()
    roomy = make(folder="/".join(["f" * 200] * 4))  # 804 bytes: room for a hashed name
    roomy.set("k" * 300, b"v")
    assert list(roomy.keys()) == ["k" * 300]
    assert roomy.tag_tokens(["t" * 300], True)
    roomy.clear()


# -- fork, close ------------------------------------------------------------------------------


def test_after_a_fork_the_pool_and_the_connections_are_dropped(make: Callable[..., S3]) -> None:
    # What _forked does in a child, run here by making this process look like one.
    backend = make()
    backend.set_many({"a": b"1", "b": b"2"})
    pool = backend._pool
    assert pool is not None
    backend._pid = -1
    assert backend.get_many(["a", "b"]) == {"a": b"1", "b": b"2"}
    assert backend._pid == os.getpid()
    assert backend._pool is not pool and backend._pool is not None
    pool.shutdown()
    backend._pid = -1
    assert backend.client is backend._client and backend._pid == os.getpid()
    assert backend._pool is None


def test_close_stops_the_pool_and_closes_only_a_client_it_built(
    make: Callable[..., S3], s3_bucket: str, boto: Any
) -> None:
    backend = make()
    backend.set_many({"a": b"1", "b": b"2"})
    pool = backend._pool
    assert pool is not None
    backend.close()
    assert backend._pool is None and pool._shutdown
    assert backend.get("a") == b"1"  # still works
    given = S3(s3_bucket, backend.folder, client=boto)
    given.close()
    assert boto.head_object(Bucket=s3_bucket, Key=backend.folder + "a")["ContentLength"] == 1


# -- races provoked in one thread: another client acts between two requests -------------------


def _before(backend: S3, operation: str, action: Callable[[], Any], times: int = 1) -> None:
    """Run ``action`` before the next ``times`` requests ``operation`` of ``backend``."""
    left = [times]

    def hook(**_: Any) -> None:
        if left[0] > 0:
            left[0] -= 1
            action()

    backend.client.meta.events.register(f"before-call.s3.{operation}", hook)


def test_a_lock_given_back_or_taken_over_meanwhile_is_not_taken(
    make: Callable[..., S3], s3_bucket: str, boto: Any
) -> None:
    backend = make()
    name = backend.folder + ".key-lock-k"
    assert backend.take_lease("k", "holder", 30) == "holder"
    # Its holder gives it back between our failed create and our read of it.
    _before(backend, "GetObject", lambda: boto.delete_object(Bucket=s3_bucket, Key=name))
    assert backend.take_lease("k", "late", 30) == ""
    assert backend.take_lease("k", "lapsed", 0.001) == "lapsed"
    deadline = time.monotonic() + 10
    while (
        float(boto.head_object(Bucket=s3_bucket, Key=name)["Metadata"]["pystorage-deadline"])
        > time.time()
    ):
        assert time.monotonic() < deadline
    # Lapsed: another caller takes it over between our read and our overwrite.
    writes = iter([b"other", b"another"])  # the create (refused: it is there), then the overwrite
    _before(
        backend,
        "PutObject",
        lambda: boto.put_object(Bucket=s3_bucket, Key=name, Body=next(writes)),
        times=2,
    )
    assert backend.take_lease("k", "mine", 30) == ""
    assert boto.get_object(Bucket=s3_bucket, Key=name)["Body"].read() == b"another"


def test_a_tag_token_written_by_another_first_is_the_one_used(
    make: Callable[..., S3], s3_bucket: str, boto: Any
) -> None:
    backend = make()
    name = backend.folder + ".tag-t"
    _before(
        backend, "PutObject", lambda: boto.put_object(Bucket=s3_bucket, Key=name, Body=b"theirs")
    )
    assert backend.tag_tokens(["t"], True) == {"t": "theirs"}
    _before(backend, "GetObject", lambda: boto.delete_object(Bucket=s3_bucket, Key=name), times=2)
    with pytest.raises(BackendError) as caught:
        backend.tag_tokens(["t"], True)
    assert str(caught.value) == "S3 lost the token of tag 't' as it was written"


# -- what is written ------------------------------------------------------------------------------


def test_a_deadline_joins_the_metadata_of_put_options(
    make: Callable[..., S3], s3_bucket: str, boto: Any
) -> None:
    clock = FakeClock()
    backend = make(put_options={"Metadata": {"owner": "tests"}}, multipart_threshold=5 * MiB)
    backend.clock = clock
    backend.set("small", b"v", ttl=10)
    backend.set("large", b"x" * (5 * MiB), ttl=20)
    for key, deadline in (("small", clock.now + 10), ("large", clock.now + 20)):
        head = boto.head_object(Bucket=s3_bucket, Key=backend.folder + key)
        assert head["Metadata"] == {"owner": "tests", "pystorage-deadline": repr(deadline)}
    backend.set("plain", b"p")
    head = boto.head_object(Bucket=s3_bucket, Key=backend.folder + "plain")
    assert head["Metadata"] == {"owner": "tests"}
    assert backend.take_lease("k", "tok", 30) == "tok"
    lock = boto.head_object(Bucket=s3_bucket, Key=backend.folder + ".key-lock-k")
    assert set(lock["Metadata"]) == {"owner", "pystorage-deadline"}


def test_a_conditional_write_is_one_request_whatever_the_size(make: Callable[..., S3]) -> None:
    backend = make(multipart_threshold=5 * MiB)
    puts = _requests(backend, "PutObject")
    uploads = _requests(backend, "CreateMultipartUpload")
    assert backend.add("big", b"x" * (5 * MiB)) is True
    assert backend.modify("big", lambda old: old + b"y") == b"x" * (5 * MiB) + b"y"
    assert (len(puts), len(uploads)) == (2, 0)
    assert backend.get("big") == b"x" * (5 * MiB) + b"y"


def test_a_failed_upload_in_parts_names_the_key(
    make: Callable[..., S3], args: dict[str, Any]
) -> None:
    bucket = unique("no-such-bucket-")
    backend = make(bucket=bucket, multipart_threshold=5 * MiB)
    with pytest.raises(BackendError) as caught:
        backend.set("big", b"x" * (5 * MiB))
    assert str(caught.value).startswith(
        f"S3 cannot write key 'big' in bucket {bucket!r} at {args['endpoint_url']}: "
    )
    refusal = caught.value.__cause__  # the server refused to start the upload
    assert s3_layer._code(refusal) == refusal.response["Error"]["Code"]  # type: ignore[union-attr]


def test_a_batch_runs_on_threads_of_its_own(make: Callable[..., S3]) -> None:
    import threading

    backend = make(max_workers=3)
    names: set[str] = set()
    backend.client.meta.events.register(
        "before-call.s3.PutObject", lambda **_: names.add(threading.current_thread().name)
    )
    backend.set_many({f"k{n}": b"v" for n in range(12)})
    assert names and all(name.startswith("pystorage-s3_") for name in names)
    assert len(names) <= 3


def test_sizes_and_ages_come_from_the_listing(make: Callable[..., S3]) -> None:
    backend = make()
    backend.set_many({"a": b"1", "bb": b"22", "ccc": b"333"}, ttl=100)
    assert sorted(backend.sizes_by_age()) == [("a", 1), ("bb", 2), ("ccc", 3)]
    assert sorted(backend.keys_by_age()) == ["a", "bb", "ccc"]
    assert backend.bound_per_process() == (
        "S3 has no cheap index that every process sees (no transaction, no script; a "
        "listing per write would cost more than the write), so each process would "
        "keep its own"
    )


def test_foreign_hashed_objects_are_not_entries(
    make: Callable[..., S3], s3_bucket: str, boto: Any
) -> None:
    backend = make()
    long_key = "k" * 300
    backend.set(long_key, b"v")
    (name,) = [entry["Key"] for _, entry in backend._objects()]
    stem = name[len(backend.folder) :]
    # Another key's header under a hashed name that is not that key's, and no header.
    boto.put_object(Bucket=s3_bucket, Key=backend.folder + "~" + "0" * 64, Body=b"x" * 300 + b"\nv")
    boto.put_object(Bucket=s3_bucket, Key=backend.folder + "~" + "1" * 64, Body=b"")
    assert list(backend.keys()) == [long_key]
    assert stem.startswith("~") and backend.get(long_key) == b"v"
    # A hashed object holding another key is no value of this one.
    boto.copy_object(
        Bucket=s3_bucket,
        Key=name,
        CopySource={"Bucket": s3_bucket, "Key": backend.folder + "~" + "0" * 64},
    )
    with pytest.raises(KeyError):
        backend.get(long_key)
    assert backend.add(long_key, b"new") is True
    assert backend.get(long_key) == b"new"


# -- objects the server refuses to delete -------------------------------------------------------

#: Names a file-tree server refuses in a DeleteObjects, each with an error of its own (no
#: folder or escaped key has them: the only way to hear such an answer from a real server).
_REFUSED = ["/.", "/..", "/../x", "/./x", "/a/../b", "/a/./b"]


def test_objects_the_server_would_not_delete_are_named(
    make: Callable[..., S3], s3_bucket: str, args: dict[str, Any]
) -> None:
    backend = make()
    backend.set("fine", b"v")
    refused = [backend.folder.rstrip("/") + name for name in _REFUSED]
    with pytest.raises(BackendError) as caught:
        backend._delete_objects([*refused, backend.folder + "fine"])
    shown = ", ".join(f"{name!r}: InvalidRequest Invalid Request" for name in refused[:5])
    assert str(caught.value) == (
        f"S3 could not delete 6 of 7 objects in bucket {s3_bucket!r} at "
        f"{args['endpoint_url']}: {shown}"
    )
    assert list(backend.keys()) == []  # the others went


def test_an_expired_object_is_deleted_only_if_unchanged(
    make: Callable[..., S3], s3_bucket: str, args: dict[str, Any], boto: Any
) -> None:
    backend = make()
    backend.set_many({"same": b"1", "changed": b"2", "gone": b"3"})
    tags = {
        key: boto.head_object(Bucket=s3_bucket, Key=backend.folder + key)["ETag"]
        for key in ("same", "changed", "gone")
    }
    boto.put_object(Bucket=s3_bucket, Key=backend.folder + "changed", Body=b"rewritten")
    boto.delete_object(Bucket=s3_bucket, Key=backend.folder + "gone")
    objects = [(backend.folder + key, tag) for key, tag in tags.items()]
    assert backend._delete_unchanged(objects) == 1
    assert list(backend.keys()) == ["changed"]
    refused = [(backend.folder.rstrip("/") + name, '"0"') for name in _REFUSED]
    with pytest.raises(BackendError) as caught:
        backend._delete_unchanged([*refused, (backend.folder + "changed", '"0"')])
    shown = ", ".join(f"{name!r}: InvalidRequest Invalid Request" for name, _ in refused[:5])
    assert str(caught.value) == (
        f"S3 could not remove 6 of 7 expired objects in bucket {s3_bucket!r} at "
        f"{args['endpoint_url']}: {shown}"
    )
    bad = make(bucket=unique("no-such-bucket-"))
    with pytest.raises(BackendError, match=r"^S3 cannot delete in bucket 'no-such-bucket-"):
        bad._delete_unchanged(objects)


def test_the_defaults(s3_bucket: str, args: dict[str, Any]) -> None:
    backend = S3(s3_bucket, **args)
    assert (backend.folder, backend.max_workers, backend.multipart_threshold) == ("", 16, 64 * MiB)
    assert (backend.put_options, backend.read_options, backend.lock_timeout) == ({}, {}, 60.0)
    assert backend.client.meta.config.max_pool_connections == 16 + 8
    # Parts of 16 MiB, eight at a time (each a connection of the pool: 8 more than workers).
    transfer = backend._transfer
    assert (transfer.multipart_chunksize, transfer.max_request_concurrency) == (16 * MiB, 8)
    assert transfer.multipart_threshold == 64 * MiB
    backend.close()


def test_without_boto3_the_layer_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, s3_bucket: str
) -> None:
    monkeypatch.setitem(sys.modules, "boto3.exceptions", None)  # as if boto3 were not installed
    with pytest.raises(ImportError) as caught:
        S3(s3_bucket)
    assert str(caught.value) == "the S3 backend needs boto3: pip install 'pystorage-layers[s3]'"

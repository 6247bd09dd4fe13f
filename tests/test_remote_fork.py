"""Remote backends used before ``fork()`` keep working in the child, against real servers.

A preloading server (gunicorn ``--preload``) or a ``multiprocessing`` pool with the fork
start method builds a storage, uses it, then forks: the child inherits the parent's
objects but not its threads, and shares its sockets. Each test forks a real child with a
deadline and checks what it could read and write, and that it opened its own connections.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
import redis
from redis.cluster import RedisCluster

from pystorage import Storage
from pystorage.layers import Codec, Redis
from pystorage.layers.s3 import S3
from tests.helpers import unique

DEADLINE = 30.0  # seconds a child may take; a hang fails the test instead of the run


def in_child(work: Callable[[], Any], meanwhile: Callable[[], None] | None = None) -> Any:
    """``work()``'s result, computed in a forked child; a failure if it raises or hangs.

    ``meanwhile()`` runs again and again in the parent until the child is done.
    """
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def run() -> None:
        try:
            send.send(("ok", work()))
        except BaseException as exc:  # reported to the parent, whatever it is
            send.send(("error", f"{type(exc).__name__}: {exc}"))

    child = context.Process(target=run, daemon=True)
    child.start()
    deadline = time.monotonic() + DEADLINE
    try:
        while not receive.poll(0 if meanwhile else DEADLINE):
            if time.monotonic() > deadline:
                pytest.fail(f"the forked child did not finish within {DEADLINE} s")
            if meanwhile:
                meanwhile()
        status, result = receive.recv()
    finally:
        if child.is_alive():
            child.kill()
        child.join(DEADLINE)
    assert status == "ok", result
    return result


# -- S3 ----------------------------------------------------------------------------------


@pytest.fixture(params=["built", "given"])
def s3_storage(
    request: pytest.FixtureRequest, s3_options: dict[str, Any], s3_bucket: str
) -> Iterator[Storage]:
    """An S3 storage whose client it built itself, or one it was given."""
    options = dict(s3_options)
    if request.param == "given":
        backend = S3(s3_bucket, unique("fork-"), client=boto3.client("s3", **options))
    else:
        endpoint, region = options.pop("endpoint_url"), options.pop("region_name")
        backend = S3(s3_bucket, unique("fork-"), endpoint_url=endpoint, region=region, **options)
    storage = Storage(Codec("raw"), backend)
    yield storage
    storage.clear()
    storage.close()


def test_s3_used_before_fork_works_in_the_child(s3_storage: Storage) -> None:
    items = {f"k{i}": f"v{i}".encode() for i in range(40)}
    s3_storage.set_many(items)
    assert s3_storage.get_many(items) == items  # the parent's thread pool is running

    def child() -> tuple[dict[str, bytes], int]:
        found = s3_storage.get_many(items)
        s3_storage.set_many({f"child{i}": b"c" for i in range(10)})
        return found, len(s3_storage)

    found, count = in_child(child)
    assert found == items
    assert count == 50
    assert s3_storage.get_many([f"child{i}" for i in range(10)]) == {
        f"child{i}": b"c" for i in range(10)
    }


def test_s3_child_and_parent_do_not_share_connections(s3_storage: Storage) -> None:
    s3_storage.set_many({"parent": b"P" * 1000, "child": b"C" * 2000})

    def parent_reads() -> None:
        assert s3_storage["parent"] == b"P" * 1000

    def child_reads() -> int:
        for _ in range(200):
            assert s3_storage["child"] == b"C" * 2000
        return 200

    parent_reads()  # a connection of the parent's pool, kept alive for the next request
    assert in_child(child_reads, meanwhile=parent_reads) == 200


# -- Redis -------------------------------------------------------------------------------


@pytest.fixture(params=["server", "cluster", "url"])
def redis_storage(
    request: pytest.FixtureRequest, redis_url: str, redis_cluster_url: str
) -> Iterator[Storage]:
    """A Redis storage on a client it was given (a server or a cluster), or on a URL."""
    prefix = unique("fork:") + ":"
    if request.param == "cluster":
        backend = Redis(RedisCluster.from_url(redis_cluster_url), prefix=prefix)
    elif request.param == "server":
        backend = Redis(redis.Redis.from_url(redis_url), prefix=prefix)
    else:
        backend = Redis(url=redis_url, prefix=prefix)
    storage = Storage(Codec("text"), backend)
    yield storage
    storage.clear()
    storage.close()


def connection_ids(storage: Storage) -> set[tuple[str, int]]:
    """(node, id) of the connections the storage's client reads through now."""
    backend = storage.layers[-1]
    assert isinstance(backend, Redis)
    client = backend.client
    if isinstance(client, RedisCluster):
        ids = client.client_id(target_nodes=RedisCluster.ALL_NODES)
        return {(node, int(number)) for node, number in ids.items()}
    return {("server", int(client.client_id()))}


def test_redis_used_before_fork_works_in_the_child_on_its_own_connections(
    redis_storage: Storage,
) -> None:
    items = {f"k{i}": f"v{i}" for i in range(40)}
    redis_storage.set_many(items)
    assert redis_storage.get_many(items) == items
    parents = connection_ids(redis_storage)

    def child() -> tuple[dict[str, str], int, set[tuple[str, int]]]:
        found = redis_storage.get_many(items)
        redis_storage.set_many({f"child{i}": "c" for i in range(10)})
        with redis_storage.layers[-1].key_lock("k0"):  # a memoize lock works too
            count = len(redis_storage)
        return found, count, connection_ids(redis_storage)

    found, count, childs = in_child(child)
    assert found == items
    assert count == 50
    assert not childs & parents  # the child never spoke on the parent's sockets
    assert redis_storage["child3"] == "c"


def test_redis_child_and_parent_do_not_mix_replies(redis_storage: Storage) -> None:
    redis_storage.set_many({"parent": "P" * 1000, "child": "C" * 2000})

    def parent_reads() -> None:
        assert redis_storage["parent"] == "P" * 1000

    def child_reads() -> int:
        for _ in range(500):
            assert redis_storage["child"] == "C" * 2000
        return 500

    parent_reads()
    assert in_child(child_reads, meanwhile=parent_reads) == 500

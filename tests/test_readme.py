"""The README's examples run as written, against real servers where they need one."""

from __future__ import annotations

import doctest
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pystorage.testing import RedisServer

README = Path(__file__).resolve().parent.parent / "README.md"
README_REDIS_URL = "redis://localhost:6379"


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def readme_redis_url(redis_url: str) -> Iterator[str]:
    """The README's own URL when port 6379 is free (a server is started there for it);
    otherwise the session's server, so a Redis of the user's is never written to."""
    if not _port_is_free(6379):
        yield redis_url
        return
    with RedisServer(port=6379):
        yield README_REDIS_URL


@pytest.fixture
def readme_s3(monkeypatch: pytest.MonkeyPatch, s3_options: dict[str, Any]) -> None:
    """The README's bucket on the session's S3 server, found through the AWS variables."""
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


def test_readme_examples(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, readme_redis_url: str, readme_s3: None
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "test.html").write_bytes(b"<p>Hello PyStorage</p>")
    text = README.read_text().replace(README_REDIS_URL, readme_redis_url)
    test = doctest.DocTestParser().get_doctest(text, {}, "README.md", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 30
    assert result.failed == 0

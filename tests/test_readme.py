"""The README's examples run as written, against real servers where they need one."""

from __future__ import annotations

import doctest
import socket
from collections.abc import Iterator
from pathlib import Path

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


def test_readme_examples(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, readme_redis_url: str, readme_bucket: str
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

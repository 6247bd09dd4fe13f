"""Every preset has the URL the README lists for it, and the two read each other's data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import pystorage
from pystorage import Storage, StorageProvider
from tests.helpers import unique

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| `(STORAGE_\w+)`(?: \(`(\w+)=(\d+)`\))? \| `([a-z0-9]+://[^`]*)`", re.M)
ROWS = {
    name: (argument, value, url) for name, argument, value, url in ROW.findall(README.read_text())
}


def test_every_preset_has_a_url_row() -> None:
    presets = {name for name in vars(StorageProvider) if name.startswith("STORAGE_")}
    assert set(ROWS) == presets


def _place(url: str, folder: Path, redis_url: str, s3: dict[str, Any], prefix: str) -> str:
    """The README's URL pointed at this test's folder and servers."""
    url = url.replace("file:///tmp", f"file://{folder}")
    url = url.replace("sqlite:///tmp", f"sqlite://{folder}")
    url = url.replace("redis://localhost:6379/0?", f"{redis_url}?prefix={prefix}&")
    return url.replace("endpoint_url=http://127.0.0.1:8333", f"endpoint_url={s3['endpoint_url']}")


@pytest.mark.parametrize("name", sorted(ROWS))
def test_the_url_reads_what_the_preset_wrote(
    name: str,
    tmp_path: Path,
    redis_url: str,
    s3_options: dict[str, Any],
    request: pytest.FixtureRequest,
) -> None:
    argument, number, url = ROWS[name]
    prefix = unique("eq:") + ":"
    options: dict[str, Any] = {argument: int(number)} if argument else {}
    if "file://" in url:
        options["path"] = tmp_path
    if "sqlite://" in url:
        options["path"] = tmp_path / "cache.db"
    if "redis://" in url:
        options.update(url=redis_url, prefix=prefix)
    if "s3://" in url:
        request.getfixturevalue("readme_bucket")
        options.update(
            bucket="my.bucket", folder=unique("eq-") + "/", endpoint_url=s3_options["endpoint_url"]
        )
        url = url.replace("some/folder", options["folder"].rstrip("/"))
    preset: Storage = StorageProvider().create(getattr(StorageProvider, name), **options)
    from_url = pystorage.open(_place(url, tmp_path, redis_url, s3_options, prefix))
    value: Any = b"bytes" if "codec=raw" in url else "text" if "codec=text" in url else {"a": [1]}
    if "memory://" in url:  # two memories share nothing: compare how they behave
        for storage in (preset, from_url):
            storage["k"] = value
            assert storage["k"] == value
            if "lru=" in url:  # STORAGE_LRU: the least recently used goes first
                for i in range(int(number)):
                    storage[str(i)] = i
                assert "k" not in storage and len(storage) == int(number)
            if "ttl=" in url:  # STORAGE_VOLATILE: an Expiry of the same TTL on top
                assert storage.layers[0].ttl == int(number)  # type: ignore[attr-defined]
        return
    preset["written-by-preset"] = value
    assert from_url["written-by-preset"] == value
    from_url["written-by-url"] = value
    assert preset["written-by-url"] == value
    assert sorted(preset) == sorted(from_url) == ["written-by-preset", "written-by-url"]

"""Regressions found in review: each test names the guarantee it keeps."""

from __future__ import annotations

from pathlib import Path

from pystorage import Storage
from pystorage.layers import Codec, CountLimit, SQLite


def test_a_write_to_a_bounded_sqlite_is_never_its_own_victim(tmp_path: Path) -> None:
    # Reads noted for eviction by use, then a write: the reads came first, so the
    # least recently used entry is one of them, never the value just written.
    storage = Storage(Codec("raw"), CountLimit(2), SQLite(tmp_path / "c.db"))
    storage["a"] = b"1"
    storage["b"] = b"2"
    assert storage["a"] == b"1"
    assert storage["b"] == b"2"
    storage["c"] = b"3"
    assert storage["c"] == b"3"
    assert sorted(storage) == ["b", "c"]

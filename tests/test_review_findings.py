"""Regressions found in review: each test names the guarantee it keeps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pystorage import Storage
from pystorage.aio.storage import AsyncStorage
from pystorage.errors import ValueTooLargeError
from pystorage.layers import Codec, CountLimit, Memory, SizeLimit, SQLite


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


def test_a_modify_that_outgrows_a_size_limit_raises_and_keeps_the_old_value() -> None:
    # Like set and add: a value heavier than the whole bound is refused, not stored and
    # then evicted at once (incr returned a number that was never kept).
    storage = Storage(Codec("json"), SizeLimit(4), Memory())
    storage.incr("n", 1000)
    with pytest.raises(ValueTooLargeError):
        storage.incr("n", 99_000)
    assert storage["n"] == 1000


def test_an_async_modify_that_outgrows_a_size_limit_raises_and_keeps_the_old_value() -> None:
    async def main() -> None:
        storage = AsyncStorage(Codec("json"), SizeLimit(4), Memory())
        await storage.incr("n", 1000)
        with pytest.raises(ValueTooLargeError):
            await storage.incr("n", 99_000)
        assert await storage.get("n") == 1000

    asyncio.run(main())

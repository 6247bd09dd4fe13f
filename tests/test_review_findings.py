"""Regressions found in review: each test names the guarantee it keeps."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from pystorage import Storage
from pystorage.aio.storage import AsyncStorage
from pystorage.errors import BackendError, ValueTooLargeError
from pystorage.layers import Codec, CountLimit, Files, Memory, SizeLimit, SQLite


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


class _FailsOnce(Files):
    """A folder whose first listing fails, as a disk or server down at startup would."""

    failed = False

    def sizes_by_age(self) -> list[tuple[str, int]]:
        if not _FailsOnce.failed:
            _FailsOnce.failed = True
            raise BackendError("down for a moment")
        return super().sizes_by_age()


def test_an_async_storage_whose_first_preparation_failed_prepares_again(tmp_path: Path) -> None:
    # A failed (or, at the end of an event loop, cancelled) preparation must not stay the
    # answer of every later operation: the next one prepares again.
    _FailsOnce.failed = False
    storage = AsyncStorage(Codec("raw"), SizeLimit(100), _FailsOnce(tmp_path))

    async def main() -> None:
        with pytest.raises(BackendError):
            await storage.set("k", b"v")
        await storage.set("k", b"v")
        assert await storage.get("k") == b"v"

    asyncio.run(main())


class _Slow(Files):
    """A folder whose listing waits for ``go``."""

    go = threading.Event()

    def sizes_by_age(self) -> list[tuple[str, int]]:
        assert _Slow.go.wait(10)
        return super().sizes_by_age()


def test_a_preparation_cancelled_with_its_event_loop_is_not_the_next_loops_answer(
    tmp_path: Path,
) -> None:
    _Slow.go.clear()
    storage = AsyncStorage(Codec("raw"), CountLimit(10), _Slow(tmp_path))

    async def gives_up() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(storage.set("k", b"v"), 0.05)

    asyncio.run(gives_up())  # ends its loop, and with it the preparation under way
    _Slow.go.set()

    async def main() -> None:
        await storage.set("k", b"v")
        assert await storage.get("k") == b"v"

    asyncio.run(main())

"""Regressions found in review: each test names the guarantee it keeps."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
    with pytest.raises(ValueTooLargeError, match="the value of 'n' weighs 6 bytes"):
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


# -- nested exclusive sections: a CountLimit above a SizeLimit -------------------------


def _limited() -> tuple[CountLimit, Codec, SizeLimit, Memory]:
    return CountLimit(3), Codec("pickle"), SizeLimit(10_000), Memory()


# Over Files, tests/test_limits.py::test_a_count_and_a_byte_limit_over_one_folder_*; over
# Memory the in-process section must be re-entrant in the same way.


def test_a_count_limit_above_a_size_limit_over_memory_does_not_deadlock() -> None:
    storage = Storage(*_limited())
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: [storage.set(f"k{n}", n) for n in range(5)]).result(timeout=60)
    assert sorted(storage) == ["k2", "k3", "k4"]


def test_the_same_stack_async_does_not_deadlock() -> None:
    storage = AsyncStorage(*_limited())

    async def main() -> list[str]:
        for n in range(5):
            await asyncio.wait_for(storage.set(f"k{n}", n), timeout=60)
        return sorted([key async for key in storage])

    assert asyncio.run(main()) == ["k2", "k3", "k4"]


# -- one thread's eviction must not delete another thread's newer write ----------------


class _Interleaving(Memory):
    """Memory whose first eviction lets another thread write the victim's key before
    the eviction deletes it: the interleaving that lost that write."""

    def delete_many(self, keys: Any) -> None:
        keys = list(keys)
        if self.writer is not None and keys == ["x"]:
            writer, self.writer = self.writer, None
            writer.start()
            writer.join(timeout=1)  # done at once, unless the section holds it back
        super().delete_many(keys)


def test_an_eviction_never_deletes_a_write_that_landed_meanwhile() -> None:
    backend = _Interleaving()
    storage = Storage(CountLimit(1), backend)
    storage["x"] = "old"
    backend.writer = threading.Thread(target=storage.set, args=("x", "new"))
    storage["y"] = "y"  # evicts x; meanwhile the other thread writes x again
    assert backend.writer is None  # the interleaving happened
    deadline = time.monotonic() + 60
    while "x" not in backend.peek_many(["x"]):  # the other thread's write lands
        assert time.monotonic() < deadline, "the newer write of x was lost"
        time.sleep(0.001)
    assert storage["x"] == "new"

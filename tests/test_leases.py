"""memoize's lock across processes on every persistent backend: a lease with a token.

Real processes (forked) on real stores (a folder, a database file, the session's
SeaweedFS and Redis). Computations are counted in a file that each one appends a byte
to, so the count is the store's truth, not a process's.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage
from pystorage.aio.storage import AsyncStorage
from pystorage.errors import BackendError, ConfigurationError
from pystorage.layers import S3, Codec, Files, Redis, SQLite
from pystorage.layers.base import new_token
from pystorage.layers.leases import Lease, Waiting, pauses
from tests.helpers import unique

BACKENDS = ["files", "sqlite", "s3", "redis"]
PROCESSES = 3
THREADS = 3
#: A state a test waits for arrives within this on a loaded 2-core machine.
DEADLINE = 60.0

Build = Callable[..., Any]  # (lock_timeout) -> the backend layer, built where it is called


@pytest.fixture
def build(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Build]]:
    """``build(kind)``: a function making a fresh backend of that kind, on one store
    shared by every process of the test."""
    prefix = unique("leases-")

    def make(kind: str) -> Build:
        if kind == "files":
            return lambda lock_timeout=60.0: Files(tmp_path / "folder", lock_timeout=lock_timeout)
        if kind == "sqlite":
            return lambda lock_timeout=60.0: SQLite(
                tmp_path / "db.sqlite", lock_timeout=lock_timeout
            )
        if kind == "s3":
            bucket = request.getfixturevalue("s3_bucket")
            options = dict(request.getfixturevalue("s3_options"))
            args = {
                "endpoint_url": options.pop("endpoint_url"),
                "region": options.pop("region_name"),
                **options,
            }
            return lambda lock_timeout=60.0: S3(bucket, prefix, lock_timeout=lock_timeout, **args)
        url = request.getfixturevalue("redis_url")
        return lambda lock_timeout=60.0: Redis(
            url=url, prefix=f"{prefix}:", lock_timeout=lock_timeout
        )

    yield make


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def _nothing() -> None:
    """A function named like the memoized ones, to know their entry's key."""


def _count(file: Path) -> int:
    return file.stat().st_size if file.exists() else 0


def _mark(file: Path) -> None:
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)


def _run_processes(target: Callable[[], None], how_many: int) -> None:
    """``target`` in ``how_many`` forked processes at once; each must exit 0."""
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=target) for _ in range(how_many)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(DEADLINE)
    codes = [process.exitcode for process in processes]
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    assert codes == [0] * how_many, codes


# -- N processes x M callers compute once per expiry ------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("flavour", ["threads", "tasks"])
def test_callers_of_many_processes_compute_once_per_expiry(
    build: Callable[[str], Build], kind: str, flavour: str, tmp_path: Path
) -> None:
    make = build(kind)
    computed = tmp_path / "computed"
    context = multiprocessing.get_context("fork")
    ttl = 3.0

    def round_of_calls(start: Any) -> None:
        """PROCESSES processes of THREADS callers each, all released at once."""

        def work() -> None:
            start.wait(DEADLINE)
            if flavour == "threads":
                storage = Storage(Codec("pickle"), make())

                @storage.memoize(ttl=ttl, key="slow")
                def slow() -> int:
                    _mark(computed)
                    time.sleep(0.3)  # the work: callers arrive while it runs
                    return 42

                results: list[int] = []
                threads = [
                    threading.Thread(target=lambda: results.append(slow())) for _ in range(THREADS)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(DEADLINE)
                assert results == [42] * THREADS
                return

            async def tasks() -> list[int]:
                storage = AsyncStorage(Codec("pickle"), make())

                @storage.memoize(ttl=ttl, key="slow")
                async def slow() -> int:
                    _mark(computed)
                    await asyncio.sleep(0.3)
                    return 42

                try:
                    return list(await asyncio.gather(*(slow() for _ in range(THREADS))))
                finally:
                    await storage.aclose()

            assert asyncio.run(tasks()) == [42] * THREADS

        _run_processes(work, PROCESSES)

    # The store exists before the processes start: several processes making one new
    # SQLite database at once may fail to switch it to WAL ("database is locked"),
    # which is another matter than the lock under test.
    probe = Storage(Codec("pickle"), make())
    round_of_calls(context.Barrier(PROCESSES))
    assert _count(computed) == 1
    entry = probe.memoize(key="slow")(_nothing).cache_key()
    _wait_for(lambda: entry not in probe, "the entry to expire")
    round_of_calls(context.Barrier(PROCESSES))
    assert _count(computed) == 2  # once per expiry


# -- a holder killed while it computes ----------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_killed_holder_delays_the_others_by_at_most_one_lease(
    build: Callable[[str], Build], kind: str, tmp_path: Path
) -> None:
    lease = 3.0
    make = build(kind)
    computing = tmp_path / "computing"

    pid = os.fork()
    if pid == 0:  # the holder: takes the lock, says so, and hangs until killed
        try:
            storage = Storage(Codec("pickle"), make(lease))

            @storage.memoize(key="slow")
            def slow() -> int:
                computing.touch()
                threading.Event().wait()
                return 0

            slow()
        finally:
            os._exit(1)
    try:
        _wait_for(computing.exists, "the holder to compute")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    killed = time.monotonic()

    storage = Storage(Codec("pickle"), make(lease))

    @storage.memoize(key="slow")
    def slow() -> int:
        return 7

    assert slow() == 7
    recovered = time.monotonic() - killed
    print(f"{kind}: recovered {recovered:.3f} s after the kill (lease {lease} s)")
    # The lease began before the kill: nobody waits longer than one lease after it,
    # plus the pause cap and the time a loaded machine takes to run the call.
    assert recovered < lease + 2.0
    if kind == "files":  # the kernel dropped the flock with the process
        assert recovered < lease / 2


# -- a holder past its lease gives back nothing of the next holder's ---------------------


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_holder_past_its_lease_cannot_release_the_next_holders_lock(
    build: Callable[[str], Build], kind: str
) -> None:
    backend = build(kind)(0.5)
    late, next_holder, third = new_token(), new_token(), new_token()
    assert backend.take_lease("k", late, 0.5) == late
    assert backend.take_lease("k", next_holder, 0.5) != next_holder  # held, not lapsed
    _wait_for(lambda: backend.take_lease("k", next_holder, 60.0) == next_holder, "a lapse")
    backend.end_lease("k", late)  # the late holder gives back what it no longer holds
    assert backend.take_lease("k", third, 60.0) == next_holder  # still held by the next
    backend.end_lease("k", next_holder)
    assert backend.take_lease("k", third, 60.0) == third  # given back by its holder
    backend.end_lease("k", third)


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_lease_is_never_an_entry(build: Callable[[str], Build], kind: str) -> None:
    storage = Storage(Codec("pickle"), build(kind)())
    storage["a"] = 1
    with storage.layers[-1].key_lock("a"), storage.layers[-1].key_lock("b"):
        assert sorted(storage.keys()) == ["a"]
        assert len(storage) == 1
        storage.clear()
        assert len(storage) == 0
        with pytest.raises(KeyError):
            storage["b"]
    assert list(storage.keys()) == []


# -- after fork -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_forked_child_holds_nothing_of_its_parents_lock(
    build: Callable[[str], Build], kind: str
) -> None:
    backend = build(kind)()
    with backend.key_lock("k") as held:
        parent = held._token
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child, inside the parent's lock: leaving it gives nothing back
            code = 1
            try:
                held.__exit__(None, None, None)
                mine = new_token()
                found = backend.take_lease("k", mine, 60.0)
                os.write(writer, found.encode() or b"-")
                code = 0
            finally:
                os._exit(code)
        os.close(writer)
        with os.fdopen(reader, "rb") as stream:
            found = stream.read().decode()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert found == parent
        # The parent still holds it, and nobody else can take it.
        assert backend.take_lease("k", new_token(), 60.0) not in ("",)
        other = new_token()
        assert backend.take_lease("k", other, 60.0) != other
    assert backend.take_lease("k", other, 60.0) == other  # given back by the parent
    backend.end_lease("k", other)


# -- the waiting rule ---------------------------------------------------------------------


def test_pauses_grow_to_the_cap_with_jitter_and_end_with_the_lease() -> None:
    from pystorage.layers import leases

    firsts = list(zip(range(8), pauses(60.0, jitter=lambda: 1.0), strict=False))
    assert [pause for _, pause in firsts][:3] == [0.002, 0.004, 0.008]
    assert max(pause for _, pause in firsts) == leases.PAUSE_CAP
    halves = list(zip(range(3), pauses(60.0, jitter=lambda: 0.0), strict=False))
    assert [pause for _, pause in halves] == [0.001, 0.002, 0.004]
    began = time.monotonic()
    for pause in pauses(0.2):  # they end once the lease has passed, not before
        time.sleep(pause)
    assert time.monotonic() - began >= 0.2


def test_waiting_waits_a_lease_per_holder_then_refuses() -> None:
    waiting = Waiting("k", "mine", 0.05)
    assert waiting.after("mine") is None
    assert waiting.after("theirs") is not None
    _wait_for(lambda: _exhausted(waiting, "theirs"), "the lease to pass")
    with pytest.raises(BackendError, match=r"lock of key 'k'.*past its lease"):
        waiting.after("theirs")


def _exhausted(waiting: Waiting, holder: str) -> bool:
    try:
        waiting.after(holder)
    except BackendError:
        return True
    return False


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), "60", True])
def test_a_lease_is_a_finite_positive_number_of_seconds(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="lock_timeout"):
        Files(tmp_path, lock_timeout=bad)
    with pytest.raises(ConfigurationError, match="lock_timeout"):
        SQLite(tmp_path / "db", lock_timeout=bad)


def test_a_lease_is_taken_over_when_its_holder_hangs(build: Callable[[str], Build]) -> None:
    """Files: a hung holder keeps its flock; after its lease a taker replaces its file."""
    backend = build("files")(0.3)
    with backend.key_lock("k") as hung:
        taken = time.monotonic()
        with backend.key_lock("k") as next_holder:  # another thread's would wait alike
            assert time.monotonic() - taken >= 0.3 * 0.9
            assert next_holder._token != hung._token
            assert backend.take_lease("k", new_token(), 60.0) == next_holder._token
    assert isinstance(backend.key_lock("k"), Lease)


# -- failures and cancellation --------------------------------------------------------------


def test_a_failure_to_take_a_lock_names_the_key_and_the_lock(tmp_path: Path) -> None:
    files = Files(tmp_path / "folder")
    (tmp_path / "folder" / ".key-lock-k").mkdir()  # a folder where the lock file goes
    with pytest.raises(BackendError, match="take the lock of key 'k'"), files.key_lock("k"):
        pass
    database = SQLite(tmp_path / "db.sqlite")
    database._db().execute("CREATE TABLE leases (name)")  # not the table the locks need
    with pytest.raises(BackendError, match="take the lock of key 'k'"), database.key_lock("k"):
        pass


@pytest.mark.parametrize("kind", ["files", "sqlite"])
def test_a_task_cancelled_while_it_holds_a_lock_gives_it_back(
    build: Callable[[str], Build], kind: str
) -> None:
    make = build(kind)

    async def main() -> None:
        storage = AsyncStorage(Codec("pickle"), make())
        entered = asyncio.Event()

        async def holder() -> None:
            async with storage.top.key_lock("k"):
                entered.set()
                await asyncio.Event().wait()  # until cancelled

        task = asyncio.create_task(holder())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await storage.aclose()

    asyncio.run(main())
    mine = new_token()
    assert make().take_lease("k", mine, 60.0) == mine  # given back, not left to lapse


@pytest.mark.parametrize("kind", ["files", "sqlite"])
def test_a_task_cancelled_while_it_waits_takes_nothing(
    build: Callable[[str], Build], kind: str
) -> None:
    make = build(kind)
    backend = make()

    async def main() -> None:
        storage = AsyncStorage(Codec("pickle"), make())
        waiting = asyncio.create_task(_enter(storage.top.key_lock("k")))
        await asyncio.sleep(0.05)  # it tries, finds the lock held, and pauses
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await storage.aclose()

    with backend.key_lock("k") as held:
        asyncio.run(main())
        assert backend.take_lease("k", new_token(), 60.0) == held._token
    mine = new_token()
    assert backend.take_lease("k", mine, 60.0) == mine


async def _enter(lock: Any) -> None:
    async with lock:
        raise AssertionError("took a lock that another holds")

"""OffLoop, the async form of a sync backend (issue 24: `make mutation MODULE=aio_backend`).

Each test pins what OffLoop hands to the backend (the call, every argument, the TTL) and
what it gives back, where the call runs (a thread of its pool, or the loop), the listing
read a thousand keys per hop, what the stack asks of the backend when it is assembled,
and the exclusive section: entered in a thread, entered again by its holder, left with
the error that ended it, and left even when the task that asked for it was cancelled.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from pystorage import _fork
from pystorage.aio import backend as aio_backend
from pystorage.aio.backend import MAX_THREADS, OffLoop
from pystorage.layers import Files, Memory

DEADLINE = 30.0  # seconds: a generous bound for what should take milliseconds


def _run(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(work(), DEADLINE)

    return asyncio.run(bounded())


class Recorder:
    """A sync backend that records each call (its name, arguments and thread) and returns
    a value naming the call, so that a call handed down wrong shows."""

    accepts = "bytes"
    removes_entries = True

    def __init__(self, listing: int = 3) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.ran_in: list[threading.Thread] = []
        self.listing = listing
        self.pulled = 0
        self.clock = lambda: 1.0
        # The section: one thread in it at a time, as a backend's (a lock, a flock).
        self.section = threading.Lock()
        self.asked = threading.Event()  # set when a thread is in __enter__
        self.entered = threading.Event()  # set: let a section's __enter__ go on
        self.entered.set()
        self.inside = threading.Event()  # set once a thread is in the section
        self.changed = True
        self.sections: list[tuple[Any, ...]] = []
        self.enter_errors: list[Exception] = []  # the next __enter__ raises the first
        self.excludes = True

    @property
    def threads(self) -> list[str]:
        return [thread.name for thread in self.ran_in]

    def _record(self, *call: Any) -> tuple[Any, ...]:
        self.calls.append(call)
        self.ran_in.append(threading.current_thread())
        return ("result", *call)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in {"watch_evictions", "bound_per_process"}:
            raise AttributeError(name)
        return lambda *args: self._record(name, *args)

    def has_ttl(self) -> bool:
        self._record("has_ttl")
        return False

    def take_bound(self, measure: str, bound: int, eviction: str) -> bool:
        self._record("take_bound", measure, bound, eviction)
        return True

    def counters(self) -> dict[str, int]:
        self._record("counters")
        return {"evictions": 7}

    def keys(self) -> Iterator[str]:
        self._record("keys")

        def listing() -> Iterator[str]:
            for index in range(self.listing):
                self.pulled += 1
                yield f"k{index}"

        return listing()

    def exclusive(self) -> Section:
        return Section(self)


class Section:
    """The Recorder's exclusive section, a context manager as a class, as the in-process
    one of every backend is (``__exit__`` is called only after an ``__enter__`` that
    returned, and takes the three details of the error, if any)."""

    def __init__(self, backend: Recorder) -> None:
        self.backend = backend

    def __enter__(self) -> bool:
        backend = self.backend
        error = backend.enter_errors.pop(0) if backend.enter_errors else None  # first asker's
        backend.asked.set()
        if not backend.entered.wait(DEADLINE):
            raise AssertionError("never let in")
        if error is not None:
            raise error
        if backend.excludes and not backend.section.acquire(timeout=DEADLINE):
            raise AssertionError("never let in")
        backend.sections.append(("enter", threading.current_thread().name))
        backend.inside.set()
        return backend.changed

    def __exit__(self, kind: type[BaseException] | None, error: Any, trace: Any) -> None:
        self.backend.sections.append(("exit", kind))
        if self.backend.excludes:
            self.backend.section.release()


def _left(backend: Recorder) -> list[Any]:
    """The sections entered and left, each exit with the kind of error it was given."""
    return [kind if kind == "enter" else (kind, detail) for kind, detail in backend.sections]


def _offloop(threads: bool, listing: int = 3) -> tuple[OffLoop, Recorder]:
    backend = Recorder(listing)
    return OffLoop(backend, threads), backend  # type: ignore[arg-type]


def _change(value: Any) -> Any:
    return value


CALLS: list[tuple[str, tuple[Any, ...], tuple[Any, ...]]] = [
    # (method, arguments given to OffLoop, arguments the backend gets)
    ("get", ("k",), ("k",)),
    ("lookup", ("k", "dflt"), ("k", "dflt")),
    ("lookup", ("k",), ("k", None)),
    ("get_with_ttl", ("k",), ("k",)),
    ("set", ("k", b"v", 5.0), ("k", b"v", 5.0)),
    ("set", ("k", b"v"), ("k", b"v", None)),
    ("delete", ("k",), ("k",)),
    ("add", ("k", b"v", 6.0), ("k", b"v", 6.0)),
    ("add", ("k", b"v"), ("k", b"v", None)),
    ("modify", ("k", _change, 7.0), ("k", _change, 7.0)),
    ("modify", ("k", _change), ("k", _change, None)),
    ("contains", ("k",), ("k",)),
    ("count", (), ()),
    ("clear", (), ()),
    ("get_many", (["a", "b"],), (["a", "b"],)),
    ("get_many_with_ttl", (["a"],), (["a"],)),
    ("peek_many", (["c"],), (["c"],)),
    ("set_many", ({"a": b"1"}, 8.0), ({"a": b"1"}, 8.0)),
    ("set_many", ({"a": b"1"},), ({"a": b"1"}, None)),
    ("delete_many", (["a"],), (["a"],)),
    ("expire", (), ()),
    ("touch", ("k",), ("k",)),
    ("keys_by_age", (), ()),
    ("sizes_by_age", (), ()),
    ("read_note", ("n",), ("n",)),
    ("write_note", ("n", b"note"), ("n", b"note")),
    # The tokens of Tags: the tags as a list (read once on the loop), create as given.
    ("tag_tokens", (["t1", "t2"], True), (["t1", "t2"], True)),
    ("tag_tokens", (["t1"], False), (["t1"], False)),
    ("renew_tag", ("t1",), ("t1",)),
]


def _once(arg: Any) -> Any:
    if isinstance(arg, list):
        return iter(arg)
    if isinstance(arg, dict):
        return MappingProxyType(arg)
    return arg


RETURNS = {"get", "lookup", "get_with_ttl", "add", "modify", "contains", "count", "get_many"}
RETURNS |= {"get_many_with_ttl", "peek_many", "expire", "keys_by_age", "sizes_by_age"}
RETURNS |= {"read_note", "tag_tokens"}


@pytest.mark.parametrize("threads", [True, False])
@pytest.mark.parametrize(("method", "given", "handed"), CALLS)
def test_each_call_reaches_the_backend_with_its_arguments(
    threads: bool, method: str, given: tuple[Any, ...], handed: tuple[Any, ...]
) -> None:
    offloop, backend = _offloop(threads)
    # Batches are given as iterators and mappings that are not dicts: the backend gets
    # them as a list and a dict, read once on the loop.
    given = tuple(_once(arg) for arg in given)
    result = _run(lambda: getattr(offloop, method)(*given))
    assert backend.calls == [(method, *handed)]
    for got, expected in zip(backend.calls[0][1:], handed, strict=True):
        assert type(got) is type(expected)
    if method in RETURNS:
        assert result == ("result", method, *handed)
    else:
        assert result is None
    (thread,) = backend.threads
    assert thread.startswith("pystorage") is threads


def test_the_calls_run_in_the_threads_of_one_pool_or_on_the_loop() -> None:
    offloop, backend = _offloop(True)

    async def many() -> None:
        for _ in range(3):
            await offloop.get("k")
        assert threading.current_thread() is threading.main_thread()

    _run(many)
    assert all(name.startswith("pystorage_") for name in backend.threads)
    assert threading.main_thread().name not in backend.threads
    offloop, backend = _offloop(False)
    _run(lambda: offloop.get("k"))
    assert backend.threads == [threading.main_thread().name]


def test_the_pool_runs_max_threads_calls_at_once() -> None:
    """Sixteen blocking calls run together (a smaller pool would queue some)."""
    offloop, backend = _offloop(True)
    running = threading.Semaphore(0)
    release = threading.Event()

    def blocking(key: str) -> str:
        running.release()
        release.wait(DEADLINE)
        return key

    backend.get = blocking  # type: ignore[attr-defined]

    async def together() -> list[str]:
        calls = [asyncio.ensure_future(offloop.get(str(i))) for i in range(MAX_THREADS)]
        for _ in range(MAX_THREADS):
            assert await asyncio.to_thread(running.acquire, timeout=DEADLINE)
        release.set()
        return await asyncio.gather(*calls)

    assert MAX_THREADS == 16
    assert _run(together) == [str(i) for i in range(MAX_THREADS)]


@pytest.mark.parametrize("threads", [True, False])
def test_keys_are_listed_a_thousand_per_hop(threads: bool) -> None:
    offloop, backend = _offloop(threads, listing=2500)

    async def listed() -> tuple[list[str], int]:
        keys = []
        pulled_at_first = -1
        async for key in offloop.keys():
            if pulled_at_first < 0:
                pulled_at_first = backend.pulled
            keys.append(key)
        return keys, pulled_at_first

    keys, pulled_at_first = _run(listed)
    assert keys == [f"k{i}" for i in range(2500)]
    assert pulled_at_first == 1000  # one chunk read before the first key is given
    assert backend.calls == [("keys",)]


def test_an_empty_listing() -> None:
    offloop, _ = _offloop(True, listing=0)

    async def listed() -> list[str]:
        # An OffLoop is no dict: keys() is its listing.
        return [key async for key in offloop.keys()]  # noqa: SIM118

    assert _run(listed) == []


def test_what_the_stack_asks_is_the_backends() -> None:
    offloop, backend = _offloop(True)
    assert offloop.accepts == "bytes" and offloop.removes_entries is True
    backend.accepts = "object"
    backend.removes_entries = False
    assert offloop.accepts == "object" and offloop.removes_entries is False
    assert offloop.has_ttl() is False
    assert offloop.take_bound("bytes", 9, "stored") is True
    assert offloop.counters() == {"evictions": 7}
    assert backend.calls == [
        ("has_ttl",),
        ("take_bound", "bytes", 9, "stored"),
        ("counters",),
    ]
    assert offloop.clock() == 1.0
    offloop.clock = lambda: 2.0
    assert backend.clock() == 2.0
    assert offloop.watch_evictions is None
    assert offloop.bound_per_process() is None


def test_what_the_stack_asks_of_a_real_backend(tmp_path: Path) -> None:
    files = Files(tmp_path)
    offloop = OffLoop(files, True)
    assert offloop.clock is files.clock
    watched: list[list[str]] = []
    backend: Any = Recorder()
    backend.watch_evictions = watched.append
    backend.bound_per_process = lambda: "why"
    with_both = OffLoop(backend, True)
    assert with_both.watch_evictions == watched.append
    assert with_both.bound_per_process() == "why"


def test_repr_shows_the_thread_hop() -> None:
    assert repr(OffLoop(Memory(), True)) == "OffLoop(Memory())"
    assert repr(OffLoop(Memory(), False)) == "Memory()"


@pytest.mark.parametrize("threads", [True, False])
def test_close_closes_the_backend_and_drops_the_pool(threads: bool) -> None:
    offloop, backend = _offloop(threads)

    async def used_then_closed() -> None:
        await offloop.get("a")
        await offloop.close()
        await offloop.get("b")  # a pool made anew after a close
        await offloop.close()

    _run(used_then_closed)
    assert [call[0] for call in backend.calls] == ["get", "close", "get", "close"]
    if threads:
        assert backend.ran_in[0] is not backend.ran_in[2]  # the second pool's thread
        assert all(name.startswith("pystorage") for name in backend.threads)


def test_close_leaves_running_calls_to_their_threads() -> None:
    """A close while another task's call runs in the pool does not wait for it on the
    loop (which would stop answering): the call ends in its thread, with its result."""
    offloop, backend = _offloop(True)
    started, release = threading.Event(), threading.Event()

    def blocking(key: str) -> bool:
        started.set()
        return release.wait(DEADLINE)  # False only if nothing released it in time

    backend.get = blocking  # type: ignore[attr-defined]

    async def closed_meanwhile() -> bool:
        running = asyncio.ensure_future(offloop.get("k"))
        assert await asyncio.to_thread(started.wait, DEADLINE)
        await offloop.close()
        release.set()
        return await running

    assert _run(closed_meanwhile) is True
    assert [call[0] for call in backend.calls] == ["close"]


def test_a_forked_child_makes_its_own_pool_and_lock() -> None:
    """What os.fork() runs for an OffLoop in the child, run in this process: the pool and
    the lock of the parent's threads are dropped, made again at first use."""
    offloop, backend = _offloop(True)
    backend.excludes = False  # a child's backend renews its own section

    async def held_then_renewed() -> None:
        await offloop.get("a")
        async with offloop.exclusive():
            _fork._renewals[offloop](offloop)  # what os.fork() runs for this object
            # As in a child: the section (held by a thread the child lacks) is free, the
            # task is not its holder, and a call runs in a new pool.
            async with offloop.exclusive():
                pass
            await offloop.get("b")

    _run(held_then_renewed)
    assert backend.ran_in[0] is not backend.ran_in[1]
    assert [section[0] for section in backend.sections] == ["enter", "enter", "exit", "exit"]


# -- the exclusive section ------------------------------------------------------------


@pytest.mark.parametrize("threads", [True, False])
@pytest.mark.parametrize("changed", [True, False])
def test_the_section_says_what_the_backend_says(threads: bool, changed: bool) -> None:
    offloop, backend = _offloop(threads)
    backend.changed = changed

    async def inside() -> tuple[bool, bool]:
        # Its holder enters again: no deadlock.
        async with offloop.exclusive() as outer, offloop.exclusive() as inner:
            return outer, inner

    assert _run(inside) == (changed, changed)
    assert [section[0] for section in backend.sections] == ["enter", "exit"]
    assert backend.sections[0][1].startswith("pystorage") is threads


def test_the_section_is_left_with_the_error_that_ended_it() -> None:
    offloop, backend = _offloop(True)

    async def failing() -> None:
        async with offloop.exclusive():
            raise KeyError("k")

    with pytest.raises(KeyError):
        _run(failing)
    assert backend.sections[-1] == ("exit", KeyError)

    async def again() -> bool:  # left whole: another task enters
        async with offloop.exclusive() as changed:
            return changed

    assert _run(again) is True


def test_tasks_take_the_section_one_at_a_time() -> None:
    offloop, backend = _offloop(True)
    order: list[str] = []

    async def one(name: str, inside: asyncio.Event, go_on: asyncio.Event) -> None:
        async with offloop.exclusive():
            order.append(f"{name} in")
            inside.set()
            await go_on.wait()
            order.append(f"{name} out")

    async def both() -> None:
        first_in, second_in, go_on = asyncio.Event(), asyncio.Event(), asyncio.Event()
        first = asyncio.ensure_future(one("first", first_in, go_on))
        await first_in.wait()
        second = asyncio.ensure_future(one("second", second_in, go_on))
        for _ in range(20):  # the second task gets turns of the loop, and waits
            await asyncio.sleep(0)
        assert not second_in.is_set()
        go_on.set()
        await asyncio.gather(first, second)

    _run(both)
    assert order == ["first in", "first out", "second in", "second out"]
    assert [section[0] for section in backend.sections] == ["enter", "exit", "enter", "exit"]


def test_another_task_is_not_taken_for_the_holder() -> None:
    offloop, backend = _offloop(True)

    async def inner_task() -> None:
        async with offloop.exclusive():
            pass

    async def holder() -> bool:
        async with offloop.exclusive():
            waiting = asyncio.ensure_future(inner_task())
            for _ in range(20):
                await asyncio.sleep(0)
            done_inside = waiting.done()
        await waiting
        return done_inside

    assert _run(holder) is False  # it waited for the holder to leave
    assert [section[0] for section in backend.sections] == ["enter", "exit", "enter", "exit"]


def test_a_task_cancelled_while_entering_leaves_the_section_its_thread_entered() -> None:
    offloop, backend = _offloop(True)
    backend.entered.clear()

    async def cancelled_then_entered() -> bool:
        asking = asyncio.ensure_future(_enter_and_stay(offloop))
        assert await asyncio.to_thread(backend.asked.wait, DEADLINE)  # in __enter__
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
        backend.entered.set()  # the thread enters after all
        assert await asyncio.to_thread(backend.inside.wait, DEADLINE)
        async with offloop.exclusive() as changed:  # and has left, or this would wait
            return changed

    assert _run(cancelled_then_entered) is True
    assert _left(backend) == ["enter", ("exit", None)] * 2  # each left by __exit__
    assert not aio_backend._LEAVING  # the leaving, kept while it ran, is forgotten once done


def test_a_cancelled_entering_that_failed_leaves_nothing() -> None:
    offloop, backend = _offloop(True)
    backend.entered.clear()
    backend.enter_errors.append(OSError("no lock"))

    async def cancelled_then_failed() -> None:
        asking = asyncio.ensure_future(_enter_and_stay(offloop))
        assert await asyncio.to_thread(backend.asked.wait, DEADLINE)
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
        backend.entered.set()
        async with offloop.exclusive():
            pass

    _run(cancelled_then_failed)
    # The failed __enter__ is never left: the second section's enter and exit only.
    assert _left(backend) == ["enter", ("exit", None)]


async def _enter_and_stay(offloop: OffLoop) -> None:
    async with offloop.exclusive():
        await asyncio.Event().wait()

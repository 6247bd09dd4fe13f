"""The fork gate (``pystorage/_gate.py``): no fork while another thread is inside SQLite.

A child forked while a thread of its parent ran an SQLite call (without the GIL) got
SQLite's mutexes held, and hung at its first use of SQLite. The tests that need a fork
in progress run the fork's own hooks (``_close``, then ``_reopen``) in a thread, so
that they can look at the gate while the "fork" waits.
"""

from __future__ import annotations

import functools
import gc
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage, _gate
from pystorage.layers import Codec, SQLite
from pystorage.layers import sqlite as sqlite_module
from tests.helpers import CHILD_DEADLINE, run_in_child


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + CHILD_DEADLINE
    while not condition():
        assert time.monotonic() < give_up, f"never: {what}"
        time.sleep(0.001)


def _mine() -> int:
    """This thread's entries in the gate (other tests' threads may have their own)."""
    return _gate._inside.count(threading.get_ident())


def _sqlite_use(folder: Path, name: str) -> tuple[Any, ...]:
    """A new SQLite store in ``folder`` opened, written and read back."""
    storage = Storage(Codec("json"), SQLite(folder / f"{name}.db"))
    storage.set_many({"a": 1, "b": [2]})
    return storage["a"], storage["b"], len(storage)


@contextmanager
def held_inside() -> Iterator[threading.Event]:
    """A helper thread inside the gate for the block (as in an SQLite call); set the
    event it yields to have it leave early."""
    inside, leave = threading.Event(), threading.Event()

    def call() -> None:
        me = _gate.enter()
        inside.set()
        leave.wait()
        _gate.leave(me)

    thread = threading.Thread(target=call)
    thread.start()
    try:
        assert inside.wait(CHILD_DEADLINE)
        yield leave
    finally:
        leave.set()
        thread.join()


@contextmanager
def fork_waiting() -> Iterator[threading.Thread]:
    """A fork's hooks run by a helper thread: ``_close`` (which waits at the gate) at the
    start of the block, ``_reopen`` once it returned and the block is over."""
    over = threading.Event()

    def fork() -> None:
        _gate._close()
        try:
            over.wait(CHILD_DEADLINE)
        finally:
            _gate._reopen()

    forker = threading.Thread(target=fork)
    forker.start()
    try:
        _wait_for(lambda: _gate._forks >= 1, "the fork at the gate")
        yield forker
    finally:
        over.set()
        forker.join(2 * CHILD_DEADLINE)


def test_a_fork_waits_for_another_threads_call_and_its_child_uses_sqlite(
    tmp_path: Path,
) -> None:
    outcome: list[Any] = []
    with held_inside() as leave:
        forker = threading.Thread(
            target=lambda: outcome.append(run_in_child(lambda: _sqlite_use(tmp_path, "child")))
        )
        forker.start()
        try:
            # The fork waits at the gate while the call goes on: no child yet.
            _wait_for(lambda: _gate._forks == 1, "the fork at the gate")
            assert outcome == []
        finally:
            leave.set()
            forker.join(2 * CHILD_DEADLINE)
    assert outcome == [(1, [2], 2)]
    assert _sqlite_use(tmp_path, "parent") == (1, [2], 2)  # the parent's calls go on


def test_children_forked_while_other_threads_run_sqlite_can_use_it(tmp_path: Path) -> None:
    # Without the gate about a quarter of these children hung (measured: 27 of 100) in
    # sqlite3Malloc, on the allocator's mutex that a thread of the parent held at the fork.
    stop = threading.Event()
    errors: list[BaseException] = []

    def busy(number: int) -> None:
        try:
            storage = Storage(Codec("json"), SQLite(tmp_path / f"busy{number}.db"))
            count = 0
            while not stop.is_set():
                storage[f"k{count % 50}"] = count
                count += 1
                if count % 25 == 0:  # opening and closing take SQLite's mutexes too
                    other = SQLite(tmp_path / f"busy{number}-{count % 5}.db")
                    other.set("x", b"1")
                    other.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=busy, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    try:
        outcomes = [
            run_in_child(functools.partial(_sqlite_use, tmp_path, f"c{n}")) for n in range(30)
        ]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert outcomes == [(1, [2], 2)] * 30


def test_threads_that_arrive_during_a_fork_wait_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    waiting, went_in = threading.Event(), threading.Event()

    class Gate(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waiting.set()
            return super().wait(timeout)

    gate = Gate()
    gate.set()
    monkeypatch.setattr(_gate, "_open", gate)

    def arrive() -> None:
        _gate.leave(_gate.enter())
        went_in.set()

    with fork_waiting():
        assert _gate.try_enter() is None  # never waits: a collector's close parks
        other = threading.Thread(target=arrive)
        other.start()
        assert waiting.wait(CHILD_DEADLINE)
        assert not went_in.is_set()
    assert went_in.wait(CHILD_DEADLINE)  # in once the fork is over
    other.join()
    assert _mine() == 0


def test_a_thread_inside_goes_in_again_while_a_fork_waits() -> None:
    # Waiting there would wait for good: the fork waits for this thread's first call.
    inside, again, done = threading.Event(), threading.Event(), threading.Event()
    forked = threading.Event()
    nested: list[bool] = []

    def call() -> None:
        me = _gate.enter()
        try:
            inside.set()
            again.wait(CHILD_DEADLINE)
            # A nested call (a collected store's close, say), tried first without
            # waiting, so that a gate that would make it wait fails here, not hangs.
            entered = _gate.try_enter()
            nested.append(entered is not None)
            if entered is not None:
                _gate.leave(entered)
                _gate.leave(_gate.enter())
                nested.append(True)
        finally:
            _gate.leave(me)
            done.set()

    def fork() -> None:
        _gate._close()
        forked.set()
        _gate._reopen()

    caller = threading.Thread(target=call)
    caller.start()
    assert inside.wait(CHILD_DEADLINE)
    forker = threading.Thread(target=fork)
    forker.start()
    try:
        _wait_for(lambda: _gate._forks == 1, "the fork at the gate")
        assert not forked.is_set()
    finally:
        again.set()
        assert done.wait(CHILD_DEADLINE)
        assert forked.wait(CHILD_DEADLINE)
        caller.join()
        forker.join()
    assert nested == [True, True]


def test_modify_runs_the_callers_function_outside_the_gate(tmp_path: Path) -> None:
    layer = SQLite(tmp_path / "a.db")
    seen: list[int] = []

    def change(old: object) -> bytes:
        seen.append(_mine())  # a fork may happen here, without waiting for this
        return b"new"

    assert layer.modify("k", change) == b"new"
    with _gate.inside():  # and within a call of the caller's own, in again after
        assert layer.modify("k", change) == b"new"
        assert _mine() == 1
    assert seen == [0, 0] and _mine() == 0
    assert layer.get("k") == b"new"


def test_a_dead_stores_connections_are_parked_then_closed_within_the_gate(
    tmp_path: Path,
) -> None:
    layer = SQLite(tmp_path / "a.db")
    layer.set("a", b"1")
    (connection,) = layer._mine
    del layer
    gc.collect()  # parked, not closed by the collector, outside the gate
    assert connection in sqlite_module._PARKED
    assert connection.execute("SELECT 1").fetchone() == (1,)
    SQLite(tmp_path / "b.db")  # the next connection opened closes it, within the gate
    assert connection not in sqlite_module._PARKED
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        connection.execute("SELECT 1")


def test_a_close_during_a_fork_parks_its_connections_for_the_next_close(
    tmp_path: Path,
) -> None:
    layer = SQLite(tmp_path / "a.db")
    layer.set("a", b"1")
    (parked,) = layer._mine
    with fork_waiting():
        layer.close()  # never waits for the fork: parks
        assert parked in sqlite_module._PARKED
        assert parked.execute("SELECT 1").fetchone() == (1,)
    SQLite(tmp_path / "b.db").close()  # the next close takes the parked ones with it
    assert parked not in sqlite_module._PARKED
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        parked.execute("SELECT 1")


def test_an_interrupt_while_a_fork_waits_waits_on_and_is_raised_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    interrupts: list[int] = []
    monkeypatch.setattr(_gate._thread, "interrupt_main", lambda: interrupts.append(1))
    real_sleep = time.sleep
    with held_inside() as leave:

        def sleep(seconds: float) -> None:  # Ctrl-C at the fork's first look
            if not leave.is_set():
                leave.set()
                raise KeyboardInterrupt
            real_sleep(seconds)

        monkeypatch.setattr(_gate, "time", type("Clock", (), {"sleep": staticmethod(sleep)}))
        _gate._close()  # returns once the call is over, not at the interrupt
        try:
            me = threading.get_ident()
            assert all(ident == me for ident in _gate._inside)  # the call is over
            assert interrupts == []
        finally:
            _gate._reopen()
    assert interrupts == [1]  # raised again in the parent, after the fork


def test_an_exception_between_the_entry_and_the_return_leaves_no_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Raising:  # what a signal handler's exception does at that instant
        def __bool__(self) -> bool:
            raise TimeoutError("alarm")

    monkeypatch.setattr(_gate, "_forks", Raising())
    with pytest.raises(TimeoutError):
        _gate.enter()
    monkeypatch.undo()
    assert _mine() == 0


def test_reads_cut_short_by_a_signal_handlers_exception_leave_no_entry(
    tmp_path: Path,
) -> None:
    # Before ``leave`` was the list's own method, an exception raised as it began left
    # the entry behind (after 35 to 131 of these), and every later fork waited for good.
    layer = SQLite(tmp_path / "a.db")
    layer.set("x", b"1")

    def interrupt(*_: object) -> None:
        raise InterruptedError

    previous = signal.signal(signal.SIGALRM, interrupt)
    randomness = random.Random(7)
    try:
        for _ in range(3000):
            try:
                signal.setitimer(signal.ITIMER_REAL, randomness.uniform(1e-6, 2e-5))
                while True:
                    layer.get("x")
            except InterruptedError:
                pass
            assert _mine() == 0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_what_a_forked_child_runs_first_resets_the_gate() -> None:
    # Run here, in this process, as test_fork.py does for the layers' locks: mutmut maps a
    # test only to the code its own process runs, never to what a forked child runs.
    me = threading.get_ident()
    _gate._close()  # what os.fork() runs first: no other thread is inside from here on
    lock, gate = _gate._lock, _gate._open
    try:
        _gate._inside.extend([me, 1, 2])  # 1 and 2: threads of the parent, gone in a child
        _gate._interrupted = True
        _gate._reset()  # what the child runs first
        assert _gate._inside == [me]  # the forking thread's own calls go on
        assert _gate._forks == 0 and _gate._open.is_set() and not _gate._interrupted
        assert _gate._lock is not lock and not _gate._lock.locked()
        assert _gate._open is not gate
        _gate.leave(me)
    finally:  # back to this process's own state, the fork over
        _gate._lock, _gate._open, _gate._forks = lock, gate, 1
        _gate._interrupted = False
        _gate._reopen()
    assert _mine() == 0 and _gate._open.is_set()


def test_a_forked_child_abandons_the_parked_connections(tmp_path: Path) -> None:
    layer = SQLite(tmp_path / "a.db")
    layer.set("a", b"1")
    (connection,) = layer._mine
    with fork_waiting():
        layer.close()  # parked
    sqlite_module._abandon_parked()  # what a child runs first: never closes the parent's
    assert connection not in sqlite_module._PARKED
    assert connection in sqlite_module._ABANDONED
    assert connection.execute("SELECT 1").fetchone() == (1,)


def test_outside_the_gate_from_outside_it_leaves_no_entry() -> None:
    with _gate.outside():
        assert _mine() == 0
    assert _mine() == 0

"""A process forked while another thread held a layer's lock can use the layer.

gunicorn --preload or a multiprocessing pool forks whatever the other threads are doing;
the child has only the thread that forked, so a lock another thread held at that
instant would stay held forever. Each layer with a lock renews it first thing in the
child. The held lock is the layer's own (taken here by a helper thread), so that the
fork lands inside the critical section every time rather than by luck.
"""

from __future__ import annotations

import functools
import gc
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage, _fork
from pystorage.layers import LRU, Codec, CountLimit, Layer, Memory, SQLite, Stats, Tier, Timed
from tests.helpers import CHILD_DEADLINE, HUNG, run_in_child


def _memory() -> tuple[Storage, Layer]:
    memory = Memory()
    return Storage(memory), memory


def _lru() -> tuple[Storage, Layer]:
    lru = LRU(10)
    return Storage(lru), lru


def _count_limit() -> tuple[Storage, Layer]:
    limit = CountLimit(3)
    return Storage(limit, Memory()), limit


def _tier() -> tuple[Storage, Layer]:
    tier = Tier(LRU(10))
    return Storage(tier, Memory()), tier


def _stats() -> tuple[Storage, Layer]:
    stats = Stats()
    return Storage(stats, Memory()), stats


def _timed() -> tuple[Storage, Layer]:
    timed = Timed()
    return Storage(timed, Memory()), timed


STACKS: dict[str, Callable[[], tuple[Storage, Layer]]] = {
    "memory": _memory,
    "lru": _lru,
    "count_limit": _count_limit,
    "tier": _tier,
    "stats": _stats,
    "timed": _timed,
}


def _use(storage: Storage) -> tuple[Any, ...]:
    """Writes of every kind, then what they left."""
    storage["a"] = 1
    storage.set("b", 2, ttl=100)
    del storage["a"]
    storage.set_many({"c": 3, "d": 4})
    storage["e"] = 5
    return storage["e"], storage.get("b"), sorted(storage)


def _expected(kind: str) -> tuple[Any, ...]:
    if kind == "count_limit":  # at most 3 entries: "b" went
        return 5, None, ["c", "d", "e"]
    return 5, 2, ["b", "c", "d", "e"]


@contextmanager
def held_by_another_thread(lock: threading.Lock) -> Iterator[None]:
    """``lock`` held by a helper thread for the duration of the block."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            done.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert taken.wait(CHILD_DEADLINE)
        yield
    finally:
        done.set()
        thread.join()


def _within_deadline(work: Callable[[], Any]) -> Any:
    """``work()`` in a daemon thread: its result, the exception it raised, or ``HUNG``."""
    outcome: list[Any] = [HUNG]

    def run() -> None:
        try:
            outcome[0] = work()
        except BaseException as exc:  # reported to the test
            outcome[0] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(CHILD_DEADLINE)
    return outcome[0]


@pytest.mark.parametrize("kind", sorted(STACKS))
def test_a_child_forked_while_another_thread_held_a_layer_lock_can_use_it(kind: str) -> None:
    storage, layer = STACKS[kind]()
    storage["before"] = 0
    del storage["before"]
    with held_by_another_thread(layer._lock):  # type: ignore[attr-defined]
        outcome = run_in_child(lambda: _use(storage))
    assert outcome == _expected(kind)


@pytest.mark.parametrize("kind", sorted(STACKS))
def test_what_a_child_runs_first_frees_a_lock_held_in_the_parent(kind: str) -> None:
    # The same renewal as above, run in this process: mutmut only maps a test to the code
    # that the test's own process runs, never to what a forked child runs.
    storage, layer = STACKS[kind]()
    with held_by_another_thread(layer._lock):  # type: ignore[attr-defined]
        _fork._renewals[layer](layer)  # what os.fork() runs for this layer in the child
        outcome = _within_deadline(lambda: _use(storage))
    assert outcome == _expected(kind)


# -- SQLite: a C library's mutexes, which no renewal can replace --------------------------


def _sqlite_use(folder: Path, name: str) -> tuple[Any, ...]:
    """A new SQLite store in ``folder`` opened, written and read back."""
    storage = Storage(Codec("json"), SQLite(folder / f"{name}.db"))
    storage.set_many({"a": 1, "b": [2]})
    return storage["a"], storage["b"], len(storage)


def test_a_fork_waits_for_another_threads_sqlite_call_and_the_child_uses_sqlite(
    tmp_path: Path,
) -> None:
    inside, forked = threading.Event(), threading.Event()
    leave = threading.Event()
    outcome: list[Any] = []

    def in_a_call() -> None:  # a thread in the middle of a call into SQLite
        me = _fork.enter()
        inside.set()
        leave.wait()
        _fork.leave(me)

    def fork() -> None:
        outcome.append(run_in_child(lambda: _sqlite_use(tmp_path, "child")))
        forked.set()

    caller = threading.Thread(target=in_a_call)
    caller.start()
    assert inside.wait(CHILD_DEADLINE)
    forker = threading.Thread(target=fork)
    forker.start()
    give_up = time.monotonic() + CHILD_DEADLINE
    while _fork._forks != 1:  # the fork waits at the gate...
        assert time.monotonic() < give_up, "the fork never waited for the call"
        time.sleep(0.001)
    assert not forked.is_set()  # ... and has forked nothing yet
    leave.set()
    caller.join()
    forker.join(2 * CHILD_DEADLINE)
    assert outcome == [(1, [2], 2)]
    assert _fork._forks == 0 and _fork._gate_open.is_set()
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


def test_the_forking_thread_goes_through_the_gate_and_other_threads_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waiting, went_in = threading.Event(), threading.Event()

    class Gate(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waiting.set()
            return super().wait(timeout)

    gate = Gate()
    gate.set()
    monkeypatch.setattr(_fork, "_gate_open", gate)

    forker_went_in, fork_over = threading.Event(), threading.Event()

    def fork() -> None:  # what os.fork() runs in the forking thread, with no fork
        _fork._close_gate()
        try:
            # The garbage collector may close a dead store's connections in the forking
            # thread, within the fork's own hooks: waiting there would wait forever.
            _fork.leave(_fork.enter())
            forker_went_in.set()
            fork_over.wait(CHILD_DEADLINE)
        finally:
            _fork._open_gate()

    def arrive() -> None:
        _fork.leave(_fork.enter())
        went_in.set()

    forker = threading.Thread(target=fork)
    forker.start()
    try:
        assert forker_went_in.wait(CHILD_DEADLINE)
        other = threading.Thread(target=arrive)
        other.start()
        assert waiting.wait(CHILD_DEADLINE)  # another thread waits for the fork
        assert not went_in.is_set()
    finally:
        fork_over.set()
        forker.join()
    assert went_in.wait(CHILD_DEADLINE)
    other.join()
    assert _fork._inside == [] and _fork._forks == 0


def test_a_dead_sqlite_layers_connections_are_closed_through_the_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = SQLite(tmp_path / "a.db")
    layer.set("a", b"1")
    (connection,) = layer._mine
    entered: list[int] = []
    real_enter = _fork.enter
    monkeypatch.setattr(_fork, "enter", lambda: entered.append(1) or real_enter())
    del layer
    gc.collect()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        connection.execute("SELECT 1")
    assert entered == [1]

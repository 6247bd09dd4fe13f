"""A process forked while another thread held a layer's lock can use the layer.

gunicorn --preload or a multiprocessing pool forks whatever the other threads are doing;
the child has only the thread that forked, so a lock another thread held at that
instant would stay held forever. Each layer with a lock renews it first thing in the
child. The held lock is the layer's own (taken here by a helper thread), so that the
fork lands inside the critical section every time rather than by luck.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pystorage import Storage, _fork
from pystorage.layers import LRU, CountLimit, Layer, Memory, Stats, Tier, Timed
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

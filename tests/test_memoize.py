"""storage.memoize(): computed once per key, across threads, and across processes on Redis."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

from pystorage import Storage
from pystorage.layers import Codec, Expiry, Memory
from tests.helpers import FakeClock, unique


def test_results_are_cached_and_keys_are_stable() -> None:
    storage = Storage(Memory())
    calls: list[tuple[int, int]] = []

    @storage.memoize()
    def add(a: int, b: int = 0) -> int:
        calls.append((a, b))
        return a + b

    assert add(1, b=2) == 3
    assert add(1, b=2) == 3
    assert add(2) == 2
    assert calls == [(1, 2), (2, 0)]
    assert add.cache_key(1, b=2).startswith("tests.test_memoize.")
    assert add.cache_key(1, b=2) in storage
    assert add.cache_key(1, b=2) != add.cache_key(2, b=1)


def test_none_is_a_result_too() -> None:
    storage = Storage(Memory())
    calls = []

    @storage.memoize()
    def nothing() -> None:
        calls.append(1)

    nothing()
    nothing()
    assert calls == [1]


def test_typed_and_custom_key() -> None:
    storage = Storage(Memory())

    @storage.memoize(typed=True, key="square")
    def square(x: float) -> float:
        return x * x

    assert square(2) == 4 and square(2.0) == 4.0
    assert square.cache_key(2) != square.cache_key(2.0)
    assert all(key.startswith("square:") for key in storage)
    assert len(storage) == 2


def test_invalidate_and_clear_touch_only_this_function() -> None:
    storage = Storage(Memory())
    storage["unrelated"] = 1

    @storage.memoize()
    def double(x: int) -> int:
        return 2 * x

    double(1), double(2)
    double.invalidate(1)
    assert double.cache_key(1) not in storage and double.cache_key(2) in storage
    double.cache_clear()
    assert list(storage) == ["unrelated"]


def test_ttl_expires_results() -> None:
    clock = FakeClock(start=0.0)
    storage = Storage(Expiry(clock=clock), Memory())
    calls = []

    @storage.memoize(ttl=10)
    def now() -> int:
        calls.append(1)
        return len(calls)

    assert now() == 1
    clock.now = 5
    assert now() == 1
    clock.now = 11
    assert now() == 2


def test_concurrent_misses_compute_once() -> None:
    storage = Storage(Codec("pickle"), Memory())
    calls = []
    started = threading.Barrier(8)

    @storage.memoize()
    def slow(x: int) -> int:
        calls.append(x)
        time.sleep(0.2)  # long enough for every thread to miss
        return x * 10

    results = []

    def call() -> None:
        started.wait()
        results.append(slow(7))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [7]
    assert results == [70] * 8


WORKER = """
import sys, time, redis
from pystorage import StorageProvider
storage = StorageProvider().create(
    StorageProvider.STORAGE_REDIS, url=sys.argv[1], prefix=sys.argv[2], codec="pickle"
)
@storage.memoize(key="shared")
def compute(x):
    with open(sys.argv[3], "a") as log:
        log.write("computed\\n")
    time.sleep(1.0)
    return x + 1
time.sleep(max(0.0, float(sys.argv[4]) - time.time()))  # both call at the same moment
print(compute(41))
"""


def test_two_processes_on_redis_compute_once(redis_url: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    prefix = unique("memo:") + ":"
    start_at = str(time.time() + 3.0)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_url, prefix, str(log), start_at],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=60)[0].strip() for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert outputs == ["42", "42"]
    assert log.read_text().count("computed") == 1
    client = redis.Redis.from_url(redis_url)
    # The entry is all that is left under the prefix: the lock was freed.
    assert len(list(client.scan_iter(match=f"{prefix}*"))) == 1


def test_nested_and_recursive_memoized_calls_do_not_deadlock() -> None:
    storage = Storage(Memory())

    @storage.memoize()
    def fib(n: int) -> int:
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(fib(60)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert result == [1548008755920]

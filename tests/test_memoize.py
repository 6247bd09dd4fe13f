"""storage.memoize(): computed once per key, across threads, and across processes on Redis."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import enum
import functools
import os
import subprocess
import sys
import threading
import time
import uuid
import zoneinfo
from collections import namedtuple
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import attrs
import pytest
import redis

from pystorage import Storage
from pystorage.errors import ConfigurationError, InvalidKeyError, UnsupportedError
from pystorage.layers import Codec, Expiry, Memory
from tests.helpers import FakeClock, unique

ROOT = Path(__file__).resolve().parent.parent


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


# Keys from values, never from addresses (issue 10, item 5).


class Plain:
    """An object with the default repr: no stable value."""

    def __init__(self, value: int) -> None:
        self.value = value


@dataclass
class Point:
    x: int
    y: int = 0
    note: str = field(default="", compare=False)  # not part of equality, nor of the key


@attrs.frozen
class Money:
    amount: decimal.Decimal
    currency: str


class Color(enum.Enum):
    RED = 1
    GREEN = 2


Pair = namedtuple("Pair", "left right")


class OwnZone(datetime.tzinfo):
    """A time zone class of its own: the encoder cannot know what tells two apart."""

    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(hours=1)


def test_an_object_with_the_default_repr_is_refused_at_the_call() -> None:
    # Keys from repr() took the memory address: P(2) reused P(1)'s address and its result.
    storage = Storage(Memory())
    calls = []

    @storage.memoize()
    def value_of(p: Plain) -> int:
        calls.append(p.value)
        return p.value

    with pytest.raises(InvalidKeyError, match=r"argument 'p' is a Plain, which has no stable"):
        value_of(Plain(1))
    with pytest.raises(InvalidKeyError, match=r"argument 'p' is a list that contains a Plain"):
        value_of.cache_key(p=[Plain(2)])  # type: ignore[arg-type]
    assert calls == [] and len(storage) == 0  # refused before computing anything


def test_values_that_opt_in_are_keyed_by_content() -> None:
    storage = Storage(Memory())

    @storage.memoize()
    def value_of(p: Any) -> Any:
        return p

    assert (value_of(Point(1)), value_of(Point(2))) == (Point(1), Point(2))
    # Equal values share a key; values that differ in any part, or in class, do not.
    equal = [
        (Point(1, 2), Point(1, 2, note="ignored: compare=False")),
        (Money(decimal.Decimal("1.5"), "EUR"), Money(decimal.Decimal("1.5"), "EUR")),
        ({"b": 1, "a": {2, 3}}, {"a": {3, 2}, "b": 1}),
        (Pair(1, "x"), Pair(1, "x")),
        (uuid.UUID(int=7), uuid.UUID(int=7)),
    ]
    for left, right in equal:
        assert value_of.cache_key(left) == value_of.cache_key(right), left
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    different = [
        Point(1, 2),
        Point(2, 1),
        Pair(1, 2),
        (1, 2),
        [1, 2],
        {1: 2},
        {(1, 2)},
        Money(decimal.Decimal("1.5"), "USD"),
        Money(decimal.Decimal("1.50"), "EUR"),
        Color.RED,
        Color.GREEN,
        Color,
        Point,
        datetime.datetime(2024, 1, 1, 12),
        datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.timezone.utc),
        datetime.datetime(2024, 1, 1, 12, tzinfo=paris),
        datetime.date(2024, 1, 1),
        datetime.time(12),
        datetime.timedelta(days=1),
        PurePosixPath("a/b"),
        PureWindowsPath("a/b"),
        "a/b",
        b"a/b",
        None,
        "",
        b"",
        (),
        ("",),
        ("", ""),
        ("a", "b"),
        ("ab",),
        1.5,
        -1,
        2**100,
    ]
    keys = {value_of.cache_key(value) for value in different}
    assert len(keys) == len(different)


@pytest.mark.parametrize(
    "value",
    [
        object(),
        lambda: 1,
        (n for n in range(3)),
        open,  # a builtin function
        threading.Lock(),
        datetime.datetime(2024, 1, 1, tzinfo=OwnZone()),
        {"nested": [1, object()]},
    ],
    ids=["object", "lambda", "generator", "builtin", "lock", "local-tz", "nested"],
)
def test_values_with_no_stable_key_are_refused(value: object) -> None:
    storage = Storage(Memory())

    @storage.memoize()
    def f(x: object) -> None:
        raise AssertionError("never called")

    with pytest.raises(InvalidKeyError, match="argument 'x' is a"):
        f(value)
    with pytest.raises(InvalidKeyError, match="argument 'x' is a"):
        f(x=value)


def test_an_open_file_and_a_list_that_contains_itself_are_refused(tmp_path: Path) -> None:
    storage = Storage(Memory())

    @storage.memoize()
    def f(*args: object) -> None:
        raise AssertionError("never called")

    with (tmp_path / "f").open("w") as file, pytest.raises(InvalidKeyError, match="#2"):
        f(1, file)
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(InvalidKeyError, match="contains itself"):
        f(loop)


def test_key_func_keys_what_the_arguments_cannot() -> None:
    storage = Storage(Memory())

    @storage.memoize(key_func=lambda p: p.value)
    def value_of(p: Plain) -> int:
        return p.value

    assert (value_of(Plain(1)), value_of(Plain(2))) == (1, 2)
    assert value_of.cache_key(Plain(1)) == value_of.cache_key(Plain(1))

    @storage.memoize(key_func=lambda p: p)
    def broken(p: Plain) -> int:
        return p.value

    with pytest.raises(InvalidKeyError, match="key_func returned a Plain"):
        broken(Plain(1))


def test_methods_on_two_instances_do_not_share_results() -> None:
    storage = Storage(Memory())

    class Service:  # default repr: refused unless a key function says what matters
        def __init__(self, rate: int) -> None:
            self.rate = rate

        @storage.memoize()
        def price(self, amount: int) -> int:
            return amount * self.rate

        @storage.memoize(key_func=lambda self, amount: (self.rate, amount))
        def keyed_price(self, amount: int) -> int:
            return amount * self.rate

    with pytest.raises(InvalidKeyError, match="argument 'self' is a Service"):
        Service(2).price(10)
    assert [Service(2).keyed_price(10), Service(3).keyed_price(10)] == [20, 30]

    @dataclass
    class Base:
        rate: int

        def price(self, amount: int) -> int:
            return amount * self.rate

    @dataclass
    class Account(Base):
        @storage.memoize()
        def price(self, amount: int) -> int:
            return super().price(amount) + 1  # super() makes a closure over __class__

    assert [Account(2).price(10), Account(3).price(10), Account(2).price(10)] == [21, 31, 21]
    # A bound method: its object is part of the function.
    two, three = storage.memoize()(Base(2).price), storage.memoize()(Base(3).price)
    assert [two(1), three(1)] == [2, 3]
    assert two.cache_key(1) != three.cache_key(1)
    with pytest.raises(ConfigurationError, match="method of a Service"):
        storage.memoize()(Service(2).__init__)


def usd_to(currency: str, rates: dict[str, float]) -> Callable[[float], float]:
    """A factory: each closure converts to its own currency."""

    def convert(amount: float) -> float:
        return amount * rates[currency]

    return convert


def test_closures_made_by_one_factory_do_not_share_results() -> None:
    # The case: usd_to_jpy(100) returned the rate of another currency.
    storage = Storage(Memory())
    rates = {"JPY": 150.0, "EUR": 0.9}
    usd_to_jpy = storage.memoize()(usd_to("JPY", rates))
    usd_to_eur = storage.memoize()(usd_to("EUR", rates))
    assert usd_to_eur(100) == pytest.approx(90.0)
    assert usd_to_jpy(100) == pytest.approx(15000.0)
    assert usd_to_jpy.cache_key(100) != usd_to_eur.cache_key(100)
    # The same closure made again (another process, another run) finds its entries.
    again = storage.memoize()(usd_to("JPY", dict(rates)))
    assert again.cache_key(100) == usd_to_jpy.cache_key(100)
    usd_to_jpy.cache_clear()  # clears this closure's entries, not its sibling's
    assert usd_to_jpy.cache_key(100) not in storage and usd_to_eur.cache_key(100) in storage


def test_a_closure_over_a_value_with_no_stable_key_needs_a_name() -> None:
    storage = Storage(Memory())
    source = Plain(150)

    def convert(amount: int) -> int:
        return amount * source.value

    with pytest.raises(ConfigurationError, match=r"closure over 'source': a Plain"):
        storage.memoize()(convert)  # refused when decorating, not at the first call
    named = storage.memoize(key="usd-to-jpy")(convert)  # key= names it: the user's choice
    assert named(2) == 300
    assert named.cache_key(2).startswith("usd-to-jpy:")


def logged(function: Callable[[int], int]) -> Callable[[int], int]:
    """A decorator without functools.wraps: every wrapper it makes has one name."""

    def wrapper(x: int) -> int:
        return function(x)

    return wrapper


def negate(x: int) -> int:
    return -x


def test_a_decorator_s_wrappers_are_told_apart_by_what_they_wrap() -> None:
    storage = Storage(Memory())
    logged_abs, logged_negate = storage.memoize()(logged(abs)), storage.memoize()(logged(negate))
    assert [logged_abs(-2), logged_negate(-2)] == [2, 2]
    assert logged_negate(3) == -3 and logged_abs(3) == 3
    with pytest.raises(ConfigurationError, match=r"closure over 'function': <function .*<lambda>"):
        storage.memoize()(logged(lambda x: x))


def test_a_closure_variable_assigned_after_decorating_is_read_at_the_first_call() -> None:
    storage = Storage(Memory())

    def usd_to_late(currency: str) -> Callable[[int], int]:
        @storage.memoize()
        def convert(amount: int) -> int:
            return amount * rate

        rate = {"JPY": 150, "EUR": 2}[currency]
        return convert

    assert [usd_to_late("EUR")(100), usd_to_late("JPY")(100)] == [200, 15000]


def test_functions_without_a_name_of_their_own_need_key() -> None:
    storage = Storage(Memory())
    for function in (lambda x: x, functools.partial(max, 0)):
        with pytest.raises(ConfigurationError, match="pass key="):
            storage.memoize()(function)
    assert storage.memoize(key="max0")(functools.partial(max, 0))(-1) == 0


def test_typed_keeps_equal_numbers_apart_at_any_depth() -> None:
    storage = Storage(Memory())

    @storage.memoize(typed=True)
    def typed(x: object, y: object = None) -> str:
        return repr(x)

    @storage.memoize()
    def untyped(x: object, y: object = None) -> str:
        return repr(x)

    assert [typed(1), typed(1.0), typed(True)] == ["1", "1.0", "True"]
    assert typed((1,)) == "(1,)" and typed((1.0,)) == "(1.0,)"
    assert typed.cache_key({1}) != typed.cache_key(frozenset({1}))
    # Untyped, like functools.lru_cache: equal numbers (1 == 1.0 == True) share an entry.
    assert [untyped(1), untyped(1.0), untyped(True)] == ["1", "1", "1"]
    assert untyped.cache_key((1, {1.0: True})) == untyped.cache_key((True, {1: 1.0}))
    assert untyped.cache_key(0.5) != untyped.cache_key(0)
    # Keyword order never matters, typed or not.
    assert typed.cache_key(x=1, y=2.0) == typed.cache_key(y=2.0, x=1)


def test_ttl_on_a_stack_that_cannot_expire_fails_when_decorating() -> None:
    class Forgetful(Memory):  # a backend of the user's that keeps no deadlines
        supports_ttl = False

    with pytest.raises(UnsupportedError):
        Storage(Forgetful()).memoize(ttl=5)
    with pytest.raises(ConfigurationError):
        Storage(Expiry(), Memory()).memoize(ttl=-1)


def test_cache_clear_leaves_other_names_that_start_alike() -> None:
    storage = Storage(Memory())
    a = storage.memoize(key="a")(abs)
    a_b = storage.memoize(key="a:b")(abs)
    a(-1), a_b(-1)
    a.cache_clear()
    assert list(storage) == [a_b.cache_key(-1)]


def test_generators_are_refused_when_decorating() -> None:
    storage = Storage(Memory())

    def numbers() -> Iterator[int]:
        yield 1

    with pytest.raises(ConfigurationError, match="generator"):
        storage.memoize()(numbers)


def test_async_functions_are_awaited_once_and_their_results_cached() -> None:
    storage = Storage(Codec("pickle"), Memory())
    calls: list[int] = []

    @storage.memoize()
    async def double(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0)
        if x < 0:
            raise ValueError(x)
        return 2 * x

    async def main() -> None:
        assert await double(2) == 4
        assert await double(2) == 4  # was: cannot reuse already awaited coroutine
        with pytest.raises(ValueError):
            await double(-1)
        with pytest.raises(ValueError):
            await double(-1)  # failures are not cached

    asyncio.run(main())
    asyncio.run(main())  # another event loop: the per-key asyncio locks are per loop
    assert calls == [2, -1, -1, -1, -1]
    assert storage[double.cache_key(2)] == 4  # the result, never a coroutine


def test_concurrent_async_callers_compute_once() -> None:
    storage = Storage(Memory())
    calls: list[int] = []

    async def main() -> list[int]:
        gate = asyncio.Event()

        @storage.memoize(key="slow")  # a closure over an Event: named by hand
        async def slow(x: int) -> int:
            calls.append(x)
            await gate.wait()
            return x * 10

        tasks = [asyncio.create_task(slow(7)) for _ in range(5)]
        # Tasks run in creation order when main yields: the first waits at the gate inside
        # slow(), the four others missed the storage and wait for the key's lock.
        await asyncio.sleep(0)
        assert calls == [7]
        gate.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(main()) == [70] * 5
    assert calls == [7]


def test_a_plain_function_that_returns_a_coroutine_is_not_cached() -> None:
    storage = Storage(Memory())

    async def work() -> int:
        return 1

    @storage.memoize()
    def hidden() -> Awaitable[int]:  # an async function behind a plain one
        return work()

    with pytest.raises(ConfigurationError, match="awaitable"):
        hidden()
    assert len(storage) == 0


# A module-level function and arguments that another process can import.
STABLE_STORAGE = Storage(Memory())


@STABLE_STORAGE.memoize()
def keyed(*args: object, **kwargs: object) -> None:
    """Only its keys are used."""


def stable_arguments() -> tuple[tuple[object, ...], dict[str, object]]:
    """Arguments whose repr or iteration order depends on the run (set order follows the
    salted str hash) but whose key must not."""
    words = {f"word{n}" for n in range(20)}
    return (
        words,
        frozenset(words),
        {word: len(word) for word in sorted(words, reverse=True)},
        Point(1, 2),
        Money(decimal.Decimal("9.99"), "EUR"),
        Color.GREEN,
        Pair(1.5, None),
        datetime.datetime(2024, 2, 29, 23, 59, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
        datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
        (datetime.date(2024, 1, 1), datetime.time(1, 2, 3, 4), datetime.timedelta(-1, 5)),
        (decimal.Decimal("-0.10"), Point, Color.RED),
        uuid.UUID(int=1),
        PurePosixPath("/tmp/x"),
        b"\x00\xff",
        2**70,
    ), {"z": "\udcff", "a": [True, 0.1]}


def test_keys_are_the_same_in_other_processes_and_runs() -> None:
    args, kwargs = stable_arguments()
    here = keyed.cache_key(*args, **kwargs)
    script = (
        "from tests.test_memoize import keyed, stable_arguments\n"
        "args, kwargs = stable_arguments()\n"
        "print(keyed.cache_key(*args, **kwargs))\n"
    )
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        there = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert there.returncode == 0, there.stderr
        assert there.stdout.strip() == here
    # The encoding is fixed: the same key on Python 3.10 to 3.13 (checked on each once, and
    # by make test-versions), so processes on different versions share results.
    assert here == "tests.test_memoize.keyed:5312ca79361a6d73085eb1492e0b2527"

"""The conformance suite, shipped: run it against a stack of your own layers.

``check(make)`` builds fresh stacks from ``make()`` (a new list of layers each time, the
backend last; each check clears the stack first) and runs every check on a ``Storage``
of them and on an ``AsyncStorage`` of them: a mapping against a ``dict`` model, random
operations against the model, hostile keys, TTLs and the atomic operations. Checks whose
capability the stack lacks are skipped, with the reason. It needs nothing but PyStorage
(no pytest), so that it runs from any test runner::

    from pystorage.conformance import check

    def test_my_backend():
        check(lambda: [Codec("pickle"), MyBackend()]).assert_ok()

Call it from sync code (from a coroutine: ``await asyncio.to_thread(check, make)``): the
async checks run on an event loop of their own.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from pystorage.errors import ConfigurationError, InvalidKeyError
from pystorage.layers.protocol import CAPABILITIES, missing
from pystorage.storage import Storage

#: Values every codec holds exactly (JSON's types).
VALUES: list[Any] = [
    {"text": "Hello World!"},
    [1, 2.5, None, True, "x"],
    "ünïcødé ✓",
    0,
    -(2**40),
    3.25,
    None,
    {"nested": {"list": [1, {"deep": "yes"}]}},
    "",
]
KEYS = ["some_key", "key.1", "with space", "ünï", "a/b", "../up", "", ".", "..", "x" * 300]
HOSTILE_KEYS = ["../../etc/passwd", "a\\b", "\0", "\n", "%41", "~", "e\u0301", "CON", "k" * 5000]
#: How long the TTL check waits for a short deadline to pass, at most.
EXPIRY_WAIT = 10.0


class Report:
    """What ``check`` found: the checks that passed, failed (with why) or were skipped
    (with why), and the reason of each capability the stack lacks."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.lacking: dict[str, str] = {}

    @property
    def ok(self) -> bool:
        """Whether no check failed."""
        return not self.failed

    def assert_ok(self) -> Report:
        """This report, or ``AssertionError`` with every failure (for a test)."""
        if self.failed:
            raise AssertionError(str(self))
        return self

    def __str__(self) -> str:
        lines = [f"{len(self.passed)} passed, {len(self.failed)} failed, "]
        lines[0] += f"{len(self.skipped)} skipped"
        lines += [f"FAILED {name}: {why}" for name, why in self.failed.items()]
        lines += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def check(make: Callable[[], Sequence[Any]], seed: int = 0, operations: int = 200) -> Report:
    """Run the suite on ``Storage(*make())`` and ``AsyncStorage(*make())``: a fresh
    stack per check. ``seed`` and ``operations``: the random operations' run."""
    from pystorage.aio.storage import AsyncStorage  # asyncio only for the async half

    if _in_a_loop():
        raise ConfigurationError(
            "check() runs its async checks on an event loop of its own: call it from sync "
            "code, or from a coroutine as `await asyncio.to_thread(check, make)`"
        )
    report = Report()
    probe = Storage(*make())
    try:
        for name in CAPABILITIES:
            reason = missing(probe.top, name)
            if reason is not None:
                report.lacking[name] = reason
    finally:
        probe.close()
    kinds: dict[str, Callable[[], Any]] = {
        "sync": lambda: _Direct(Storage(*make())),
        "async": lambda: _Awaited(AsyncStorage(*make())),
    }
    for kind, build in kinds.items():
        for name, needs, run in _CHECKS:
            label = f"{kind} {name}"
            if needs is not None and needs in report.lacking:
                report.skipped[label] = report.lacking[needs]
                continue
            try:
                storage = build()
            except Exception as error:  # a stack that cannot be built fails every check
                report.failed[label] = f"building the stack: {type(error).__name__}: {error}"
                continue
            try:
                storage.clear()  # a persistent backend keeps what the last check left
                run(storage, random.Random(seed), operations)
                report.passed.append(label)
            except Exception as error:
                report.failed[label] = _why(error)
            finally:
                storage.close()
    return report


def _in_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _why(error: Exception) -> str:
    where = traceback.extract_tb(error.__traceback__)[-1]
    return f"{type(error).__name__}: {error} (at {where.filename}:{where.lineno})"


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def _mapping(storage: Any, rng: random.Random, operations: int) -> None:
    for index, value in enumerate(VALUES):
        storage.set(f"k{index}", value)
    for index, value in enumerate(VALUES):
        _expect(storage.get(f"k{index}", "missing") == value, f"k{index} reads back as written")
    _expect(storage.get("absent", "default") == "default", "a missing key gives the default")
    _expect(not storage.contains("absent"), "a missing key is not contained")
    try:
        storage.delete("absent")
        raise AssertionError("deleting a missing key raises KeyError")
    except KeyError:
        pass
    storage.clear()
    for key in KEYS:
        storage.set(key, key)
    _expect(sorted(storage.all_keys()) == sorted(KEYS), "keys() lists every key written")
    _expect(storage.count() == len(KEYS), "count() counts every key")
    storage.delete("a/b")
    _expect(not storage.contains("a/b"), "a deleted key is gone")
    storage.set_many({"a": 1, "b": [2], "c": {"three": 3}})
    found = storage.get_many(["a", "c", "missing"])
    _expect(found == {"a": 1, "c": {"three": 3}}, f"get_many finds what exists: {found}")
    storage.delete_many(["a", "missing"])
    _expect(storage.get_many(["a", "b"]) == {"b": [2]}, "delete_many removes what exists")
    storage.clear()
    _expect(storage.count() == 0 and list(storage.all_keys()) == [], "clear() removes all")


def _model(storage: Any, rng: random.Random, operations: int) -> None:
    model: dict[str, Any] = {}
    keys = KEYS[:6]
    for step in range(operations):
        key, value = rng.choice(keys), rng.choice(VALUES)
        operation = rng.choice(("set", "set", "get", "delete", "set_many", "delete_many"))
        if operation == "set":
            storage.set(key, value)
            model[key] = value
        elif operation == "get":
            _expect(storage.get(key, "missing") == model.get(key, "missing"), f"step {step}")
        elif operation == "delete" and key in model:
            storage.delete(key)
            del model[key]
        elif operation == "set_many":
            items = {each: rng.randrange(-(2**62), 2**62) for each in rng.sample(keys, 3)}
            storage.set_many(items)
            model.update(items)
        elif operation == "delete_many":
            gone = rng.sample(keys, 2)
            storage.delete_many(gone)
            for each in gone:
                model.pop(each, None)
        _expect(storage.count() == len(model), f"count after step {step} ({operation})")
    listed = {key: storage.get(key, "missing") for key in storage.all_keys()}
    _expect(listed == model, f"the stack holds {listed}, the model {model}")


def _hostile_keys(storage: Any, rng: random.Random, operations: int) -> None:
    stored = []
    for key in HOSTILE_KEYS:
        try:
            storage.set(key, key)
        except InvalidKeyError:
            continue  # refused, not stored under another name: allowed
        stored.append(key)
    _expect(sorted(storage.all_keys()) == sorted(stored), "every stored key is listed as given")
    for key in stored:
        _expect(storage.get(key, None) == key, f"{key[:20]!r} reads back")


def _ttl(storage: Any, rng: random.Random, operations: int) -> None:
    storage.set("long", {"n": 1}, ttl=100)
    value, left = storage.get_with_ttl("long")
    _expect(value == {"n": 1} and left is not None and 50 < left <= 100, f"ttl left: {left}")
    found = storage.get_many_with_ttl(["long", "missing"])
    _expect(list(found) == ["long"] and found["long"][0] == {"n": 1}, "get_many_with_ttl")
    storage.set("short", 1, ttl=0.2)
    deadline = time.monotonic() + EXPIRY_WAIT
    while storage.contains("short") or storage.get("short", None) is not None:
        _expect(time.monotonic() < deadline, f"a 0.2 s ttl still held after {EXPIRY_WAIT} s")
        time.sleep(0.05)
    _expect(isinstance(storage.expire(), int), "expire() returns how many it removed")
    _expect(storage.get("long", None) == {"n": 1}, "a long ttl outlives a short one")


def _atomic(storage: Any, rng: random.Random, operations: int) -> None:
    _expect(storage.add("once", 1) is True, "add stores a missing key")
    _expect(storage.add("once", 2) is False and storage.get("once") == 1, "add keeps it")
    _expect(storage.incr("n", 5) == 5 and storage.decr("n", 2) == 3, "incr and decr")
    won = storage.race([("add", "raced", writer) for writer in range(8)])
    _expect(sorted(won) == [False] * 7 + [True], f"one of 8 racing adds stores: {won}")
    storage.race([("incr", "counter", 1) for _ in range(8)] * 25)
    _expect(storage.get("counter") == 200, f"200 racing incr: {storage.get('counter')}")


_Check = tuple[str, str | None, Callable[[Any, random.Random, int], None]]
#: Each check: its name, the capability it needs (None: the core), and its code.
_CHECKS: list[_Check] = [
    ("mapping", None, _mapping),
    ("random operations against a dict", None, _model),
    ("hostile keys", None, _hostile_keys),
    ("ttl", "ttl", _ttl),
    ("atomic", "atomic", _atomic),
]


class _Direct:
    """A Storage seen through the names the checks use (AsyncStorage's)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    def delete(self, key: str) -> None:
        del self.storage[key]

    def contains(self, key: str) -> bool:
        return key in self.storage

    def count(self) -> int:
        return len(self.storage)

    def all_keys(self) -> list[str]:
        return list(self.storage)

    def race(self, calls: list[tuple[str, str, Any]]) -> list[Any]:
        """The calls at once, from threads released together."""
        results: list[Any] = [None] * len(calls)
        start = threading.Barrier(len(calls))

        def run(index: int) -> None:
            name, key, argument = calls[index]
            start.wait(timeout=EXPIRY_WAIT)
            results[index] = getattr(self.storage, name)(key, argument)

        threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        _expect(None not in results, "every racing call returned")
        return results


class _Awaited:
    """An AsyncStorage seen through ``Storage``'s methods, each awaited to its end on a
    loop of this object's: the checks read the async stack's answers."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.loop = asyncio.new_event_loop()

    def _run(self, work: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(work)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return lambda *args, **options: self._run(getattr(self.storage, name)(*args, **options))

    def all_keys(self) -> list[str]:
        async def listed() -> list[str]:
            return [key async for key in self.storage]

        return self._run(listed())  # type: ignore[no-any-return]

    def race(self, calls: list[tuple[str, str, Any]]) -> list[Any]:
        """The calls as tasks gathered at once."""

        async def gathered() -> list[Any]:
            return list(
                await asyncio.gather(*(getattr(self.storage, n)(k, a) for n, k, a in calls))
            )

        return self._run(gathered())  # type: ignore[no-any-return]

    def close(self) -> None:
        try:
            self._run(self.storage.aclose())
        finally:
            self.loop.close()

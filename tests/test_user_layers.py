"""A user's own layers, written once in the sync style, in Storage and AsyncStorage: the
async twin of a wrapper is made from its source (pystorage.aio.twins)."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

from pystorage import Storage
from pystorage.aio.layers import AsyncWrapper
from pystorage.aio.storage import AsyncStorage
from pystorage.errors import BackendError, ConfigurationError
from pystorage.layers import Codec, Memory, Wrapper
from tests.user_layers import DictBackend, Envelope, HitCount, SlowLog


def _run(work: Any) -> Any:
    return asyncio.run(work)


def test_slowlog_times_sync_and_async_operations_alike() -> None:
    for make in (Storage, AsyncStorage):
        seen: list[tuple[str, str]] = []
        layer = SlowLog(
            threshold=0, report=lambda op, key, seconds, seen=seen: seen.append((op, key))
        )
        storage: Any = make(layer, Codec("json"), Memory())
        if make is Storage:
            storage["a"] = 1
            assert storage.get("a") == 1 and storage.get("b") is None
            stats = storage.stats()
        else:

            async def use(storage: Any = storage) -> Any:
                await storage.set("a", 1)
                assert await storage.get("a") == 1 and await storage.get("b") is None
                return storage.stats()

            stats = _run(use())
            assert type(storage.layers[0]).__name__ == "AsyncSlowLog"
        assert seen == [("set", "a"), ("get", "a"), ("get", "b")]
        assert stats == {"slow": 3}


def test_a_wrapper_that_changes_values_round_trips_and_refuses_foreign_ones() -> None:
    async def use() -> None:
        storage = AsyncStorage(Envelope("v2"), Memory())
        await storage.set("a", [1])
        await storage.set_many({"b": 2})
        assert await storage.add("c", 3) and not await storage.add("c", 4)
        assert await storage.incr("n", 5) == 5 and await storage.incr("n") == 6
        assert await storage.get_many(["a", "b", "c", "z"]) == {"a": [1], "b": 2, "c": 3}
        assert await storage.get_with_ttl("a") == ([1], None)
        backend = storage.layers[-1].backend
        assert backend.get("a") == ["v2", [1]]  # stored in its envelope
        backend.set("foreign", "bare")
        with pytest.raises(BackendError, match="not written by Envelope"):
            await storage.get("foreign")

    _run(use())
    sync = Storage(Envelope(), Memory())
    sync["a"] = 1
    assert sync["a"] == 1 and sync.layers[-1].get("a") == ["v1", 1]


def test_a_wrapper_that_keeps_state_counts_in_its_own_twin() -> None:
    template = HitCount(remember=2)

    async def use() -> tuple[Any, Any]:
        storage = AsyncStorage(template, DictBackend())
        await storage.set("a", 1)
        for key in ("a", "b", "a"):
            await storage.get(key)
        await storage.get_many(["a", "zz"])
        return storage.stats(), storage.layers[0].recent()

    assert _run(use()) == ({"reads_hit": 3, "reads_missed": 2}, ["a", "zz"])
    assert template.recent() == []  # the template given to AsyncStorage is not used


def test_the_twin_is_made_once_per_class_and_a_hand_written_one_is_used_as_given() -> None:
    first = AsyncStorage(SlowLog(), Memory()).layers[0]
    second = AsyncStorage(SlowLog(), Memory()).layers[0]
    assert type(first) is type(second)

    @attrs.define(eq=False)
    class Tagged(Wrapper):
        def get(self, key: str) -> Any:
            return ("sync", self._inner.get(key))

    @attrs.define(eq=False)
    class AsyncByHand(Tagged, AsyncWrapper):  # type: ignore[misc]
        async def get(self, key: str) -> Any:  # type: ignore[override]
            return ("by hand", await self._inner.get(key))

    async def use() -> Any:
        storage = AsyncStorage(AsyncByHand(), Memory())
        await storage.set("k", 1)
        return await storage.get_many(["k"]), await storage.top.get("k")

    assert _run(use()) == ({"k": 1}, ("by hand", 1))


def test_a_subclass_of_a_users_wrapper_calls_its_base_twin_through_super() -> None:
    @attrs.define(eq=False)
    class Louder(Envelope):
        def set(self, key: str, value: Any, ttl: float | None = None) -> None:
            super().set(key, f"{value}!", ttl)

    async def use() -> Any:
        storage = AsyncStorage(Louder(), Memory())
        await storage.set("k", "hi")
        return await storage.get("k"), storage.layers[-1].backend.get("k")

    assert _run(use()) == ("hi!", ["v1", "hi!"])


def _refusal(layer: Wrapper) -> str:
    with pytest.raises(ConfigurationError) as caught:
        AsyncStorage(layer, Memory())
    return str(caught.value)


def test_a_twin_that_the_rules_cannot_make_is_refused_naming_the_method() -> None:
    @attrs.define(eq=False)
    class Mapped(Wrapper):
        def get_many(self, keys: Any) -> Any:
            return dict(zip(keys, map(lambda key: self._inner.get(key), keys), strict=True))

    @attrs.define(eq=False)
    class Aliased(Wrapper):
        def get(self, key: str) -> Any:
            inner = self._inner
            return inner.get(key)

    @attrs.define(eq=False)
    class Sorted(Wrapper):
        def keys(self) -> Any:
            return iter(sorted(self._inner.keys()))

    @attrs.define(eq=False)
    class Eager(Wrapper):
        def link(self, inner: Any) -> None:
            super().link(inner)
            self._inner.count()  # I/O when the stack is built: it cannot be awaited

    made = type("Made", (Wrapper,), {"get": eval("lambda self, key: self._inner.get(key)")})

    assert _refusal(Mapped()).startswith(
        "AsyncStorage cannot make the async twin of "
        "test_a_twin_that_the_rules_cannot_make_is_refused_naming_the_method.<locals>"
        ".Mapped.get_many: it does I/O in a nested function or a lambda"
    )
    assert "Write the twin by hand: class AsyncMapped(Mapped, " in _refusal(Mapped())
    assert ".Aliased.get: it uses `self._inner` other than by calling" in _refusal(Aliased())
    assert ".Sorted.keys: it uses `self._inner.keys()` other than in a `for`" in _refusal(Sorted())
    assert "Made.get: its source cannot be read" in _refusal(made())
    assert ".Eager.link: it does I/O, and it runs sync" in _refusal(Eager())


@attrs.define(eq=False)
class Prefixed(Wrapper):
    """Changes keys: every operation that takes or lists them (iterations included)."""

    prefix: str = "app:"

    def get(self, key: str) -> Any:
        return self._inner.get(self.prefix + key)

    def lookup(self, key: str, default: Any = None) -> Any:
        return self._inner.lookup(self.prefix + key, default)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._inner.set(self.prefix + key, value, ttl)

    def contains(self, key: str) -> bool:
        return self._inner.contains(self.prefix + key)

    def get_many(self, keys: Any) -> dict[str, Any]:
        found = self._inner.get_many([self.prefix + key for key in keys])
        return {key.removeprefix(self.prefix): value for key, value in found.items()}

    def keys(self) -> Any:
        for key in self._inner.keys():  # noqa: SIM118 (a layer, not a dict)
            if key.startswith(self.prefix):
                yield key.removeprefix(self.prefix)

    def count(self) -> int:
        return len([key for key in self.keys()])


def test_iterations_over_the_layer_below_become_async_in_the_twin() -> None:
    async def use() -> Any:
        storage = AsyncStorage(Prefixed(), Memory())
        await storage.set_many({"a": 1, "b": 2})  # not overridden: forwarded as it is
        await storage.set("c", 3)
        listed = sorted([key async for key in storage])
        return listed, await storage.count(), await storage.get_many(["c", "z"])

    assert _run(use()) == (["c"], 1, {"c": 3})


def test_a_subclass_of_a_library_wrapper_gets_a_twin_over_the_generated_one() -> None:
    from pystorage.layers import Stats

    @attrs.define(eq=False)
    class Doubled(Stats):
        def get(self, key: str) -> Any:
            return 2 * super().get(key)

    async def use() -> Any:
        storage = AsyncStorage(Doubled(), Memory())
        await storage.set("n", 21)
        return await storage.get_many(["n"]), await storage.top.get("n"), storage.stats()

    found, doubled, stats = _run(use())
    assert found == {"n": 21} and doubled == 42 and stats["hits"] == 2  # get_many, get

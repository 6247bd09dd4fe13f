"""AsyncStorage, pinned (issue 24: `make mutation MODULE=aio_storage`).

Each test pins what the async facade builds from sync layers (the twins, configured
alike; the backend on the loop or in threads; Redis's async twin with the options of the
sync layer and of its client), when and how often the layers are prepared (once, bottom
up, on the first operation of any loop, again after a failure or a cancellation), what
each operation checks before it awaits anything (keys, TTLs, tags, deltas), what it
hands down and returns, and what it closes. The Redis twin is built without a server:
redis-py makes no connection until a command; what the commands do on a server is for
tests/test_async_redis.py.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio

from pystorage import AsyncStorage, Refresh, Storage
from pystorage.aio import layers as twins
from pystorage.aio import storage as aio_storage
from pystorage.aio.backend import OffLoop
from pystorage.aio.clients import LoopClients, WaitingPool
from pystorage.aio.twins import twin_class
from pystorage.errors import BackendError, ConfigurationError, InvalidKeyError, UnsupportedError
from pystorage.layers import (
    LRU,
    Codec,
    CountLimit,
    Expiry,
    Files,
    Memory,
    Redis,
    Stats,
    Tags,
    Tier,
    Wrapper,
)
from tests.helpers import FakeClock

DEADLINE = 30.0  # seconds: a generous bound for what should take milliseconds


def _run(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(work(), DEADLINE)

    return asyncio.run(bounded())


def _message(error: pytest.ExceptionInfo[BaseException]) -> str:
    return str(error.value)


@attrs.define(eq=False)
class Prepared(Wrapper):
    """A layer of the user's that notes when it is prepared (its twin, made from this
    source, notes in the same list)."""

    name: str = "layer"
    log: list[str] = attrs.field(factory=list)
    # A private field, given by its alias, and one that is not an argument at all.
    _secret: int = attrs.field(default=0, alias="secret")
    _made: int = attrs.field(default=0, init=False)

    def prepare(self) -> None:
        self.log.append(self.name)

    def counters(self) -> dict[str, int]:
        counts = self._inner.counters()
        counts[self.name] = self._secret
        return counts


class Forgetful(Memory):
    """A backend of the user's that keeps no deadlines."""

    supports_ttl = False


class Noting(Memory):
    """A Memory that notes the thread of each read, and whether it was closed."""

    threads: list[str]
    closed: int

    def lookup(self, key: str, default: Any = None) -> Any:
        self.threads.append(threading.current_thread().name)
        return super().lookup(key, default)

    def close(self) -> None:
        self.closed += 1
        super().close()


def _noting() -> Noting:
    backend = Noting()
    backend.threads, backend.closed = [], 0
    return backend


class NotingFiles(Files):
    """Files that note the thread of each read."""

    threads: list[str]

    def get(self, key: str) -> Any:
        self.threads.append(threading.current_thread().name)
        return super().get(key)

    def lookup(self, key: str, default: Any = None) -> Any:
        self.threads.append(threading.current_thread().name)
        return super().lookup(key, default)


# -- what is built: the twins, the backend's form -----------------------------------------


def test_each_wrapper_becomes_its_twin_configured_alike_and_the_backend_is_offloaded() -> None:
    expiry, codec, limit = Expiry(60), Codec("json"), CountLimit(10)
    stack = AsyncStorage(Stats(), expiry, codec, limit, Memory())
    kinds = [type(layer) for layer in stack.layers]
    assert kinds == [
        twins.AsyncStats,
        twins.AsyncExpiry,
        twins.AsyncCodec,
        twins.AsyncCountLimit,
        OffLoop,
    ]
    assert stack.layers[1].ttl == 60 and stack.layers[3].limit == 10
    assert stack.layers[2].codec == codec.codec
    assert stack.top is stack.layers[0]
    assert all(
        layer is not given
        for layer, given in zip(stack.layers[1:4], (expiry, codec, limit), strict=True)
    )
    assert repr(stack) == f"AsyncStorage({', '.join(map(repr, stack.layers))})"
    # TWINS: the twin of every wrapper of the package, by name.
    assert aio_storage.TWINS[Expiry] is twins.AsyncExpiry
    assert aio_storage.TWINS[Tier] is twins.AsyncTier
    assert all(twin.__name__ == "Async" + sync.__name__ for sync, twin in aio_storage.TWINS.items())
    assert all(issubclass(twin, sync) for sync, twin in aio_storage.TWINS.items())


def test_a_storage_given_last_lends_its_layers_and_wrappers_may_go_above_it() -> None:
    sync = Storage(Expiry(60), Codec("json"), Memory())
    stack = AsyncStorage(Stats(), sync)
    assert [type(layer) for layer in stack.layers] == [
        twins.AsyncStats,
        twins.AsyncExpiry,
        twins.AsyncCodec,
        OffLoop,
    ]
    assert stack.layers[-1].backend is sync.layers[-1]  # one store, seen by both

    async def main() -> Any:
        await stack.set("k", [1])
        return await stack.get("k")

    assert _run(main) == [1] and sync["k"] == [1]


def test_a_layer_of_the_user_s_gets_a_twin_with_every_argument_by_its_alias() -> None:
    log: list[str] = []
    stack = AsyncStorage(Prepared("mine", log, secret=7), Memory())
    twin = stack.layers[0]
    assert type(twin).__name__ == "AsyncPrepared" and isinstance(twin, Prepared)
    assert (twin.name, twin.log, twin._secret, twin._made) == ("mine", log, 7, 0)
    assert stack.stats() == {"mine": 7}
    # A twin (one written by hand, or made before) is used as it is.
    made = twin_class(Prepared, aio_storage.TWINS)(name="made", secret=2)
    assert AsyncStorage(made, Memory()).layers[0] is made


def test_what_cannot_be_stacked_is_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigurationError) as refused:
        AsyncStorage()
    assert _message(refused) == "an AsyncStorage needs at least a backend, e.g. Memory()"
    backend = Memory()
    with pytest.raises(ConfigurationError) as refused:
        AsyncStorage(backend, Memory())
    assert _message(refused) == (
        f"{backend!r} must be the last layer: only wrappers can have a layer below"
    )
    wrapper = Expiry(5)
    with pytest.raises(ConfigurationError) as refused:
        AsyncStorage(Codec("json"), wrapper)
    assert _message(refused) == (
        f"the last layer must be a backend (Memory, Files, ...), not {wrapper!r}"
    )


def test_an_async_tier_needs_its_front_in_memory(tmp_path: Path) -> None:
    front = Files(tmp_path / "front")
    with pytest.raises(ConfigurationError) as refused:
        AsyncStorage(Tier(front), Codec("json"), Files(tmp_path / "back"))
    assert _message(refused) == (
        f"an async Tier needs a front in memory (LRU or Memory), not {front!r}: its reads "
        "would block the event loop"
    )
    for memory in (LRU(10), Memory()):
        stack = AsyncStorage(Tier(memory), Codec("json"), Files(tmp_path / "back"))
        assert type(stack.layers[0]) is twins.AsyncTier


def test_memory_backends_run_on_the_loop_and_others_in_threads(tmp_path: Path) -> None:
    memory, lru = _noting(), LRU(10)
    files = NotingFiles(tmp_path / "files")
    files.threads = []
    loop_thread: list[str] = []

    async def main() -> None:
        loop_thread.append(threading.current_thread().name)
        await AsyncStorage(memory).get("k")
        await AsyncStorage(Codec("json"), files).get("k")

    _run(main)
    assert memory.threads == loop_thread
    assert len(files.threads) == 1 and files.threads != loop_thread
    assert (Memory, LRU) == aio_storage.IN_MEMORY
    assert AsyncStorage(lru).layers[-1].backend is lru


# -- preparation: once, bottom up, on the first operation; again after a failure ----------

#: Every operation, as the first one on a fresh stack (a Tags stack over a memory).
OPERATIONS: dict[str, Callable[[AsyncStorage], Coroutine[Any, Any, Any]]] = {
    "get": lambda s: s.get("k"),
    "get_with_ttl": lambda s: s.get_with_ttl("k"),
    "set": lambda s: s.set("k", 1),
    "set tagged": lambda s: s.set("k", 1, tags=["t"]),
    "add": lambda s: s.add("k", 1),
    "add tagged": lambda s: s.add("k", 1, tags=["t"]),
    "invalidate_tag": lambda s: s.invalidate_tag("t"),
    "snapshot_tags": lambda s: s.snapshot_tags(["t"]),
    "incr": lambda s: s.incr("k"),
    "decr": lambda s: s.decr("k"),
    "delete": lambda s: s.delete("k"),
    "contains": lambda s: s.contains("k"),
    "keys": lambda s: _listed(s),
    "count": lambda s: s.count(),
    "clear": lambda s: s.clear(),
    "get_many": lambda s: s.get_many(["k"]),
    "get_many_with_ttl": lambda s: s.get_many_with_ttl(["k"]),
    "set_many": lambda s: s.set_many({"k": 1}),
    "set_many tagged": lambda s: s.set_many({"k": 1}, tags=["t"]),
    "delete_many": lambda s: s.delete_many(["k"]),
    "expire": lambda s: s.expire(),
    "async with": lambda s: _entered(s),
}


async def _listed(storage: AsyncStorage) -> list[str]:
    return [key async for key in storage]


async def _entered(storage: AsyncStorage) -> AsyncStorage:
    async with storage as entered:
        return entered


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_first_operation_prepares_every_layer_once_bottom_up(operation: str) -> None:
    log: list[str] = []
    storage = AsyncStorage(Tags(), Prepared("top", log), Prepared("bottom", log), Memory())
    assert log == []  # building reads nothing: the first operation does, off the loop

    async def attempt() -> None:
        try:
            await OPERATIONS[operation](storage)
        except KeyError:  # get_with_ttl, delete: nothing stored
            pass

    async def main() -> None:
        await attempt()
        assert log == ["bottom", "top"]
        if operation != "async with":  # which closes the storage
            await storage.set("other", 1)
            await attempt()
        assert log == ["bottom", "top"]

    _run(main)


def test_async_with_prepares_and_gives_the_storage_then_closes_it() -> None:
    backend = _noting()
    storage = AsyncStorage(backend)

    async def main() -> None:
        async with storage as entered:
            assert entered is storage
            assert backend.closed == 0
        assert backend.closed == 1

    _run(main)


class Failing(Prepared):
    """Fails to prepare the first ``failures`` times."""

    failures: int = 0

    def prepare(self) -> None:
        self.log.append(self.name)
        if len(self.log) <= self.failures:
            raise BackendError(f"cannot read the index ({len(self.log)})")


def test_a_preparation_that_failed_is_tried_again_by_the_next_operation() -> None:
    log: list[str] = []
    twin_type = twin_class(Failing, aio_storage.TWINS)
    twin = twin_type(name="index", log=log)
    twin.failures = 1
    storage = AsyncStorage(twin, Memory())

    async def main() -> Any:
        with pytest.raises(BackendError, match=r"cannot read the index \(1\)"):
            await storage.get("k")
        await storage.set("k", 2)  # prepared again, and it worked
        return await storage.get("k")

    assert _run(main) == 2 and log == ["index", "index"]


def test_a_preparation_cancelled_with_its_loop_is_tried_again_by_the_next_one() -> None:
    log: list[str] = []
    twin = twin_class(Prepared, aio_storage.TWINS)(name="slow", log=log)
    entered = threading.Event()

    async def slow_prepare() -> None:
        log.append("slow")
        entered.set()
        await asyncio.Event().wait()  # until its loop ends

    twin.prepare = slow_prepare  # type: ignore[method-assign]
    storage = AsyncStorage(twin, Memory())

    async def first() -> None:
        operation = asyncio.ensure_future(storage.get("k"))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, DEADLINE)
        operation.cancel()
        with pytest.raises(asyncio.CancelledError):
            await operation

    _run(first)  # the loop ends: the preparation is cancelled with it

    async def done_prepare() -> None:
        log.append("again")

    twin.prepare = done_prepare  # type: ignore[method-assign]
    assert _run(lambda: storage.get("k", "missing")) == "missing"
    assert log == ["slow", "again"]


def test_tasks_of_other_loops_wait_for_the_one_preparation() -> None:
    log: list[str] = []
    twin = twin_class(Prepared, aio_storage.TWINS)(name="shared", log=log)
    entered, release = threading.Event(), threading.Event()

    async def held_prepare() -> None:
        log.append("shared")
        entered.set()
        await asyncio.get_running_loop().run_in_executor(None, release.wait, DEADLINE)

    twin.prepare = held_prepare  # type: ignore[method-assign]
    storage = AsyncStorage(twin, Memory())
    answers: list[Any] = []

    def call() -> None:
        answers.append(_run(lambda: storage.get("k", "missing")))

    first = threading.Thread(target=call)
    first.start()
    assert entered.wait(DEADLINE)
    second = threading.Thread(target=call)  # its loop finds the preparation under way
    second.start()
    release.set()
    first.join(DEADLINE)
    second.join(DEADLINE)
    assert answers == ["missing", "missing"] and log == ["shared"]


def test_settle_hands_the_outcome_of_a_preparation_to_every_loop() -> None:
    import concurrent.futures

    async def outcomes() -> list[Any]:
        found: list[Any] = []
        for ending in ("result", "error", "cancel"):
            task = asyncio.get_running_loop().create_future()
            if ending == "result":
                task.set_result(None)
            elif ending == "error":
                task.set_exception(BackendError("no index"))
            else:
                task.cancel()
            future: concurrent.futures.Future[None] = concurrent.futures.Future()
            aio_storage._settle(future, task)
            found.append(
                "cancelled"
                if future.cancelled()
                else repr(future.exception())
                if future.exception()
                else future.result()
            )
        return found

    assert _run(outcomes) == [None, "BackendError('no index')", "cancelled"]


# -- what each operation checks before anything runs, and what it hands down ---------------

REFUSALS: list[tuple[str, Callable[[AsyncStorage], Coroutine[Any, Any, Any]], type, str]] = [
    ("set key", lambda s: s.set(1, 1), InvalidKeyError, "keys are str, not int: 1"),  # type: ignore[arg-type]
    ("add key", lambda s: s.add(b"k", 1), InvalidKeyError, "keys are str, not bytes: b'k'"),  # type: ignore[arg-type]
    (
        "set_many key",
        lambda s: s.set_many({"a": 1, 2: 2}),  # type: ignore[dict-item]
        InvalidKeyError,
        "keys are str, not int: 2",
    ),
    ("incr key", lambda s: s.incr(None), InvalidKeyError, "keys are str, not NoneType: None"),  # type: ignore[arg-type]
    ("incr delta", lambda s: s.incr("k", True), Exception, "delta must be an int, not bool"),
    ("decr delta", lambda s: s.decr("k", 1.5), Exception, "delta must be an int, not float"),  # type: ignore[arg-type]
    ("set ttl", lambda s: s.set("k", 1, ttl=0), ConfigurationError, "ttl must be a finite"),
    ("add ttl", lambda s: s.add("k", 1, ttl=-1), ConfigurationError, "ttl must be a finite"),
    (
        "set_many ttl",
        lambda s: s.set_many({"k": 1}, ttl=float("inf")),
        ConfigurationError,
        "ttl must be a finite",
    ),
    ("incr ttl", lambda s: s.incr("k", ttl=0), ConfigurationError, "ttl must be a finite"),
    ("decr ttl", lambda s: s.decr("k", ttl=0), ConfigurationError, "ttl must be a finite"),
]
#: The refusals of a stack that keeps no deadlines and no tags.
PLAIN_REFUSALS: list[tuple[str, Callable[[AsyncStorage], Coroutine[Any, Any, Any]], type, str]] = [
    ("set ttl", lambda s: s.set("k", 1, ttl=5), UnsupportedError, "ttl"),
    ("add ttl", lambda s: s.add("k", 1, ttl=5), UnsupportedError, "ttl"),
    ("set_many ttl", lambda s: s.set_many({"k": 1}, ttl=5), UnsupportedError, "ttl"),
    ("incr ttl", lambda s: s.incr("k", ttl=5), UnsupportedError, "ttl"),
    ("set tags", lambda s: s.set("k", 1, tags=["t"]), ConfigurationError, "no Tags layer"),
    ("add tags", lambda s: s.add("k", 1, tags=["t"]), ConfigurationError, "no Tags layer"),
    (
        "set_many tags",
        lambda s: s.set_many({"k": 1}, tags=["t"]),
        ConfigurationError,
        "no Tags layer",
    ),
    ("invalidate_tag", lambda s: s.invalidate_tag("t"), ConfigurationError, "no Tags layer"),
    ("snapshot_tags", lambda s: s.snapshot_tags(["t"]), ConfigurationError, "no Tags layer"),
]


@pytest.mark.parametrize(
    ("plain", "refusal"),
    [(False, refusal) for refusal in REFUSALS] + [(True, refusal) for refusal in PLAIN_REFUSALS],
    ids=[name for name, *_ in REFUSALS] + [f"plain {name}" for name, *_ in PLAIN_REFUSALS],
)
def test_a_refused_operation_is_refused_before_anything_is_prepared_or_written(
    plain: bool, refusal: Any
) -> None:
    _, operation, error, message = refusal
    log: list[str] = []
    layers: list[Any] = [] if plain else [Tags(), Expiry(60)]
    backend = Forgetful() if plain else Memory()
    storage = AsyncStorage(*layers, Prepared("index", log), backend)
    with pytest.raises(error, match=message):
        _run(lambda: operation(storage))
    assert log == [] and backend.count() == 0


def test_contains_answers_false_for_what_is_not_a_str_without_preparing() -> None:
    log: list[str] = []
    storage = AsyncStorage(Prepared("index", log), Memory())
    assert _run(lambda: storage.contains(1)) is False  # type: ignore[arg-type]
    assert log == []
    assert _run(lambda: storage.contains("k")) is False and log == ["index"]


def _timed() -> tuple[AsyncStorage, FakeClock]:
    clock = FakeClock(0.0)
    return AsyncStorage(Tags(), Expiry(clock=clock), Memory(clock=clock)), clock


def test_writes_hand_down_their_ttl_and_their_tags() -> None:
    storage, clock = _timed()

    async def main() -> dict[str, Any]:
        await storage.set("set", 1, ttl=10)
        await storage.set("set tagged", 2, ttl=10, tags=["t"])
        assert await storage.add("add", 3, ttl=10) is True
        assert await storage.add("add", 4) is False
        assert await storage.add("add tagged", 5, ttl=10, tags=["t"]) is True
        await storage.set_many({"many": 6}, ttl=10)
        await storage.set_many({"many tagged": 7}, ttl=10, tags=["t"])
        assert await storage.incr("incr", 8, ttl=10) == 8
        assert await storage.decr("decr", 9, ttl=10) == -9
        await storage.set("untimed", 0, tags=["u"])
        return await storage.get_many_with_ttl(
            ["set", "set tagged", "add", "add tagged", "many", "many tagged", "incr", "decr"]
        )

    found = _run(main)
    assert {key: ttl for key, (_, ttl) in found.items()} == dict.fromkeys(found, 10.0)
    assert [value for value, _ in found.values()] == [1, 2, 3, 5, 6, 7, 8, -9]

    async def after_invalidating() -> list[str]:
        await storage.invalidate_tag("t")
        return sorted([key async for key in storage])

    # The tagged ones are missing; the untagged ones stay.
    assert _run(after_invalidating) == ["add", "decr", "incr", "many", "set", "untimed"]
    assert _run(lambda: storage.get_with_ttl("untimed")) == (0, None)
    clock.now = 10.0
    # The five left with a ttl, and the three whose tag was invalidated.
    assert _run(lambda: storage.expire()) == 8
    assert _run(lambda: storage.count()) == 1


def test_incr_and_decr_add_and_subtract_their_delta() -> None:
    storage = AsyncStorage(Memory())

    async def main() -> list[int]:
        return [
            await storage.incr("n"),
            await storage.incr("n", 5),
            await storage.decr("n"),
            await storage.decr("n", 3),
            await storage.incr("n", -10),
        ]

    assert _run(main) == [1, 6, 5, 2, -8]


def test_a_snapshot_holds_the_tokens_of_its_tags_sorted_once_each() -> None:
    storage, _ = _timed()

    async def main() -> Any:
        snapshot = await storage.snapshot_tags(["b", "a", "b"])
        await storage.set("k", 1, tags=snapshot)
        fresh = await storage.get("k")
        await storage.invalidate_tag("a")
        return snapshot, fresh, await storage.get("k", "missing")

    snapshot, fresh, after = _run(main)
    assert [tag for tag, _ in snapshot.tokens] == ["a", "b"]
    assert all(token for _, token in snapshot.tokens)
    assert (fresh, after) == (1, "missing")


def test_reads_listings_and_removals_answer_what_the_stack_holds() -> None:
    storage = AsyncStorage(Stats(), Memory())

    async def main() -> None:
        await storage.set_many({"a": 1, "b": 2, "c": 3})
        assert await storage.get("a") == 1
        assert await storage.get("z") is None and await storage.get("z", 0) == 0
        assert await storage.get_many(["a", "z", "c"]) == {"a": 1, "c": 3}
        assert await storage.get_with_ttl("b") == (2, None)
        with pytest.raises(KeyError):
            await storage.get_with_ttl("z")
        assert sorted([key async for key in storage.keys()]) == ["a", "b", "c"]  # noqa: SIM118
        assert await storage.count() == 3 and await storage.contains("a") is True
        await storage.delete("a")
        with pytest.raises(KeyError):
            await storage.delete("a")
        await storage.delete_many(["b", "z"])
        assert [key async for key in storage] == ["c"]
        await storage.clear()
        assert await storage.count() == 0 and await storage.contains("c") is False

    _run(main)
    counted = storage.stats()
    assert (counted["hits"], counted["misses"]) == (4, 4)


def test_aclose_closes_the_backend() -> None:
    backend = _noting()
    storage = AsyncStorage(Expiry(60), backend)
    _run(lambda: storage.set("k", 1))
    assert backend.closed == 0
    _run(storage.aclose)
    assert backend.closed == 1


def test_memoize_hands_every_option_on() -> None:
    clock = FakeClock(0.0)
    storage = AsyncStorage(Tags(), Expiry(clock=clock), Memory(clock=clock))
    calls: list[Any] = []

    @storage.memoize(ttl=10, key="named", typed=True, tags=lambda x: [f"x:{x}"])
    async def f(x: Any) -> Any:
        calls.append(x)
        return x

    @storage.memoize(ttl=10, key="keyed", key_func=lambda x: x % 2)
    async def parity(x: int) -> int:
        calls.append(x)
        return x % 2

    @storage.memoize(ttl=10, key="fresh", refresh=Refresh(stale=5, clock=clock))
    async def refreshed() -> int:
        calls.append("refreshed")
        return 1

    async def main() -> None:
        assert [await f(1), await f(1.0), await f(1)] == [1, 1.0, 1]  # typed: two keys
        assert f.cache_key(1).startswith("named:")
        assert await storage.get_with_ttl(f.cache_key(1)) == (1, 10.0)
        await storage.invalidate_tag("x:1")  # tags from the arguments
        assert await f(1) == 1
        assert [await parity(3), await parity(5)] == [1, 1]  # one key for both
        assert await refreshed() == 1
        assert refreshed.cache_key().startswith("fresh~refresh:")
        record, ttl = await storage.get_with_ttl(refreshed.cache_key())
        assert (record[:2], ttl) == ([1, 10.0], 15.0)  # kept ttl + stale

    _run(main)
    assert calls == [1, 1.0, 1, 3, "refreshed"]


# -- Redis: an async twin with the sync layer's options, a client per loop ------------------
# Built without a server: redis-py connects at the first command only.


def test_the_async_twin_of_a_server_backend_keeps_its_options_and_the_limits_bounds() -> None:
    client = redis.Redis(host="cache.invalid", port=6380)
    sync = Storage(
        CountLimit(100),
        Codec("pickle"),
        Redis(
            client=client,
            prefix="app:",
            lock_timeout=9,
            pool_timeout=4,
            autopipeline=False,
        ),
    )
    twin = AsyncStorage(sync).layers[-1]
    assert type(twin) is twins.AsyncRedis and isinstance(twin.client, LoopClients)
    assert (twin.prefix, twin.lock_timeout, twin.pool_timeout) == ("app:", 9.0, 4)
    assert (twin.autopipeline, twin.whole_database, twin.owned) == (False, False, True)
    assert twin.bounds == {"entries": 100} and str(twin.eviction) == "used"
    assert twin.client.template is client
    whole = AsyncStorage(Codec("json"), Redis(client=client, prefix="", whole_database=True))
    assert whole.layers[-1].whole_database is True and whole.layers[-1].autopipeline is True
    assert whole.layers[-1].bounds == {}


def test_each_loop_gets_a_client_to_the_same_server_with_the_same_options() -> None:
    client = redis.Redis(
        host="cache.invalid", port=6380, db=3, password="pw", max_connections=7, socket_timeout=2.5
    )
    loop_clients = (
        AsyncStorage(Codec("json"), Redis(client=client, pool_timeout=4)).layers[-1].client
    )

    async def pool() -> Any:
        return loop_clients.connection_pool

    made = _run(pool)
    assert type(made) is WaitingPool and made.connection_class is redis.asyncio.Connection
    options = made.connection_kwargs
    assert (options["host"], options["port"], options["db"], options["password"]) == (
        "cache.invalid",
        6380,
        3,
        "pw",
    )
    assert options["socket_timeout"] == 2.5
    assert (made.max_connections, made.timeout) == (7, 4)
    assert "connection_pool" not in options  # only what the async connection takes
    assert _run(pool) is not made  # another loop, another client


def test_a_unix_socket_client_s_loop_clients_use_unix_socket_connections() -> None:
    client = redis.Redis(unix_socket_path="/tmp/nothing-here.sock", db=2)
    loop_clients = AsyncStorage(Codec("json"), Redis(client=client)).layers[-1].client

    async def pool() -> Any:
        return loop_clients.connection_pool

    made = _run(pool)
    assert made.connection_class is redis.asyncio.UnixDomainSocketConnection
    assert made.connection_kwargs["path"] == "/tmp/nothing-here.sock"
    assert made.connection_kwargs["db"] == 2
    assert made.timeout == 20.0  # the default wait for a connection


def test_an_asyncio_client_given_is_used_as_it_is_and_left_open_for_its_owner() -> None:
    given = redis.asyncio.Redis(host="cache.invalid", port=6380)
    twin = AsyncStorage(Codec("json"), Redis(client=given, autopipeline=False)).layers[-1]
    assert twin.owned is False and twin.client.template is given

    async def client() -> Any:
        return twin.client.connection_pool

    assert _run(client) is given.connection_pool


def test_an_ssl_client_s_loop_clients_make_connections_with_what_they_take() -> None:
    # redis-py's sync SSL connections take OCSP options its async ones do not: left out,
    # else every connection of the loop's client would fail to be made.
    client = redis.Redis(host="cache.invalid", port=6390, ssl=True, ssl_cert_reqs="none")
    loop_clients = AsyncStorage(Codec("json"), Redis(client=client)).layers[-1].client

    async def connection() -> Any:
        return loop_clients.connection_pool.make_connection()

    made = _run(connection)
    assert type(made) is redis.asyncio.SSLConnection
    assert (made.host, made.port) == ("cache.invalid", 6390)


def test_loop_clients_pipeline_commands_only_with_autopipeline() -> None:
    for client in (redis.Redis(host="cache.invalid"), redis.asyncio.Redis(host="cache.invalid")):
        for autopipeline in (True, False):
            storage = AsyncStorage(Codec("json"), Redis(client=client, autopipeline=autopipeline))
            loop_clients = storage.layers[-1].client

            async def command(loop_clients: Any = loop_clients) -> Any:
                return loop_clients.get, loop_clients.connection_pool

            get, pool = _run(command)
            direct = getattr(get, "__self__", None)
            # Without autopipelining, the command is the client's own (no turn, no pipeline).
            assert isinstance(direct, redis.asyncio.Redis) is (not autopipeline), (
                client,
                autopipeline,
            )
            if direct is not None:
                assert direct.connection_pool is pool
            if isinstance(client, redis.asyncio.Redis):
                break  # a given client serves its first loop only


@pytest.mark.parametrize(("most", "turns"), [(2, 2), (None, 100)], ids=["two", "default"])
def test_a_cluster_client_s_twin_reaches_its_nodes_one_turn_per_connection(
    redis_cluster_url: str, most: int | None, turns: int
) -> None:
    from redis.cluster import RedisCluster

    from tests.helpers import unique

    options: dict[str, Any] = {"client_name": "twin"}
    if most is not None:
        options["max_connections"] = most
    client = RedisCluster.from_url(redis_cluster_url, **options)
    storage = AsyncStorage(
        Codec("json"), Redis(client, prefix=unique("twin") + ":", pool_timeout=0.05)
    )

    async def main() -> Any:
        clients = storage.layers[-1].client
        # This loop's client starts from the sync client's nodes, with its options.
        assert sorted(clients.nodes_manager.startup_nodes) == sorted(
            node.name for node in client.get_nodes()
        )
        await asyncio.gather(*[storage.incr("n") for _ in range(20)])
        assert await clients.client_getname() == "twin"
        nodes = clients.get_nodes()
        # Every turn of this loop (one per connection of a node: max_connections, else
        # 100) held elsewhere: the next command waits for one, as long as pool_timeout,
        # and says so.
        held = [clients.pipeline(transaction=True) for _ in range(turns)]
        for number, pipe in enumerate(held):
            await pipe.watch(f"{{n}}held{number}".encode())
        with pytest.raises(BackendError, match=r"cannot read 'n': waited 0.05 s for a free "):
            await storage.get("n")
        for pipe in held:
            await pipe.reset()
        found = await storage.get("n")
        await storage.aclose()
        return found, nodes

    found, nodes = _run(main)
    assert found == 20
    assert sorted((node.host, node.port) for node in nodes) == sorted(
        (node.host, node.port) for node in client.get_nodes()
    )


def test_memoize_is_untyped_by_default() -> None:
    storage = AsyncStorage(Memory())
    calls: list[Any] = []

    @storage.memoize(key="f")
    async def f(x: Any) -> Any:
        calls.append(x)
        return x

    async def main() -> list[Any]:
        return [await f(1), await f(1.0), await f(True)]

    assert _run(main) == [1, 1, 1] and calls == [1]  # 1 == 1.0 == True: one entry


@pytest.mark.parametrize("operation", [name for name in OPERATIONS if name != "async with"])
def test_a_prepared_memory_stack_answers_without_a_trip_through_the_loop(operation: str) -> None:
    # The fast path of every operation once prepared (what make bench measures): a
    # memory backend runs on the loop, and nothing is awaited that would suspend.
    storage = AsyncStorage(Tags(), Memory())

    async def main() -> None:
        await storage.set("k", 1)  # prepared
        step = OPERATIONS[operation](storage)
        try:
            step.send(None)
        except (StopIteration, KeyError):
            pass  # done at the first step (with its answer or its KeyError)
        else:
            step.close()
            raise AssertionError(f"{operation} suspended on a prepared memory stack")

    _run(main)


def test_building_runs_no_preparation_of_its_own() -> None:
    # The twins' prepare is a coroutine: called while building, it would be made and
    # dropped unawaited (a RuntimeWarning), the preparation left to the first operation.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        storage = AsyncStorage(Prepared("index"), CountLimit(10), Memory())
        gc.collect()
    assert [str(warning.message) for warning in caught] == []
    assert _run(lambda: storage.count()) == 0 and storage.layers[0].log == ["index"]

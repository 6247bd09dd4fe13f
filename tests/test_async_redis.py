"""AsyncStorage over Redis and Redis Cluster from many event loops, and bursts of tasks
larger than the connection pool (issue 17, items 4 and 5)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from pystorage import AsyncStorage
from pystorage.errors import BackendError, ConfigurationError
from pystorage.layers import Codec, Redis
from tests.helpers import unique

KINDS = ["server", "cluster"]


def _storage(kind: str, request: pytest.FixtureRequest, **options: Any) -> AsyncStorage:
    """A fresh AsyncStorage over a client PyStorage makes from a sync one's options."""
    import redis
    from redis.cluster import RedisCluster

    if kind == "cluster":
        client: Any = RedisCluster.from_url(request.getfixturevalue("redis_cluster_url"))
    else:
        client = redis.Redis.from_url(
            request.getfixturevalue("redis_url"), **options.pop("client_options", {})
        )
    return AsyncStorage(Codec("json"), Redis(client, prefix=unique("loops:") + ":", **options))


def _in_thread(work: Callable[[], Any]) -> Any:
    """The result of ``work()`` run in a new thread (its own event loop), or its error."""
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # handed to the test's thread
            result.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


@pytest.mark.parametrize("kind", KINDS)
def test_one_storage_serves_one_event_loop_after_another(
    kind: str, request: pytest.FixtureRequest
) -> None:
    storage = _storage(kind, request)
    asyncio.run(storage.set("k", 1))
    assert asyncio.run(storage.get("k")) == 1  # was: RuntimeError: Event loop is closed
    assert asyncio.run(storage.incr("n")) == 1
    assert asyncio.run(storage.get_many(["k", "n"])) == {"k": 1, "n": 1}


@pytest.mark.parametrize("kind", KINDS)
def test_a_loop_in_another_thread_uses_the_same_storage(
    kind: str, request: pytest.FixtureRequest
) -> None:
    storage = _storage(kind, request)

    async def main() -> None:
        await storage.set("k", "main")
        # The main loop still runs (awaiting the thread's result) while the thread's
        # loop works: both at once, each with its own client.
        other = await asyncio.get_running_loop().run_in_executor(
            None, lambda: asyncio.run(storage.get("k"))
        )
        assert other == "main"
        assert await storage.get("k") == "main"

    asyncio.run(main())
    assert _in_thread(lambda: asyncio.run(storage.get("k"))) == "main"


@pytest.mark.parametrize("kind", KINDS)
def test_two_loops_in_two_threads_at_once_count_every_increment(
    kind: str, request: pytest.FixtureRequest
) -> None:
    storage = _storage(kind, request)
    both_running = threading.Barrier(2, timeout=60)

    def increments() -> int:
        async def main() -> int:
            await asyncio.get_running_loop().run_in_executor(None, both_running.wait)
            totals = await asyncio.gather(*[storage.incr("n") for _ in range(100)])
            return max(totals)

        return asyncio.run(main())

    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(increments())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 2
    assert asyncio.run(storage.get("n")) == 200


def test_a_given_async_client_is_used_on_its_own_loop_and_refused_elsewhere(
    redis_url: str,
) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    storage = AsyncStorage(Codec("json"), Redis(client, prefix=unique("given:") + ":"))

    async def first() -> Any:
        await storage.set("k", 1)
        value = await storage.get("k")
        await client.aclose()
        return value

    assert asyncio.run(first()) == 1
    with pytest.raises(ConfigurationError, match=r"one loop only.*url="):
        asyncio.run(storage.get("k"))
    with pytest.raises(ConfigurationError, match="belongs to the event loop"):
        _in_thread(lambda: asyncio.run(storage.get("k")))


@pytest.mark.parametrize("kind", KINDS)
def test_a_burst_of_300_tasks_waits_for_connections_and_counts_exactly(
    kind: str, request: pytest.FixtureRequest
) -> None:
    storage = _storage(kind, request)

    async def main() -> Any:
        await asyncio.gather(*[storage.incr("n") for _ in range(300)])
        return await storage.get("n")

    assert asyncio.run(main()) == 300  # was: BackendError ... Too many connections


@pytest.mark.long
@pytest.mark.parametrize("kind", KINDS)
def test_a_burst_of_1000_tasks_waits_for_connections_and_counts_exactly(
    kind: str, request: pytest.FixtureRequest
) -> None:
    storage = _storage(kind, request)

    async def main() -> Any:
        await asyncio.gather(*[storage.incr("n") for _ in range(1000)])
        await asyncio.gather(*[storage.set(f"k{n}", n) for n in range(1000)])
        return await storage.get("n"), await storage.count()

    assert asyncio.run(main()) == (1000, 1001)


@pytest.mark.parametrize("kind", KINDS)
def test_a_task_that_waits_too_long_for_a_connection_says_so(
    kind: str, request: pytest.FixtureRequest
) -> None:
    if kind == "cluster":
        import redis.cluster

        url = request.getfixturevalue("redis_cluster_url")
        client: Any = redis.cluster.RedisCluster.from_url(url, max_connections=2)
        storage = AsyncStorage(
            Codec("json"), Redis(client, prefix=unique("wait:") + ":", pool_timeout=0.05)
        )
    else:
        storage = _storage(kind, request, client_options={"max_connections": 2}, pool_timeout=0.05)

    async def main() -> None:
        await storage.set("k", 1)
        clients = storage.layers[-1].client
        # Both connections (the cluster: both turns of this loop) held elsewhere.
        held = [clients.pipeline(transaction=True) for _ in range(2)]
        for number, pipe in enumerate(held):
            await pipe.watch(f"{{k}}held{number}".encode())
        with pytest.raises(BackendError, match=r"cannot read 'k': waited 0.05 s for a free "):
            await storage.get("k")
        for pipe in held:
            await pipe.reset()
        assert await storage.get("k") == 1  # the connections are back
        await storage.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_memoize_takes_its_redis_lock_in_each_event_loop(
    kind: str, request: pytest.FixtureRequest
) -> None:
    storage = _storage(kind, request)
    calls: list[int] = []

    @storage.memoize()
    async def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert asyncio.run(square(2)) == 4  # a miss: the Redis lock of this loop's client
    assert asyncio.run(square(3)) == 9  # another loop: a lock of its own client
    assert _in_thread(lambda: asyncio.run(square(4))) == 16
    assert asyncio.run(square(2)) == 4
    assert calls == [2, 3, 4]

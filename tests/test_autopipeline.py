"""Autopipelining (issue 23): the commands of an event loop's tasks issued in one tick go
to Redis as one pipeline, and every caller still gets its own result or its own error.

Real servers only (the session's redis-server and cluster, and servers of a test's own
where one is killed or resharded). Every wait has a deadline: a caller that hangs fails
the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.exceptions import DataError, RedisClusterException, ResponseError

import pystorage
from pystorage import AsyncStorage
from pystorage.errors import BackendError, ConfigurationError
from pystorage.layers import Codec, Redis
from pystorage.testing import RedisClusterServer, RedisServer
from tests.helpers import quick_and_long, unique

KINDS = ["server", "cluster"]
#: The longest any awaited burst may take before the test calls it a hang.
DEADLINE = 120.0
#: What ``get`` answers for a missing key, in these tests.
MISSING = "<missing>"


def _storage(
    kind: str, url: str, autopipeline: bool = True, timeout: float | None = None, **options: Any
) -> AsyncStorage:
    """``timeout``: the client's socket timeouts instead of redis-py's 5 s (a burst of 100
    connects can take longer than that on a loaded machine)."""
    more = {} if timeout is None else {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    client: Any = (
        RedisCluster.from_url(url, **more)
        if kind == "cluster"
        else redis.Redis.from_url(url, **more)
    )
    backend = Redis(client, prefix=unique("ap:") + ":", autopipeline=autopipeline, **options)
    return AsyncStorage(Codec("json"), backend)


def _url(kind: str, request: pytest.FixtureRequest) -> str:
    fixture = "redis_cluster_url" if kind == "cluster" else "redis_url"
    return str(request.getfixturevalue(fixture))


def _connections(url: str) -> int:
    """The connections the server (every node of a cluster) has accepted so far."""
    admin = redis.Redis.from_url(url)
    try:
        info = admin.info("stats")
        return int(info["total_connections_received"])
    finally:
        admin.close()


def _within(work: Awaitable[Any]) -> Any:
    return asyncio.wait_for(work, DEADLINE)


async def _until(condition: Callable[[], bool]) -> None:
    """Turn the loop until ``condition()`` holds, for ``DEADLINE`` seconds at most."""

    async def turning() -> None:
        while not condition():
            await asyncio.sleep(0)

    await asyncio.wait_for(turning(), DEADLINE)


# -- what coalescing changes: connections and round trips ----------------------------------


@pytest.mark.parametrize("autopipeline", [True, False])
def test_a_burst_of_100_tasks_takes_one_connection_when_coalesced(
    autopipeline: bool, request: pytest.FixtureRequest
) -> None:
    url = _url("server", request)
    storage = _storage("server", url, autopipeline, timeout=DEADLINE)

    async def main() -> list[Any]:
        await storage.set("k", 7)
        before = _connections(url)
        got = await _within(asyncio.gather(*(storage.get("k") for _ in range(100))))
        after = _connections(url)
        await storage.aclose()
        return [got, after - before]

    got, opened = asyncio.run(main())
    assert got == [7] * 100
    if autopipeline:
        # The whole tick went as one pipeline on the connection the set opened (the one
        # counted is the second INFO's).
        assert opened <= 1 + 1
    else:
        assert opened >= 50  # each task its own connection, as redis.asyncio does


def test_autopipeline_is_an_option_of_redis_and_of_urls(request: pytest.FixtureRequest) -> None:
    url = _url("server", request)
    assert Redis(url=url).autopipeline is True
    assert pystorage.open(f"{url}?autopipeline=0").layers[-1].autopipeline is False
    assert pystorage.open(f"{url}?autopipeline=1").layers[-1].autopipeline is True
    with pytest.raises(ConfigurationError, match="autopipeline= must be 1 or 0"):
        pystorage.open(f"{url}?autopipeline=maybe")
    with pytest.raises(ConfigurationError, match="autopipeline must be True or False"):
        Redis(url=url, autopipeline="no")  # type: ignore[arg-type]
    storage = pystorage.open_async(f"{url}?autopipeline=0&prefix={unique('ap')}:")
    assert storage.layers[-1].autopipeline is False

    async def main() -> Any:
        await storage.set("k", 1)
        clients = storage.layers[-1].client
        coalescer = clients._here().coalescer
        await storage.aclose()
        return coalescer

    assert asyncio.run(main()) is None


# -- the same answers as the path without coalescing ---------------------------------------


async def _model_run(storage: AsyncStorage, tasks: int, seed: int, at_once: int) -> list[Any]:
    """``tasks`` tasks, ``at_once`` of them at a time, each doing 12 random operations on
    keys of its own, each answer checked against a dict model of that task's keys;
    returns every task's answers (the same whatever ``at_once``: a task's operations and
    keys depend on its number only)."""

    async def one(number: int) -> list[Any]:
        rng = random.Random(seed * 100_003 + number)
        keys = [f"t{number}-{i}" for i in range(4)]
        model: dict[str, Any] = {}
        answers: list[Any] = []
        for step in range(12):
            key = rng.choice(keys)
            what = rng.randrange(9)
            if what == 0:
                value = [number, step, "é" * rng.randrange(3)]
                await storage.set(key, value)
                model[key] = value
                answers.append(None)
            elif what == 1:
                answers.append(await storage.get(key, MISSING))
                assert answers[-1] == model.get(key, MISSING)
            elif what == 2:
                try:
                    await storage.delete(key)
                    answers.append(True)
                except KeyError:
                    answers.append(False)
                assert answers[-1] == (model.pop(key, KeyError) is not KeyError)
            elif what == 3:
                answers.append(await storage.add(key, step))
                assert answers[-1] == (key not in model)
                model.setdefault(key, step)
            elif what == 4:
                answers.append(await storage.contains(key))
                assert answers[-1] == (key in model)
            elif what == 5:
                answers.append(await storage.get_many(keys))
                assert answers[-1] == {k: model[k] for k in keys if k in model}
            elif what == 6:
                items = {k: step for k in rng.sample(keys, 2)}
                await storage.set_many(items)
                model.update(items)
                answers.append(None)
            elif what == 7:
                await storage.set(key, step, ttl=3600)
                model[key] = step
                value, left = await storage.get_with_ttl(key)
                assert value == step and left is not None and 3500 < left <= 3600
                answers.append(value)
            else:
                if isinstance(model.get(key, 0), int):
                    answers.append(await storage.incr(key))
                    model[key] = model.get(key, 0) + 1
                    assert answers[-1] == model[key]
                else:
                    answers.append(None)
        return answers

    answers: list[Any] = []
    for start in range(0, tasks, at_once):
        numbers = range(start, min(start + at_once, tasks))
        answers += await _within(asyncio.gather(*(one(n) for n in numbers)))
    return answers


@pytest.mark.parametrize("kind", KINDS)
@quick_and_long(300, 1000)
def test_a_burst_of_random_operations_answers_as_the_model_and_as_uncoalesced(
    kind: str, scale: int, request: pytest.FixtureRequest
) -> None:
    # The path without coalescing runs 100 tasks at a time: a thousand tasks on its
    # hundred connections wait their turns too long (the pool does not queue them fairly).
    # 300 tasks in make test (1,000 took 94 s on a cluster under load), 1,000 in the long run.
    url = _url(kind, request)
    answers = {}
    for autopipeline, at_once in ((True, scale), (False, 100)):
        storage = _storage(kind, url, autopipeline)

        async def main(storage: AsyncStorage = storage, at_once: int = at_once) -> list[Any]:
            try:
                return await _model_run(storage, scale, seed=23, at_once=at_once)
            finally:
                await storage.aclose()

        answers[autopipeline] = asyncio.run(main())
    assert answers[True] == answers[False]


def test_a_bounded_store_in_a_burst_keeps_its_bound_and_its_answers(
    request: pytest.FixtureRequest,
) -> None:
    # The scripts behind a server-kept bound (and reads that are uses) in pipelines.
    from pystorage.layers import CountLimit

    url = _url("server", request)
    storage = AsyncStorage(
        CountLimit(50), Codec("json"), Redis(url=url, prefix=unique("ap-bound:") + ":")
    )

    async def main() -> tuple[int, list[Any]]:
        await storage.set("first", 0)  # the books are ready: the burst's writes are booked
        # in the order of the calls (one pipeline), so the last 50 written stay.
        await _within(asyncio.gather(*(storage.set(f"k{i}", i) for i in range(200))))
        got = await _within(asyncio.gather(*(storage.get(f"k{i}") for i in range(150, 200))))
        count = await storage.count()
        await storage.aclose()
        return count, got

    count, got = asyncio.run(main())
    assert count == 50
    assert got == list(range(150, 200))


def test_scripts_the_server_forgot_are_sent_again_within_a_burst(
    request: pytest.FixtureRequest,
) -> None:
    from pystorage.layers import CountLimit

    url = _url("server", request)
    storage = AsyncStorage(
        CountLimit(1000, eviction="used"),
        Codec("json"),
        Redis(url=url, prefix=unique("ap-noscript:") + ":"),
    )
    admin = redis.Redis.from_url(url)

    async def main() -> list[Any]:
        await storage.set_many({f"k{i}": i for i in range(100)})
        admin.script_flush()  # every EVALSHA of the next burst: NOSCRIPT, then EVAL
        got = await _within(asyncio.gather(*(storage.get(f"k{i}") for i in range(100))))
        await storage.aclose()
        return list(got)

    try:
        assert asyncio.run(main()) == list(range(100))
    finally:
        admin.close()


# -- one caller's error, one caller's cancellation -----------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_one_bad_command_among_100_fails_alone(kind: str, request: pytest.FixtureRequest) -> None:
    url = _url(kind, request)
    storage = _storage(kind, url)
    prefix = storage.layers[-1].prefix.encode()

    async def main() -> list[Any]:
        await storage.set_many({f"k{i}": i for i in range(100)})
        clients = storage.layers[-1].client
        bad: dict[int, Callable[[], Awaitable[Any]]] = {
            37: lambda: clients.eval("return redis.error_reply('ERR boom')", 0),
            64: lambda: clients.set(prefix + b"k64", None),  # redis-py cannot encode None
        }
        if kind == "cluster":  # keys in two slots: a cluster refuses the script
            bad[81] = lambda: clients.eval("return 1", 2, b"{a}x", b"{b}x")
        calls = [bad[i]() if i in bad else storage.get(f"k{i}") for i in range(100)]
        got = await _within(asyncio.gather(*calls, return_exceptions=True))
        # And the storage goes on, coalescing.
        again = await _within(asyncio.gather(*(storage.get(f"k{i}") for i in range(100))))
        await storage.aclose()
        return [got, again]

    got, again = asyncio.run(main())
    assert isinstance(got[37], ResponseError) and "boom" in str(got[37])
    assert isinstance(got[64], DataError)
    bad = {37, 64}
    if kind == "cluster":
        assert isinstance(got[81], RedisClusterException)
        bad.add(81)
    assert [got[i] for i in range(100) if i not in bad] == [i for i in range(100) if i not in bad]
    assert again == list(range(100))


def test_a_command_on_a_key_of_another_type_answers_as_uncoalesced(
    request: pytest.FixtureRequest,
) -> None:
    url = _url("server", request)
    storage = _storage("server", url)
    prefix = storage.layers[-1].prefix
    admin = redis.Redis.from_url(url)
    admin.rpush(f"{prefix}list", "x")  # a key that is not an entry

    async def main() -> list[Any]:
        await storage.set("k", 1)
        calls = [
            storage.get("k"),
            storage.contains("list"),
            storage.get("list", MISSING),
            storage.get("k"),
        ]
        got = await _within(asyncio.gather(*calls, return_exceptions=True))
        await storage.aclose()
        return list(got)

    try:
        got = asyncio.run(main())
    finally:
        admin.close()
    assert got == [1, False, MISSING, 1]


@pytest.mark.parametrize("kind", KINDS)
def test_callers_cancelled_mid_batch_leave_the_others_their_answers(
    kind: str, request: pytest.FixtureRequest
) -> None:
    url = _url(kind, request)
    storage = _storage(kind, url)
    slow = "local i = 0 while i < 2000000 do i = i + 1 end return 1"  # the server busy a while

    async def main() -> list[Any]:
        await storage.set_many({f"k{i}": i for i in range(100)})
        clients = storage.layers[-1].client
        coalescer = clients._here().coalescer

        async def slowly() -> Any:
            return await clients.eval(slow, 1, b"{k}slow")

        # The first command goes at once; the others queue behind it and go as one
        # pipeline, in which the server is busy a while with the slow script.
        first = asyncio.ensure_future(storage.get("k0"))
        queued = [asyncio.ensure_future(slowly())]
        queued += [asyncio.ensure_future(storage.get(f"k{i}")) for i in range(100)]
        # Until the batch is taken (the pipeline is being sent or awaited), then cancel
        # every other caller.
        await _until(lambda: coalescer._flushing and not coalescer._queue and first.done())
        for task in queued[2::2]:
            task.cancel()
        got = await _within(asyncio.gather(*queued, return_exceptions=True))
        again = await _within(asyncio.gather(*(storage.get(f"k{i}") for i in range(100))))
        await storage.aclose()
        return [got, again]

    got, again = asyncio.run(main())
    assert got[0] == 1  # the slow script's
    for number, answer in enumerate(got[1:]):
        if number % 2:
            assert isinstance(answer, asyncio.CancelledError)
        else:
            assert answer == number
    assert again == list(range(100))


def test_callers_cancelled_before_the_flush_are_not_sent(request: pytest.FixtureRequest) -> None:
    url = _url("server", request)
    storage = _storage("server", url)

    async def main() -> list[Any]:
        await storage.set("k", 0)
        # The first write goes at once; the nine others queue behind it, and are
        # cancelled before it is back.
        writes = [asyncio.ensure_future(storage.set(f"w{i}", i)) for i in range(10)]
        await asyncio.sleep(0)  # every write issued
        for task in writes:
            task.cancel()
        results = await _within(asyncio.gather(*writes, return_exceptions=True))
        found = await storage.get_many([f"w{i}" for i in range(10)])
        await storage.aclose()
        return [results, found]

    results, found = asyncio.run(main())
    # The first is redis.asyncio's own command: it may end despite the cancellation.
    assert all(isinstance(result, asyncio.CancelledError) for result in results[1:]), results
    assert set(found) <= {"w0"}


# -- a server killed mid-batch --------------------------------------------------------------


def test_a_server_killed_mid_burst_gives_every_caller_an_answer_or_an_error() -> None:
    with RedisServer() as server:
        url = f"{server.url}?socket_timeout=2&socket_connect_timeout=2"
        storage = AsyncStorage(Codec("json"), Redis(url=url, prefix="killed:"))

        async def caller(number: int, answered: list[int]) -> tuple[int, int]:
            done = failed = 0
            for step in range(10_000):
                try:
                    if step % 10 == 0:
                        await storage.set(f"k{number}", step)
                    else:
                        await storage.get(f"k{number}")
                    done += 1
                    answered[0] += 1
                except BackendError:
                    failed += 1
                    if failed == 3:
                        break
            return done, failed

        async def main() -> list[tuple[int, int]]:
            answered = [0]
            callers = [asyncio.ensure_future(caller(n, answered)) for n in range(200)]
            await _until(lambda: answered[0] >= 2000)
            os.kill(server.pid, signal.SIGKILL)
            # No caller hangs: each ends within the deadline, with its errors.
            return list(await _within(asyncio.gather(*callers)))

        try:
            ended = asyncio.run(main())
        finally:
            server.restart()
        assert all(failed == 3 for _, failed in ended)  # every caller saw the server go
        assert sum(done for done, _ in ended) >= 2000

        async def after() -> Any:  # a new loop, a new server: the storage works again
            await storage.set("k", 1)
            got = await _within(asyncio.gather(*(storage.get("k") for _ in range(50))))
            await storage.aclose()
            return got

        assert asyncio.run(after()) == [1] * 50


# -- a cluster: slots, MOVED ---------------------------------------------------------------


def test_a_burst_on_a_cluster_is_split_by_slot(request: pytest.FixtureRequest) -> None:
    url = _url("cluster", request)
    storage = _storage("cluster", url)
    sync = RedisCluster.from_url(url)
    keys = [f"key{i}" for i in range(300)]
    prefix = storage.layers[-1].prefix
    nodes = {sync.get_node_from_key(f"{prefix}{key}").name for key in keys}
    assert len(nodes) == 3  # the burst spans every master

    async def main() -> list[Any]:
        await _within(asyncio.gather(*(storage.set(key, i) for i, key in enumerate(keys))))
        got = await _within(asyncio.gather(*(storage.get(key) for key in keys)))
        await storage.aclose()
        return list(got)

    try:
        assert asyncio.run(main()) == list(range(300))
        # Each value is on the node of its slot (a pipeline sent to one node would fail).
        assert sync.get(f"{prefix}key7") == b"7"
    finally:
        sync.close()


def _node_id(port: int) -> str:
    node = redis.Redis(port=port)
    try:
        return str(node.execute_command("CLUSTER MYID").decode())
    finally:
        node.close()


def _move_slot(slot: int, source: int, target: int, ports: list[int]) -> None:
    """Move ``slot`` and its keys from the node at port ``source`` to ``target``, as
    ``redis-cli --cluster reshard`` does."""
    ids = {port: _node_id(port) for port in ports}
    src, dst = redis.Redis(port=source), redis.Redis(port=target)
    try:
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source])
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target])
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        for port in ports:
            node = redis.Redis(port=port)
            try:
                node.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target])
            finally:
                node.close()
    finally:
        src.close()
        dst.close()


def test_a_slot_moved_during_a_burst_is_followed() -> None:
    with RedisClusterServer() as cluster:
        storage = AsyncStorage(
            Codec("json"), Redis(RedisCluster.from_url(cluster.url), prefix="moved:")
        )
        sync = RedisCluster.from_url(cluster.url)
        keys = [f"key{i}" for i in range(200)]
        moving = sync.keyslot("moved:key0")
        source = sync.get_node_from_key("moved:key0").port
        target = next(port for port in cluster.ports if port != source)
        sync.close()

        async def main() -> list[Any]:
            await _within(asyncio.gather(*(storage.set(key, i) for i, key in enumerate(keys))))
            clients = storage.layers[-1].client
            client = clients._here().client
            before = client.nodes_manager.get_node_from_slot(moving).port
            _move_slot(moving, source, target, cluster.ports)
            # The client still sends the slot's commands to the old node: MOVED, mid-batch.
            got = await _within(asyncio.gather(*(storage.get(key) for key in keys)))
            writes = [storage.set(key, -i) for i, key in enumerate(keys)]
            await _within(asyncio.gather(*writes))
            reread = await _within(asyncio.gather(*(storage.get(key) for key in keys)))
            after = client.nodes_manager.get_node_from_slot(moving).port
            await storage.aclose()
            return [before, after, got, reread]

        before, after, got, reread = asyncio.run(main())
        assert (before, after) == (source, target)
        assert got == list(range(200))
        assert reread == [-i for i in range(200)]

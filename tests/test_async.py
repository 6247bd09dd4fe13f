"""AsyncStorage: concurrency against a model, the loop kept free, cancellation, memoize,
presets and URLs. The dict-model suite runs on every async stack in tests/conformance."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import pystorage
from pystorage import AsyncStorage, StorageProvider
from pystorage.errors import ConfigurationError
from pystorage.layers import (
    LRU,
    Codec,
    CountLimit,
    Expiry,
    Files,
    Layer,
    Memory,
    SQLite,
    Stats,
    Tier,
    Wrapper,
)
from tests.helpers import unique


def run(work: Any) -> Any:
    return asyncio.run(work)


@pytest.mark.parametrize("backend", ["memory", "files", "sqlite"])
def test_a_thousand_concurrent_tasks_agree_with_a_model(backend: str, tmp_path: Path) -> None:
    bottom: Layer = {
        "memory": lambda: Memory(),
        "files": lambda: Files(tmp_path / "files"),
        "sqlite": lambda: SQLite(tmp_path / "cache.db"),
    }[backend]()
    storage = AsyncStorage(Expiry(3600), Codec("pickle"), bottom)
    rng = random.Random(1)
    # Each task owns some keys (no two tasks race on one key, so the final state is
    # known) and mixes every operation on them; tasks interleave at every await.
    plans = {task: [f"t{task}-k{n}" for n in range(3)] for task in range(1000)}

    async def work(task: int, keys: list[str]) -> dict[str, Any]:
        model: dict[str, Any] = {}
        for step in range(6):
            key = rng.choice(keys)
            action = rng.choice(["set", "delete", "get", "set_many", "contains"])
            if action == "set":
                model[key] = (task, step)
                await storage.set(key, (task, step))
            elif action == "delete":
                if key in model:
                    del model[key]
                    await storage.delete(key)
                else:
                    with pytest.raises(KeyError):
                        await storage.delete(key)
            elif action == "get":
                assert await storage.get(key) == model.get(key)
            elif action == "set_many":
                batch = {k: (task, step, k) for k in keys[:2]}
                model.update(batch)
                await storage.set_many(batch)
            else:
                assert await storage.contains(key) == (key in model)
        return model

    async def main() -> None:
        models = await asyncio.gather(*(work(task, keys) for task, keys in plans.items()))
        expected = {key: value for model in models for key, value in model.items()}
        assert await storage.count() == len(expected)
        assert await storage.get_many(list(expected)) == expected
        assert sorted([key async for key in storage]) == sorted(expected)
        await storage.aclose()

    run(main())


@pytest.mark.parametrize("backend", ["files", "sqlite"])
def test_the_event_loop_keeps_answering_while_a_backend_waits(backend: str, tmp_path: Path) -> None:
    # Another writer holds the storage's lock (SQLite's write lock; the folder's flock),
    # so a write must wait for as long as the test decides. A backend run on the loop
    # would stall it all that time; run off the loop, the loop keeps ticking.
    if backend == "sqlite":
        path = tmp_path / "c.db"
        storage = AsyncStorage(Codec("raw"), SQLite(path))
        blocker = sqlite3.connect(path, isolation_level=None)
        hold, release = (
            lambda: blocker.execute("BEGIN IMMEDIATE"),
            lambda: blocker.execute("COMMIT"),
        )
    else:
        folder = tmp_path / "f"
        storage = AsyncStorage(CountLimit(10), Codec("raw"), Files(folder))
        section = Files(folder).exclusive()  # another object: its own flock
        hold, release = section.__enter__, lambda: section.__exit__(None, None, None)

    async def main() -> None:
        await storage.set("before", b"b")  # prepared and working
        hold()
        ticks = 0
        writing = asyncio.create_task(storage.set("k", b"v"))
        deadline = time.monotonic() + 30
        while ticks < 50:
            assert time.monotonic() < deadline, f"the loop ticked {ticks} times in 30 s"
            await asyncio.sleep(0.001)
            ticks += 1
        assert not writing.done()  # it was waiting for the lock all along
        release()
        await asyncio.wait_for(writing, timeout=30)
        assert await storage.get("k") == b"v"
        await storage.aclose()

    run(main())


def test_a_task_cancelled_mid_batch_leaves_whole_values_and_no_lock(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    storage = AsyncStorage(CountLimit(1000), Codec("raw"), Files(folder))
    items = {f"k{n}": bytes([n % 256]) * 200_000 for n in range(300)}

    async def main() -> None:
        writing = asyncio.create_task(storage.set_many(items))
        deadline = time.monotonic() + 30
        while not any(folder.glob("k*")):  # the batch has begun writing files
            assert time.monotonic() < deadline, "the batch never started"
            await asyncio.sleep(0.001)
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        # No lock stays held: another write through the same exclusive section ends.
        await asyncio.wait_for(storage.set("after", b"a"), timeout=30)
        found = await storage.get_many(list(items))
        assert all(found[key] == items[key] for key in found)  # whole, or absent
        assert await storage.get("after") == b"a"
        await storage.aclose()

    run(main())


def test_memoize_awaits_once_per_key_and_never_caches_a_coroutine() -> None:
    storage = AsyncStorage(Stats(), Codec("pickle"), Memory())
    calls: list[int] = []

    @storage.memoize()
    async def double(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.01)
        return x * 2

    async def main() -> None:
        assert await asyncio.gather(*(double(n % 3) for n in range(30))) == [
            (n % 3) * 2 for n in range(30)
        ]
        assert sorted(calls) == [0, 1, 2]
        assert await double(2) == 4 and len(calls) == 3
        await double.invalidate(2)
        assert await double(2) == 4 and len(calls) == 4
        await double.cache_clear()
        assert await storage.count() == 0

    run(main())
    with pytest.raises(ConfigurationError, match="async def"):

        @storage.memoize()
        def plain(x: int) -> int:
            return x


def test_every_layer_has_a_twin_and_a_stack_is_built_from_sync_layers(tmp_path: Path) -> None:
    storage = AsyncStorage(
        Stats(), Expiry(60), CountLimit(5), Tier(LRU(2)), Codec("json"), Memory()
    )
    assert [type(layer).__name__ for layer in storage.layers] == [
        "AsyncStats",
        "AsyncExpiry",
        "AsyncCountLimit",
        "AsyncTier",
        "AsyncCodec",
        "OffLoop",
    ]
    assert storage.layers[1].ttl == 60 and storage.layers[2].limit == 5

    class Custom(Wrapper):
        pass

    # A wrapper of one's own gets a twin made from its source (tests/test_user_layers.py).
    assert type(AsyncStorage(Custom(), Memory()).layers[0]).__name__ == "AsyncCustom"
    with pytest.raises(ConfigurationError, match="front in memory"):
        AsyncStorage(Tier(Files(tmp_path / "front")), Codec("raw"), Memory())
    with pytest.raises(ConfigurationError, match="ttl must be"):
        run(AsyncStorage(Codec("json"), Files(tmp_path / "f")).set("k", 1, ttl=-5))


def test_presets_and_urls_have_async_forms(tmp_path: Path) -> None:
    async def main() -> None:
        for storage in (
            StorageProvider().create_async(
                StorageProvider.STORAGE_SQLITE, path=tmp_path / "p.db", limit=2
            ),
            pystorage.open_async(f"file://{tmp_path}/u?codec=json&limit=2&ttl=60"),
            pystorage.open_async("memory://?lru=2"),
        ):
            async with storage:
                await storage.set_many({"a": 1, "b": 2})
                await storage.set("c", 3)
                assert await storage.count() == 2
                assert await storage.get("c") == 3

    run(main())


def test_the_docs_fastapi_example_caches_responses_in_redis(redis_url: str) -> None:
    import httpx
    from fastapi import FastAPI

    cache = pystorage.open_async(f"{redis_url}?codec=json&ttl=60&prefix=asgi-test:")
    computed: list[int] = []
    app = FastAPI()

    @cache.memoize(ttl=30)
    async def report(year: int) -> dict[str, int]:
        computed.append(year)
        return {"year": year, "total": year * 2}

    @app.get("/reports/{year}")
    async def get_report(year: int) -> dict[str, int]:
        return await report(year)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            replies = await asyncio.gather(*(client.get("/reports/2026") for _ in range(5)))
            assert [reply.json() for reply in replies] == [{"year": 2026, "total": 4052}] * 5
        assert computed == [2026]
        await report.cache_clear()
        await cache.aclose()

    run(main())


MEMOIZED_IN_A_PROCESS = """
import asyncio, sys, time
import pystorage

url, children = sys.argv[1], int(sys.argv[2])
cache = pystorage.open_async(url + "&codec=json")
books = pystorage.open_async(url + "&codec=pickle")

@cache.memoize(key="slow-report")
async def report(year: int) -> int:
    await books.incr("calls")  # how many processes computed it
    await asyncio.sleep(1)
    return year * 2

async def main() -> None:
    await books.incr("ready")
    deadline = time.monotonic() + 60
    while await books.get("ready") < children:  # all miss together
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    print(await report(2026), flush=True)
    await cache.aclose()
    await books.aclose()

asyncio.run(main())
"""


def test_async_memoize_on_redis_computes_once_across_processes(redis_url: str) -> None:
    url = f"{redis_url}?prefix={unique('memo')}:"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", MEMOIZED_IN_A_PROCESS, url, "3"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert [output.strip() for output in outputs] == ["4052"] * 3
    assert pystorage.open(url + "&codec=pickle")["calls"] == 1

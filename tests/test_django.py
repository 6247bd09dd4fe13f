"""pystorage.contrib.django beyond Django's own suite (make test-django runs that): what
holds across processes, what is refused, what the async methods await, the README's
CACHES example."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis

from pystorage.errors import CodecError, StorageProviderError
from pystorage.layers import LRU, CountLimit, Tier

django = pytest.importorskip("django")

from pystorage.contrib.django import (  # noqa: E402 - after the skip when Django is missing
    KeyNotFoundError,
    PyStorageCache,
    UnpicklableValueError,
)

README = Path(__file__).resolve().parent.parent / "README.md"
PROCESSES = 4
CALLS = 50
DEADLINE = 60.0


def stacks(tmp_path: Path, redis_url: str) -> dict[str, str]:
    return {
        "sqlite": f"sqlite://{tmp_path}/django.db",
        "files": f"file://{tmp_path}/files",
        "redis": f"{redis_url}?prefix=test-django-{tmp_path.name}:",
    }


@pytest.fixture(params=["sqlite", "files", "redis"])
def location(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> str:
    url: str = stacks(tmp_path, redis_url)[request.param]
    return url


def _incr_many(cache: PyStorageCache, start: Any, results: Any) -> None:
    start.wait(DEADLINE)
    results.put([cache.incr("hits") for _ in range(CALLS)])


def _add_once(cache: PyStorageCache, start: Any, results: Any) -> None:
    start.wait(DEADLINE)
    results.put(cache.add("owner", multiprocessing.current_process().pid))


def _in_processes(target: Any, cache: PyStorageCache) -> list[Any]:
    """What ``target(cache, ...)`` put, from PROCESSES children forked after the parent
    used ``cache`` (so the backend also works after fork), started at once."""
    context = multiprocessing.get_context("fork")
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    children = [
        context.Process(target=target, args=(cache, start, results)) for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    got = [results.get(timeout=DEADLINE) for _ in children]
    for child in children:
        child.join(DEADLINE)
        assert child.exitcode == 0
    return got


def test_incr_is_atomic_across_processes(location: str) -> None:
    cache = PyStorageCache(location, {})
    cache.set("hits", 0)
    totals = [total for totals in _in_processes(_incr_many, cache) for total in totals]
    # No increment lost: the totals returned are 1 to n, each once.
    assert sorted(totals) == list(range(1, PROCESSES * CALLS + 1))
    assert cache.get("hits") == PROCESSES * CALLS


def test_add_is_atomic_across_processes(location: str) -> None:
    cache = PyStorageCache(location, {})
    cache.set("warm", 1)
    added = _in_processes(_add_once, cache)
    assert sorted(added) == [False] * (PROCESSES - 1) + [True]


def test_incr_of_a_missing_key_raises_and_creates_nothing(location: str) -> None:
    cache = PyStorageCache(location, {})
    with pytest.raises(KeyNotFoundError, match="not found") as raised:
        cache.decr("missing")
    assert isinstance(raised.value, ValueError)
    assert cache.has_key("missing") is False
    cache.set("counter", 5, timeout=None)
    assert cache.incr("counter", 10) == 15
    assert asyncio.run(cache.adecr("counter", 3)) == 12


def test_incr_keeps_the_deadline(location: str) -> None:
    cache = PyStorageCache(location, {})
    cache.set("n", 1, timeout=30)
    cache.incr("n")
    value, left = cache._storage.get_with_ttl(cache.make_key("n"))
    assert value == 2
    assert left is not None and 25 < left <= 30


def test_timeouts_are_ttls_of_the_stack(tmp_path: Path, redis_url: str) -> None:
    cache = PyStorageCache(stacks(tmp_path, redis_url)["redis"], {"TIMEOUT": 60})
    storage = cache._storage
    cache.set("default", 1)
    cache.set("forever", 1, timeout=None)
    cache.set("short", 1, timeout=2.5)
    ttls = {
        key: storage.get_with_ttl(cache.make_key(key))[1] for key in ("default", "forever", "short")
    }
    assert 59 < ttls["default"] <= 60
    assert ttls["forever"] is None
    assert 2 < ttls["short"] <= 2.5
    # In Redis itself: the server expires the key.
    client = redis.Redis.from_url(redis_url)
    assert 0 < client.pttl(f"test-django-{tmp_path.name}::1:default") <= 60_000
    cache.set("gone", 1, timeout=0)
    cache.set("forever", 2, timeout=-1)  # 0 or less: nothing is kept, the old entry goes
    assert cache.get_many(["gone", "forever"]) == {}
    client.close()


def test_clear_removes_only_this_storage_s_entries(tmp_path: Path, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("not-django", b"kept")
    other = PyStorageCache(f"{redis_url}?prefix=other-{tmp_path.name}:", {})
    other.set("k", "kept")
    cache = PyStorageCache(stacks(tmp_path, redis_url)["redis"], {})
    cache.set_many({"a": 1, "b": 2})
    cache.clear()
    assert cache.get_many(["a", "b"]) == {}
    assert other.get("k") == "kept"
    assert client.get("not-django") == b"kept"
    other.clear()
    client.delete("not-django")
    client.close()


def test_clear_leaves_other_files_of_a_folder_with_a_suffix(tmp_path: Path) -> None:
    cache = PyStorageCache(f"file://{tmp_path}?suffix=djcache", {})
    cache.set("a", 1)
    (tmp_path / "not-a-cache-file").write_text("kept")
    cache.clear()
    assert cache.get("a") is None
    assert (tmp_path / "not-a-cache-file").read_text() == "kept"


def test_max_entries_is_a_count_limit(tmp_path: Path) -> None:
    cache = PyStorageCache(
        f"file://{tmp_path}/bounded", {"OPTIONS": {"MAX_ENTRIES": 3, "CULL_FREQUENCY": 0}}
    )
    assert any(isinstance(layer, CountLimit) for layer in cache._storage.layers)
    for number in range(5):
        cache.set(f"k{number}", number)
    assert cache.get_many([f"k{number}" for number in range(5)]) == {"k2": 2, "k3": 3, "k4": 4}
    cache.get("k2")  # now the most recently used: k3 goes first
    cache.set("k5", 5)
    assert sorted(cache.get_many([f"k{number}" for number in range(6)])) == ["k2", "k4", "k5"]


def test_options_are_url_options(tmp_path: Path) -> None:
    cache = PyStorageCache(f"sqlite://{tmp_path}/c.db", {"OPTIONS": {"lru": 10}})
    tier = next(layer for layer in cache._storage.layers if isinstance(layer, Tier))
    assert isinstance(tier.front, LRU)
    with pytest.raises(StorageProviderError, match="unknown options lmit"):
        PyStorageCache(f"sqlite://{tmp_path}/c.db", {"OPTIONS": {"lmit": 10}})


def test_a_ttl_in_the_url_is_refused(tmp_path: Path) -> None:
    # With an Expiry layer, timeout=None would get its TTL instead of none.
    with pytest.raises(StorageProviderError, match="TIMEOUT"):
        PyStorageCache(f"sqlite://{tmp_path}/c.db?ttl=60", {})


def test_one_storage_per_url_in_a_process(tmp_path: Path) -> None:
    # Django makes a backend object per thread: they share the storage (and memory://
    # is one memory, as a LocMemCache LOCATION is).
    one, two = PyStorageCache("memory://", {}), PyStorageCache("memory://", {})
    assert one._storage is two._storage
    one.set(f"shared-{tmp_path.name}", 1)
    assert two.get(f"shared-{tmp_path.name}") == 1


def test_memory_values_are_pickled_copies() -> None:
    cache = PyStorageCache("memory://", {})
    value = {"items": [1]}
    cache.set("mutable", value)
    value["items"].append(2)
    assert cache.get("mutable") == {"items": [1]}


class Unpicklable:
    def __reduce__(self) -> Any:
        raise pickle.PicklingError("no")


def test_an_unpicklable_value_raises_both_errors(location: str) -> None:
    cache = PyStorageCache(location, {})
    for write in (
        lambda: cache.set("u", Unpicklable()),
        lambda: cache.add("u", Unpicklable()),
        lambda: cache.set_many({"u": Unpicklable()}),
        lambda: asyncio.run(cache.aset("u", Unpicklable())),
    ):
        with pytest.raises(UnpicklableValueError) as raised:
            write()
        assert isinstance(raised.value, CodecError)
        assert isinstance(raised.value, pickle.PickleError)
    assert cache.has_key("u") is False


def test_redis_is_awaited_natively(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = PyStorageCache(stacks(tmp_path, redis_url)["redis"], {})
    cache.set("k", "v")
    assert cache._async is not None

    class Refused:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the sync stack was used: {name}")

    # Every async method below goes through the async stack: the sync one would raise.
    monkeypatch.setattr(cache, "_storage", Refused())

    async def calls() -> list[Any]:
        return [
            await cache.aget("k"),
            await cache.aadd("k", "w"),
            await cache.aincr("n") if await cache.aset("n", 1) is None else None,
            await cache.aget_many(["k", "n", "missing"]),
            await cache.atouch("k", 30),
            await cache.adelete("k"),
            await cache.ahas_key("k"),
            await cache.aclear(),
        ]

    assert asyncio.run(calls()) == ["v", False, 2, {"k": "v", "n": 2}, True, True, False, None]


def test_sqlite_async_runs_the_sync_methods(tmp_path: Path) -> None:
    cache = PyStorageCache(f"sqlite://{tmp_path}/c.db", {})
    assert cache._async is None
    cache.set("n", 1)
    assert asyncio.run(cache.aincr("n", 2)) == 3
    assert asyncio.run(cache.aget_or_set("m", lambda: 7)) == 7


def test_readme_caches_example_runs(tmp_path: Path, redis_url: str) -> None:
    """The README's CACHES block, in a Django of its own (a new process: settings are
    configured once per process), with its paths and server replaced by the test's."""
    section = README.read_text().split("\n### Django\n", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    settings = (
        block.group(1)
        .replace("/var/cache/myapp", str(tmp_path))
        .replace("redis://localhost:6379/0", redis_url)
    )
    script = textwrap.dedent(
        """
        import django
        from django.conf import settings
        SETTINGS = {}
        exec(SETTINGS_TEXT, SETTINGS)
        settings.configure(CACHES=SETTINGS["CACHES"])
        django.setup()
        from django.core.cache import cache, caches
        cache.set("greeting", {"text": "hello"}, timeout=60)
        assert cache.get("greeting") == {"text": "hello"}
        assert caches["shared"].add("lock", 1) is True
        assert caches["shared"].incr("lock") == 2
        caches["shared"].clear()
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", f"SETTINGS_TEXT = {settings!r}\n{script}"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.stdout.strip() == "ok", done.stderr

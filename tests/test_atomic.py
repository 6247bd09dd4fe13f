"""add, incr and decr: their meaning on every stack, deadlines, each layer, and races.

The races are real: threads and processes start together at a barrier and hammer one key,
and the totals must be exact (a lost increment or a second winning add fails them).
"""

from __future__ import annotations

import multiprocessing
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage, StorageProvider
from pystorage.codecs import Pickle, Signed
from pystorage.errors import (
    CodecError,
    ConfigurationError,
    InvalidKeyError,
    NotAnIntegerError,
    UnsupportedError,
)
from pystorage.layers import (
    LRU,
    S3,
    Backend,
    Codec,
    CountLimit,
    Expiry,
    Files,
    Memory,
    Redis,
    SQLite,
    Stats,
    Tier,
)
from tests.conformance.stacks import ALL_STACKS, Place, StackFactory
from tests.helpers import FakeClock, unique
from tests.test_hostile_keys import CORPUS

LONG_KEY = "x" * 300  # stored under a hashed name by Files and S3
TIMEOUT = 120.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- the meaning, on every stack of the conformance suite ---------------------------------


@pytest.fixture(params=sorted(ALL_STACKS))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    factory: StackFactory = ALL_STACKS[request.param]
    with factory(Place(tmp_path / "store", request)) as storage:
        yield storage


def test_add_stores_only_a_missing_key(storage: Storage) -> None:
    for key in ("k", LONG_KEY):
        assert storage.add(key, {"v": 1}) is True
        assert storage.add(key, {"v": 2}) is False
        assert storage[key] == {"v": 1}
        del storage[key]
        assert storage.add(key, "again") is True
        assert storage[key] == "again"
    assert sorted(storage) == sorted(["k", LONG_KEY])


def test_incr_and_decr_count_from_zero(storage: Storage) -> None:
    for key in ("n", LONG_KEY):
        assert storage.incr(key) == 1
        assert storage.incr(key, 41) == 42
        assert storage.decr(key, 50) == -8
        assert storage.decr(key) == -9
        assert storage[key] == -9
    storage["set"] = 10
    assert storage.incr("set", 5) == 15
    assert storage["set"] == 15
    assert len(storage) == 3


def test_incr_refuses_a_value_that_is_not_an_int(storage: Storage) -> None:
    for value in ["7", 7.5, True, None, [1]]:
        storage["k"] = value
        with pytest.raises(NotAnIntegerError, match="'k'"):
            storage.incr("k")
        with pytest.raises(NotAnIntegerError):
            storage.decr("k")
        kept = storage["k"]
        assert kept == value and type(kept) is type(value)


# -- deadlines, on each backend ------------------------------------------------------------


def _redis_backend(place: Place, cluster: bool = False) -> Redis:
    import redis
    from redis.cluster import RedisCluster

    if cluster:
        client = RedisCluster.from_url(place.fixture("redis_cluster_url"))
    else:
        client = redis.Redis.from_url(place.fixture("redis_url"))
    return Redis(client, prefix=unique("atomic:") + ":")


def _s3_backend(place: Place) -> S3:
    options = place.fixture("s3_options")
    return S3(
        place.fixture("s3_bucket"),
        unique("atomic-"),
        endpoint_url=options["endpoint_url"],
        region=options["region_name"],
        aws_access_key_id=options["aws_access_key_id"],
        aws_secret_access_key=options["aws_secret_access_key"],
    )


BACKENDS: dict[str, Callable[[Place], Backend]] = {
    "memory": lambda place: Memory(),
    "lru": lambda place: LRU(100),
    "files": lambda place: Files(place.folder),
    "sqlite": lambda place: SQLite(place.folder / "cache.db"),
    "redis": _redis_backend,
    "redis-cluster": lambda place: _redis_backend(place, cluster=True),
    "s3": _s3_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = BACKENDS[request.param](Place(tmp_path / "store", request))
    yield made
    made.close()


def test_add_replaces_an_expired_entry(backend: Backend) -> None:
    storage = Storage(Codec("pickle"), backend)
    began = time.monotonic()
    storage.set("k", "old", ttl=1)
    refused = storage.add("k", "new", ttl=100)
    # Only while the entry is surely alive: on a loaded machine a round trip to S3 can
    # outlast a short TTL, and then the add rightly wins (and is given a short life).
    if time.monotonic() - began < 1:
        assert refused is False
    else:
        # Near the deadline, which the backend set when the write reached it (after
        # ``began``, perhaps long after): either answer is right, and the entry says which.
        assert storage.get("k") in (("new",) if refused else ("old", None))
        storage.set("k", "old", ttl=0.001)
    wait_until(lambda: "k" not in storage, "the entry to expire")
    assert storage.add("k", "new") is True
    assert storage.get_with_ttl("k") == ("new", None)
    assert storage.add("t", "with a deadline", ttl=100) is True
    value, left = storage.get_with_ttl("t")
    assert value == "with a deadline" and left is not None and 90 < left <= 100


def test_incr_starts_an_expired_entry_again(backend: Backend) -> None:
    storage = Storage(Codec("pickle"), backend)
    began = time.monotonic()
    storage.set("n", 5, ttl=1)
    counted = storage.incr("n")
    if time.monotonic() - began < 1:  # surely alive (see above)
        assert counted == 6
    else:
        assert counted in (6, 1)  # near the deadline (see above): either answer is right
        storage.set("n", 5, ttl=0.001)
    wait_until(lambda: "n" not in storage, "the entry to expire")
    assert storage.incr("n") == 1
    assert storage.get_with_ttl("n") == (1, None)  # created by incr: no deadline given


def test_incr_gives_a_ttl_to_the_entry_it_creates_only(backend: Backend) -> None:
    storage = Storage(Codec("pickle"), backend)
    assert storage.incr("new", ttl=100) == 1
    left = storage.get_with_ttl("new")[1]
    assert left is not None and 90 < left <= 100
    storage.set("dated", 1, ttl=1000)
    assert storage.incr("dated", ttl=5) == 2
    left = storage.get_with_ttl("dated")[1]
    assert left is not None and 900 < left <= 1000  # kept, as Redis INCRBY keeps it
    storage["undated"] = 1
    assert storage.decr("undated", ttl=5) == 0
    assert storage.get_with_ttl("undated") == (0, None)


def test_expiry_gives_its_ttl_to_add_and_to_a_new_counter(backend: Backend) -> None:
    storage = Storage(Expiry(100), Codec("pickle"), backend)
    assert storage.add("a", "v") is True
    assert storage.incr("n") == 1
    for key in ("a", "n"):
        left = storage.get_with_ttl(key)[1]
        assert left is not None and 90 < left <= 100, key
    storage.set("dated", 1, ttl=1000)
    storage.incr("dated")
    left = storage.get_with_ttl("dated")[1]
    assert left is not None and left > 900


def test_a_sum_the_codec_cannot_encode_changes_nothing(backend: Backend) -> None:
    storage = Storage(Codec("msgpack"), backend)  # MessagePack ints end at 2**64 - 1
    storage["n"] = 2**64 - 1
    with pytest.raises(CodecError, match="'n'"):
        storage.incr("n")
    assert storage["n"] == 2**64 - 1


def test_a_value_the_codec_cannot_decode_is_not_incremented(backend: Backend) -> None:
    Storage(Codec("text"), backend)["n"] = "not json"
    storage = Storage(Codec("json"), backend)
    with pytest.raises(CodecError, match="'n'"):
        storage.incr("n")
    assert Storage(Codec("text"), backend)["n"] == "not json"


# -- the layers ------------------------------------------------------------------------------


def test_count_limit_counts_what_add_and_incr_create(tmp_path: Path) -> None:
    for backend in (Memory(), Files(tmp_path / "files"), SQLite(tmp_path / "c.db")):
        storage = Storage(CountLimit(2), Codec("pickle"), backend)
        assert storage.add("a", 1) and storage.add("b", 2)
        assert storage.add("a", 9) is False  # changes nothing: no eviction, no use
        assert sorted(storage) == ["a", "b"]
        assert storage.incr("c") == 1  # a third entry: the least recent goes
        assert sorted(storage) == ["b", "c"]
        assert storage.incr("b") == 3  # a use of b
        assert storage.add("d", 4) is True
        assert sorted(storage) == ["b", "d"]
        assert storage.stats()["evictions"] == 2


def test_tier_front_follows_add_and_incr(tmp_path: Path) -> None:
    tier = Tier(LRU(10))
    mine = Storage(tier, Codec("pickle"), Files(tmp_path))
    other = Storage(Codec("pickle"), Files(tmp_path))  # another process, say
    mine["n"] = 1
    other["n"] = 10
    assert mine.incr("n") == 11
    assert mine["n"] == 11  # the front dropped its 1
    mine["k"] = "mine"
    other["k"] = "theirs"
    assert mine.add("k", "again") is False
    assert mine["k"] == "theirs"  # the front dropped "mine"
    assert mine.add("new", "v") is True
    assert tier.front.get("new") == "v"


def test_tier_front_forgets_a_key_whose_incr_failed(tmp_path: Path) -> None:
    tier = Tier(LRU(10))
    mine = Storage(tier, Codec("pickle"), Files(tmp_path))
    mine["n"] = "text"
    with pytest.raises(NotAnIntegerError):
        mine.incr("n")
    assert not tier.front.contains("n")
    assert mine["n"] == "text"


def test_tier_front_forgets_a_key_whose_add_failed() -> None:
    tier = Tier(LRU(10))
    storage = Storage(tier, Codec("json"), Memory())
    storage["k"] = 1
    assert tier.front.contains("k")
    with pytest.raises(CodecError):
        storage.add("k", object())
    assert not tier.front.contains("k")
    assert storage["k"] == 1


def test_tier_gives_the_ttl_of_add_and_incr_to_both_copies() -> None:
    clock = FakeClock()
    tier = Tier(LRU(10, clock=clock))
    backend = Memory(clock=clock)
    storage = Storage(tier, backend)
    assert storage.add("a", 1, ttl=5) is True
    assert storage.incr("n", ttl=5) == 1
    assert tier.front.get_with_ttl("a") == (1, 5.0)
    assert backend.get_with_ttl("a") == (1, 5.0)
    assert backend.get_with_ttl("n") == (1, 5.0)
    clock.now += 5
    assert storage.get("a") is None
    assert storage.get("n") is None


def test_an_explicit_ttl_wins_over_the_default_of_expiry() -> None:
    backend = Memory(clock=FakeClock())
    storage = Storage(Expiry(100), backend)
    assert storage.add("a", 1, ttl=5) is True
    assert storage.incr("n", ttl=5) == 1
    assert backend.get_with_ttl("a") == (1, 5.0)
    assert backend.get_with_ttl("n") == (1, 5.0)


def test_memory_add_and_incr_keep_deadlines_to_the_instant() -> None:
    clock = FakeClock()
    storage = Storage(Memory(clock=clock))
    assert storage.add("a", "first", ttl=5) is True
    assert storage.incr("n", ttl=5) == 1
    clock.now += 5  # the deadline itself: expired, as a read judges it
    assert storage.add("a", "second") is True
    assert storage.incr("n") == 1
    # Entries that add and incr create with a TTL are purged on time, unread.
    assert storage.add("b", "dated", ttl=1) is True
    assert storage.incr("m", ttl=1) == 1
    clock.now += 1
    assert len(storage) == 2
    assert storage.stats() == {"expirations": 2}


def test_codec_errors_of_add_and_incr_name_the_key_the_type_and_the_cause() -> None:
    backend = Memory()
    with pytest.raises(CodecError) as caught:
        Storage(Codec("json"), backend).add("k", object())
    assert re.fullmatch(
        r"the value for key 'k' \(object\) cannot be encoded as json: TypeError: .+",
        str(caught.value),
    )
    storage = Storage(Codec("msgpack"), backend)
    storage["n"] = 2**64 - 1
    with pytest.raises(CodecError) as caught:
        storage.incr("n")
    assert re.fullmatch(
        r"the value for key 'n' \(int\) cannot be encoded as msgpack: OverflowError: .+",
        str(caught.value),
    )
    Storage(Codec("text"), backend)["t"] = "not json"
    with pytest.raises(CodecError) as caught:
        Storage(Codec("json"), backend).incr("t")
    assert re.fullmatch(
        r"the stored value of key 't' cannot be decoded as json: JSONDecodeError: .+",
        str(caught.value),
    )
    assert sorted(backend.keys()) == ["n", "t"]


def test_stats_count_adds_that_stored_and_increments() -> None:
    storage = Storage(Codec("json"), Stats(), Memory())  # below the codec: bytes
    storage.add("a", 1)
    storage.add("a", 2)
    storage.incr("a")
    counts = storage.stats()
    assert counts["writes"] == 2
    assert counts["bytes_written"] == 2  # b"1", then b"2"


def test_incr_is_a_use_for_lru_order() -> None:
    storage = Storage(LRU(2))
    storage["a"] = 1
    storage["b"] = 2
    storage.incr("a")
    storage["c"] = 3
    assert sorted(storage) == ["a", "c"]
    assert storage.add("a", 0) is False
    storage["d"] = 4  # a refused add was no use: a is the least recent
    assert sorted(storage) == ["c", "d"]


def test_a_backend_without_atomic_operations_refuses_them() -> None:
    class Plain(Backend):
        def get(self, key: str) -> Any:
            raise KeyError(key)

        def set(self, key: str, value: Any, ttl: float | None = None) -> None:
            raise AssertionError("never a get-then-set in place of add or incr")

    storage = Storage(Stats(), Plain())
    with pytest.raises(UnsupportedError, match="Plain lacks the 'atomic' capability"):
        storage.add("k", 1)
    with pytest.raises(UnsupportedError, match=r"'atomic' capability \(add, modify\)"):
        storage.incr("k")


def test_arguments_are_checked_before_anything_is_written() -> None:
    storage = Storage(Memory())
    with pytest.raises(InvalidKeyError):
        storage.add(b"k", 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        storage.incr(1)  # type: ignore[arg-type]
    for delta in (1.5, True, "1", None):
        with pytest.raises(NotAnIntegerError, match="delta"):
            storage.incr("k", delta)  # type: ignore[arg-type]
        with pytest.raises(NotAnIntegerError, match="delta"):
            storage.decr("k", delta)  # type: ignore[arg-type]
    for ttl in (0, -1, float("inf"), "1"):
        with pytest.raises(ConfigurationError):
            storage.add("k", 1, ttl=ttl)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError):
            storage.incr("k", ttl=ttl)  # type: ignore[arg-type]
    assert len(storage) == 0


# -- races between threads -------------------------------------------------------------------

SECRET = b"0123456789abcdef-atomic"
#: name: (stack factory, threads, increments per thread)
THREAD_RACES: dict[str, tuple[Callable[[Place], Storage], int, int]] = {
    "memory": (lambda place: Storage(Memory()), 8, 500),
    "lru": (lambda place: Storage(LRU(10)), 8, 500),
    "files-pickle": (lambda place: Storage(Codec("pickle"), Files(place.folder)), 8, 500),
    "files-signed-json": (
        lambda place: Storage(Codec(Pickle() | Signed(SECRET)), Files(place.folder)),
        8,
        500,
    ),
    "disklru": (
        lambda place: StorageProvider().create(
            StorageProvider.STORAGE_DISKLRU, path=place.folder, limit=10
        ),
        8,
        500,
    ),
    "sqlite-msgpack": (
        lambda place: Storage(Codec("msgpack"), SQLite(place.folder / "c.db")),
        8,
        500,
    ),
    "expiry-countlimit-tier-memory": (
        lambda place: Storage(Expiry(3600), CountLimit(10), Tier(LRU(4)), Memory()),
        8,
        500,
    ),
    "redis-json": (lambda place: Storage(Codec("json"), _redis_backend(place)), 8, 200),
    "redis-cluster-pickle": (
        lambda place: Storage(Codec("pickle"), _redis_backend(place, cluster=True)),
        8,
        100,
    ),
    "s3-json": (lambda place: Storage(Codec("json"), _s3_backend(place)), 4, 25),
}


@pytest.fixture(params=sorted(THREAD_RACES))
def race(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Storage, int, int]]:
    factory, threads, each = THREAD_RACES[request.param]
    with factory(Place(tmp_path / "store", request)) as storage:
        yield storage, threads, each


def _together(threads: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` in ``threads`` threads that start at once; their results in order."""
    start = threading.Barrier(threads)

    def run(index: int) -> Any:
        start.wait(TIMEOUT)
        return work(index)

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(run, index) for index in range(threads)]
        return [future.result(TIMEOUT) for future in futures]


def test_race_threads_increment_exactly(race: tuple[Storage, int, int]) -> None:
    storage, threads, each = race
    totals = _together(threads, lambda _: [storage.incr("n") for _ in range(each)])
    # Every increment saw a total of its own: none was lost, none counted twice.
    seen = sorted(total for mine in totals for total in mine)
    assert seen == list(range(1, threads * each + 1))
    assert storage["n"] == threads * each


def test_race_threads_add_one_winner(race: tuple[Storage, int, int]) -> None:
    storage, threads, _ = race
    for round_ in range(10):
        key = f"k{round_}"
        won = _together(threads, lambda index, key=key: storage.add(key, index))
        assert won.count(True) == 1, won
        assert storage[key] == won.index(True)


def test_race_threads_add_over_an_expired_entry_one_winner(
    race: tuple[Storage, int, int],
) -> None:
    storage, threads, _ = race
    for round_ in range(3):
        key = f"e{round_}"
        storage.set(key, "expired", ttl=0.05)
        wait_until(lambda key=key: key not in storage, "the entry to expire")
        won = _together(threads, lambda index, key=key: storage.add(key, index))
        assert won.count(True) == 1, won
        assert storage[key] == won.index(True)


# -- races between processes -----------------------------------------------------------------

PROCESSES = 4
INCREMENTS = 250
ADD_KEYS = 20


def _open(spec: tuple[str, str]) -> Storage:
    kind, where = spec
    if kind == "files":
        return Storage(Codec("pickle"), Files(where))
    if kind == "disklru":
        storage: Storage = StorageProvider().create(
            StorageProvider.STORAGE_DISKLRU, path=where, limit=ADD_KEYS + 5
        )
        return storage
    if kind == "sqlite":
        return Storage(Codec("json"), SQLite(where))
    url, prefix = where.split(" ")
    return Storage(Codec("msgpack"), Redis(url=url, prefix=prefix))


def _process(spec: tuple[str, str], index: int, start: Any, results: Any) -> None:
    """One process: increment, then add the same keys as the others; report what it saw."""
    try:
        storage = _open(spec)
        start.wait(TIMEOUT)
        totals = [storage.incr("n") for _ in range(INCREMENTS)]
        won = [key for key in map(str, range(ADD_KEYS)) if storage.add(key, index)]
        storage.close()
        results.put((index, totals, won, None))
    except BaseException:
        results.put((index, [], [], traceback.format_exc()))


@pytest.fixture(params=["files", "disklru", "sqlite", "redis"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "redis":
        return "redis", f"{request.getfixturevalue('redis_url')} {unique('atomic:')}:"
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "c.db")
    return request.param, str(tmp_path / "store")


def test_race_processes_increment_and_add_exactly(spec: tuple[str, str]) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(target=_process, args=(spec, index, start, results))
        for index in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        reports = [results.get(timeout=max(deadline - time.monotonic(), 0.1)) for _ in processes]
        for process in processes:
            process.join(max(deadline - time.monotonic(), 0.1))
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    errors = [error for *_, error in reports if error]
    assert not errors, errors[0]
    seen = sorted(total for _, totals, _, _ in reports for total in totals)
    assert seen == list(range(1, PROCESSES * INCREMENTS + 1))
    winners = {key: index for index, _, won, _ in reports for key in won}
    assert sum(len(won) for _, _, won, _ in reports) == ADD_KEYS  # one winner a key
    storage = _open(spec)
    assert storage["n"] == PROCESSES * INCREMENTS
    assert {key: storage[key] for key in winners} == winners
    storage.close()


@pytest.mark.parametrize("name", sorted(ALL_STACKS))
def test_hostile_keys_add_and_count(name: str, tmp_path: Path, request: Any) -> None:
    storage = ALL_STACKS[name](Place(tmp_path / "store", request))
    keys = [key for key in CORPUS if len(key) < 300][::7]  # a spread of the corpus
    counted = []
    for key in keys:
        try:
            assert storage.add(key, 0) is True
        except InvalidKeyError:
            continue
        assert storage.add(key, 1) is False
        assert storage.incr(key, 5) == 5
        counted.append(key)
    assert len(counted) >= len(keys) - 2
    assert {key: storage[key] for key in counted} == dict.fromkeys(counted, 5)
    storage.close()

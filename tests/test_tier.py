"""Tier: what a read-through keeps in front, for how long, and when it keeps nothing."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage
from pystorage.errors import BackendError, ConfigurationError
from pystorage.layers import LRU, Codec, CountLimit, Files, Memory, Redis, SQLite, Tier
from pystorage.layers.tier import MAX_AGE
from tests.helpers import FakeClock, unique


class _Below(Memory):
    """A Memory that counts the reads reaching it and, when ``meanwhile`` is set, runs it
    once between reading a value and returning it: a write by another thread, placed
    exactly inside a read-through."""

    reads = 0
    meanwhile: Callable[[], None] | None = None

    def get(self, key: str) -> Any:
        self.reads += 1
        return super().get(key)

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        self.reads += 1
        found = super().get_with_ttl(key)
        action, self.meanwhile = self.meanwhile, None
        if action is not None:
            action()
        return found


def test_a_read_through_keeps_the_value_it_read_with_the_time_left() -> None:
    clock = FakeClock()
    below = _Below(clock=clock)
    storage = Storage(Tier(LRU(10, clock=clock)), below)
    below.set("k", {"v": 1}, ttl=10)  # written below only: the front misses
    below.set("none", None)
    clock.now += 4
    assert storage["k"] == {"v": 1}
    assert storage.get("none", "default") is None
    reads = below.reads
    assert storage["k"] == {"v": 1}
    assert storage.get_with_ttl("k") == ({"v": 1}, 6)
    assert storage.get("none", "default") is None  # a stored None, remembered as such
    assert storage.get_with_ttl("none") == (None, None)
    assert below.reads == reads  # all served by the front
    clock.now += 6
    with pytest.raises(KeyError):
        storage["k"]
    assert storage.get_with_ttl("none") == (None, None)


def test_get_with_ttl_reads_through_once_then_serves_the_front() -> None:
    clock = FakeClock()
    below = _Below(clock=clock)
    storage = Storage(Tier(LRU(10, clock=clock)), below)
    below.set("k", "v", ttl=10)
    assert storage.get_with_ttl("k") == ("v", 10)
    assert below.reads == 1
    clock.now += 3
    assert storage.get_with_ttl("k") == ("v", 7)
    assert below.reads == 1


def _set(storage: Storage, key: str) -> None:
    storage[key] = "new"


def _set_many(storage: Storage, key: str) -> None:
    storage.set_many({key: "new"})


def _delete(storage: Storage, key: str) -> None:
    del storage[key]


def _delete_many(storage: Storage, key: str) -> None:
    storage.delete_many([key])


def _clear(storage: Storage, key: str) -> None:
    storage.clear()


def _set_then_clear(storage: Storage, key: str) -> None:
    storage[key] = "new"
    storage.clear()


@pytest.mark.parametrize("write", [_set, _set_many, _delete, _delete_many, _clear, _set_then_clear])
def test_a_read_through_overlapping_a_write_keeps_nothing_in_front(
    write: Callable[[Storage, str], None],
) -> None:
    below = _Below()
    storage = Storage(Tier(LRU(1)), below)
    # Several keys, so several stripes of write counters; each key was written through the
    # Tier once already, and all but the last were then pushed out of the 1-entry front.
    keys = [f"key{i}" for i in range(8)]
    for key in keys:
        storage[key] = "old"
    for key in keys[:-1]:
        if not below.contains(key):
            continue  # cleared by an earlier round
        below.meanwhile = lambda key=key: write(storage, key)  # type: ignore[misc]
        assert storage[key] == "old"  # read below before the write: linearised before it
        assert below.meanwhile is None
        assert storage.get(key, "gone") == below.lookup(key, "gone")


class _LostReplies(Memory):
    """A Memory whose writes, while ``failing``, store the value and then fail, as a
    write whose reply was lost on the way back does."""

    failing = False

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        super().set(key, value, ttl)
        if self.failing:
            raise BackendError("the reply was lost")

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        super().set_many(items, ttl)
        if self.failing:
            raise BackendError("the reply was lost")


@pytest.mark.parametrize("write", [_set, _set_many])
def test_a_write_that_fails_below_leaves_nothing_old_in_front(
    write: Callable[[Storage, str], None],
) -> None:
    below = _LostReplies()
    storage = Storage(Tier(LRU(10)), below)
    storage["k"] = "old"
    storage["other"] = "kept"
    assert storage["k"] == "old"
    below.failing = True
    with pytest.raises(BackendError):
        write(storage, "k")
    below.failing = False
    assert storage["k"] == "new"  # read through: the front no longer has "old"
    assert storage["other"] == "kept"


def _tier(clock: FakeClock) -> tuple[Storage, list[Memory]]:
    front, below = LRU(10, clock=clock), Memory(clock=clock)
    return Storage(Tier(front), below), [front, below]


def _count_limit(clock: FakeClock) -> tuple[Storage, list[Memory]]:
    below = Memory(clock=clock)
    return Storage(CountLimit(10), below), [below]


def _count_limit_tier(clock: FakeClock) -> tuple[Storage, list[Memory]]:
    front, below = LRU(10, clock=clock), Memory(clock=clock)
    return Storage(CountLimit(10), Tier(front), below), [front, below]


@pytest.mark.parametrize("build", [_tier, _count_limit, _count_limit_tier])
def test_ttls_reach_every_layer_over_a_backend_that_expires_natively(
    build: Callable[[FakeClock], tuple[Storage, list[Memory]]],
) -> None:
    clock = FakeClock()
    storage, memories = build(clock)
    storage.set("one", 1, ttl=5)
    storage.set_many({"a": 1, "b": 2}, ttl=5)
    storage["forever"] = 0
    for memory in memories:
        assert memory.get_with_ttl("one") == (1, 5)
        assert memory.get_with_ttl("a") == (1, 5)
        assert memory.get_with_ttl("forever") == (0, None)
    assert storage.get_with_ttl("b") == (2, 5)
    clock.now += 5
    assert sorted(storage) == ["forever"]
    for key in ("one", "a", "b"):
        assert storage.get(key) is None
        assert not any(memory.contains(key) for memory in memories)


def test_a_misplaced_tier_says_where_it_belongs(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Storage(Tier(LRU(10)), CountLimit(2), Memory())
    assert str(caught.value) == (
        "Tier cannot sit above CountLimit: entries it removes would still be read from the "
        "front. Put CountLimit above the Tier instead."
    )

    class Forgetful(LRU):  # a front of the user's that keeps no deadlines
        supports_ttl = False

    with pytest.raises(ConfigurationError) as caught:
        Storage(Tier(Forgetful(10)), Memory())
    assert str(caught.value) == (
        "the front of this Tier, Forgetful, cannot keep deadlines, so it could outlive the "
        "entries below it"
    )
    with pytest.raises(ConfigurationError) as caught:
        Storage(Tier(Files(tmp_path)), Codec("json"), Memory())
    assert str(caught.value) == (
        "the front of this Tier, Files, stores bytes: put the Tier below a Codec layer"
    )


# -- other processes writing below the front (issue 17, item 7) ---------------------------

PROCESS_TIMEOUT = 60.0


def _plain(kind: str, place: str) -> Storage:
    """A storage of ``kind`` at ``place``, as another process opens it."""
    if kind == "files":
        return Storage(Codec("pickle"), Files(place))
    if kind == "sqlite":
        return Storage(Codec("pickle"), SQLite(place))
    import redis

    url, prefix = place.split(" ")
    return Storage(Codec("pickle"), Redis(redis.Redis.from_url(url), prefix=prefix))


def _write_elsewhere(kind: str, place: str, key: str, value: Any) -> None:
    """In a process of its own: write ``key`` and leave."""
    with _plain(kind, place) as storage:
        storage[key] = value


def _in_another_process(kind: str, place: str, key: str, value: Any) -> None:
    process = multiprocessing.get_context("spawn").Process(
        target=_write_elsewhere, args=(kind, place, key, value)
    )
    process.start()
    process.join(PROCESS_TIMEOUT)
    if process.is_alive():
        process.kill()
        process.join()
        pytest.fail("the writing process did not finish in time")
    assert process.exitcode == 0


def _place(kind: str, tmp_path: Path) -> str:
    return str(tmp_path / "files") if kind == "files" else str(tmp_path / "cache.db")


def _tiered(kind: str, place: str, **options: Any) -> Storage:
    below = Files(place) if kind == "files" else SQLite(place)
    return Storage(Codec("pickle"), Tier(LRU(100), **options), below)


@pytest.mark.parametrize("kind", ["files", "sqlite"])
def test_a_front_serves_another_processs_write_at_the_next_read(kind: str, tmp_path: Path) -> None:
    place = _place(kind, tmp_path)
    mine = _tiered(kind, place)
    mine["k"] = "old"
    mine["other"] = 1
    assert mine["k"] == "old"  # served by the front from here on
    _in_another_process(kind, place, "k", "new")
    assert mine["k"] == "new"
    assert mine["other"] == 1
    mine["k"] = "mine"  # and this process's own writes still reach its front
    assert mine["k"] == "mine"
    _in_another_process(kind, place, "other", 2)
    assert mine.get_many(["k", "other"]) == {"k": "mine", "other": 2}
    mine.close()


def test_a_front_that_does_not_watch_keeps_entries_at_most_max_age(tmp_path: Path) -> None:
    clock = FakeClock()
    place = _place("files", tmp_path)
    front = LRU(100, clock=clock)
    mine = Storage(Codec("pickle"), Tier(front, watch=False, max_age=30), Files(place))
    mine["k"] = "old"
    _in_another_process("files", place, "k", "new")
    assert mine["k"] == "old"  # not watching: the front's copy, younger than max_age
    clock.now += 30
    assert mine["k"] == "new"
    mine.close()


def test_a_front_over_redis_that_does_not_watch_keeps_entries_at_most_a_minute(
    redis_url: str,
) -> None:
    import redis

    clock = FakeClock()
    prefix = unique("tier:") + ":"
    front = LRU(100, clock=clock)
    below = Redis(redis.Redis.from_url(redis_url), prefix=prefix)
    mine = Storage(Codec("pickle"), Tier(front, watch=False), below)
    mine["k"] = "old"
    mine["forever"] = 1
    _in_another_process("redis", f"{redis_url} {prefix}", "k", "new")
    clock.now += MAX_AGE - 1
    assert mine["k"] == "old"  # not watching: the front's copy
    clock.now += 1
    assert mine["k"] == "new"
    assert mine.get_with_ttl("forever") == (1, None)  # the entry's time, not the front's
    mine.close()


PUSHED = 10.0  # seconds: far more than a push takes on loopback, even under load


def test_a_front_over_redis_drops_what_another_process_wrote_when_the_server_says(
    redis_url: str,
) -> None:
    import redis

    prefix = unique("tier:") + ":"
    below = Redis(redis.Redis.from_url(redis_url), prefix=prefix)
    tier = Tier(LRU(100))
    mine = Storage(Codec("pickle"), tier, below)
    assert tier._tracker is not None and tier._tracker.wait_connected(PUSHED)
    mine["k"] = "old"
    mine["other"] = 1
    deadline = time.monotonic() + PUSHED
    while True:  # our own write's push drops k once, whenever it comes: then k is back
        reads = below_reads(below)
        assert mine["k"] == "old"
        if below_reads(below) == reads:
            break  # served by the front
        assert time.monotonic() < deadline, "the front never served k"
    _in_another_process("redis", f"{redis_url} {prefix}", "k", "new")
    written = time.monotonic()
    while mine["k"] != "new":
        assert time.monotonic() < written + PUSHED, "no invalidation came"
    print(f"seen {1e3 * (time.monotonic() - written):.2f} ms after the writer exited")
    assert mine["other"] == 1
    mine.close()


def test_a_front_over_redis_misses_no_write_while_its_pushes_were_cut(redis_url: str) -> None:
    import redis

    prefix = unique("tier:") + ":"
    client = redis.Redis.from_url(redis_url)
    tier = Tier(LRU(100))
    mine = Storage(Codec("pickle"), tier, Redis(client, prefix=prefix))
    other = Storage(Codec("pickle"), Redis(redis.Redis.from_url(redis_url), prefix=prefix))
    tracker = tier._tracker
    assert tracker is not None and tracker.wait_connected(PUSHED)
    mine["k"] = "old"
    assert mine["k"] == "old"
    cut = tracker.listener_id
    client.client_kill_filter(_id=str(cut))  # the server drops the subscribed connection
    other["k"] = "new"  # maybe before the tracker knows: no push will ever come for it
    deadline = time.monotonic() + PUSHED
    while mine["k"] != "new":
        assert time.monotonic() < deadline, "a write made while tracking was cut stays unseen"
    while tracker.listener_id == cut or not tracker.wait_connected(0):
        assert time.monotonic() < deadline, "tracking did not come back"
    other["k"] = "newer"  # pushed again
    while mine["k"] != "newer":
        assert time.monotonic() < deadline, "no push after the reconnection"
    mine.close()
    other.close()


def below_reads(below: Redis) -> int:
    """How many GET-like commands the server has run (its INFO commandstats)."""
    stats = below.client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("get", "mget"))


def test_max_age_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="max_age must be a positive number"):
        Storage(Tier(LRU(10), max_age=0), Memory())

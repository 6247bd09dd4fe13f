"""Every eviction policy behind the limits' one seam (``pystorage.eviction.POLICIES``), on
several backends: the bound holds, no value comes back but the last written, an entry
once gone does not come back unwritten, and adaptive W-TinyLFU keeps what LRU loses."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import pystorage
from pystorage import Storage, StorageProvider
from pystorage.errors import ConfigurationError, StorageProviderError
from pystorage.eviction import POLICIES
from pystorage.eviction.recency import Recency
from pystorage.eviction.tinylfu import WTinyLFU
from pystorage.layers import (
    LRU,
    Codec,
    CountLimit,
    Files,
    Memory,
    SizeLimit,
    SQLite,
    Tier,
    TinyLFU,
)
from tests.helpers import hit_ratio

KEYS = st.sampled_from([f"k{i}" for i in range(12)])
#: Values of 1 to 40 bytes once pickled and trimmed: under a SizeLimit they weigh apart.
VALUES = st.binary(min_size=0, max_size=30)
COUNT_BOUND = 5
BYTE_BOUND = 200

#: name: (a stack over a folder, for a policy; the bound; what a stored value weighs)
Build = Callable[[Path, str], Storage]
STACKS: dict[str, tuple[Build, int, Callable[[bytes], int]]] = {
    "countlimit-memory": (
        lambda folder, policy: Storage(CountLimit(COUNT_BOUND, eviction=policy), Memory()),
        COUNT_BOUND,
        lambda value: 1,
    ),
    "sizelimit-files": (
        lambda folder, policy: Storage(
            Codec("raw"), SizeLimit(BYTE_BOUND, eviction=policy), Files(folder)
        ),
        BYTE_BOUND,
        len,
    ),
    "countlimit-sqlite": (
        lambda folder, policy: Storage(
            CountLimit(COUNT_BOUND, eviction=policy), Codec("raw"), SQLite(folder / "c.db")
        ),
        COUNT_BOUND,
        lambda value: 1,
    ),
}


class LimitMachine(RuleBasedStateMachine):
    """Random writes, reads and deletes through a bounded stack, against what was written."""

    @initialize(stack=st.sampled_from(sorted(STACKS)), policy=st.sampled_from(sorted(POLICIES)))
    def build(self, stack: str, policy: str) -> None:
        self.folder = Path(tempfile.mkdtemp())
        make, self.bound, self.weigh = STACKS[stack]
        self.storage = make(self.folder, policy)
        self.written: dict[str, bytes] = {}
        # Keys seen missing since their last write: they must stay missing.
        self.gone: set[str] = set()

    def teardown(self) -> None:
        if hasattr(self, "storage"):
            self.storage.close()
            shutil.rmtree(self.folder, ignore_errors=True)

    def _wrote(self, key: str, value: bytes) -> None:
        self.written[key] = value
        self.gone.discard(key)

    @rule(key=KEYS, value=VALUES)
    def set(self, key: str, value: bytes) -> None:
        self.storage[key] = value
        self._wrote(key, value)

    @rule(items=st.dictionaries(KEYS, VALUES, max_size=4))
    def set_many(self, items: dict[str, bytes]) -> None:
        self.storage.set_many(items)
        for key, value in items.items():
            self._wrote(key, value)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        try:
            value = self.storage[key]
        except KeyError:
            self.gone.add(key)
            return
        assert key not in self.gone, f"{key!r} came back without a write"
        assert value == self.written[key]

    @rule(keys=st.lists(KEYS, max_size=5))
    def get_many(self, keys: list[str]) -> None:
        found = self.storage.get_many(keys)
        for key in keys:
            if key in found:
                assert key not in self.gone
                assert found[key] == self.written[key]
            else:
                self.gone.add(key)

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        self.storage.pop(key, None)
        self.written.pop(key, None)
        self.gone.add(key)

    @invariant()
    def within_the_bound(self) -> None:
        if not hasattr(self, "storage"):
            return
        stored = {key: self.storage[key] for key in self.storage}
        assert sum(self.weigh(value) for value in stored.values()) <= self.bound
        for key, value in stored.items():
            assert key not in self.gone
            assert value == self.written[key]


LimitMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_every_policy_keeps_the_bound_and_the_last_values = LimitMachine.TestCase


@pytest.mark.parametrize("backend", ["memory", "files", "sqlite"])
def test_tinylfu_keeps_a_loop_that_lru_loses_entirely(backend: str, tmp_path: Path) -> None:
    # A loop a little larger than the bound: LRU evicts each key just before it is asked
    # for again. The same policy as the memory tier's, behind a CountLimit on disk.
    def stack(policy: str) -> Storage:
        below: Any = {
            "memory": Memory(),
            "files": Files(tmp_path / policy),
            "sqlite": SQLite(tmp_path / f"{policy}.db"),
        }[backend]
        codec = [] if backend == "memory" else [Codec("pickle")]
        return Storage(CountLimit(100, eviction=policy), *codec, below)  # type: ignore[arg-type]

    trace = [f"k{i % 120}" for i in range(6_000)]
    lru, tinylfu = stack("used"), stack("tinylfu")
    assert hit_ratio(lru, trace) == 0.0
    assert hit_ratio(tinylfu, trace) > 0.5
    assert len(tinylfu) == 100
    if backend == "sqlite":  # SQL's approximation counts its evictions only
        assert tinylfu.stats()["evictions"] > 1_000
        return
    refused = tinylfu.stats()["refused"]
    assert refused > 1_000  # loop keys that main refused, each one evicted at once
    assert tinylfu.stats()["evictions"] >= refused


def test_a_restart_begins_with_the_backends_order_and_keeps_the_bound(tmp_path: Path) -> None:
    def open_() -> Storage:
        return Storage(CountLimit(3, eviction="tinylfu"), Codec("pickle"), Files(folder))

    folder = tmp_path / "store"

    storage = open_()
    for key in "abc":
        storage[key] = key
    storage.close()
    again = open_()
    assert sorted(again) == ["a", "b", "c"]
    for key in "defg":
        again[key] = key
    assert len(again) == 3
    assert len([entry for entry in folder.iterdir() if not entry.name.startswith(".")]) == 3


def test_recency_restores_known_keys_in_their_order_after_new_ones() -> None:
    policy = Recency(10, by_use=True)
    for key in "abc":
        policy.write(key, 1)
    policy.hit("a")
    policy.restore({"x": 2, "c": 1, "a": 3}, keep_order=True)  # b gone, x new
    assert policy.keys() == ["x", "c", "a"]
    assert policy.weight == 6
    policy.restore({"c": 1, "x": 1}, keep_order=False)
    assert policy.keys() == ["c", "x"]
    assert policy.weight == 2


def test_tinylfu_restore_keeps_what_it_learnt_and_puts_new_keys_first() -> None:
    policy = WTinyLFU(4)
    for key in "abcd":
        policy.write(key, 1)
        assert policy.evict() == []
    for _ in range(5):
        policy.hit("a")
    learnt = {key: policy.sketch.estimate(key) for key in ("a", "new")}
    assert learnt["a"] >= 5
    policy.restore({"a": 1, "c": 1, "new": 1}, keep_order=True)
    assert set(policy.keys()) == {"a", "c", "new"}
    assert policy.keys()[0] == "new"  # nothing known of it: the first to go
    assert policy.weight == 3
    # A restore neither learns nor forgets. (Compared with its own earlier estimate, not
    # with "a"'s: in a sketch this narrow, "new" may collide with "a" in both rows.)
    assert {key: policy.sketch.estimate(key) for key in learnt} == learnt
    policy.restore({}, keep_order=False)
    assert policy.keys() == [] and policy.weight == 0
    assert policy.sketch.estimate("a") >= 5  # the counts outlive the entries


def test_a_redis_server_keeps_no_tinylfu_bound_and_the_stack_says_so(redis_url: str) -> None:
    import redis

    from pystorage.layers import Redis

    client = redis.Redis.from_url(redis_url)
    with pytest.raises(ConfigurationError, match="eviction='tinylfu' is not kept in Redis"):
        Storage(CountLimit(10, eviction="tinylfu"), Codec("json"), Redis(client, prefix="tl1:"))
    # Accepted as a bound per process: this process's index keeps it.
    storage = Storage(
        CountLimit(10, eviction="tinylfu", per_process=True),
        Codec("json"),
        Redis(client, prefix="tl2:"),
    )
    for i in range(30):
        storage[f"k{i}"] = i
    assert len(storage) == 10
    storage.clear()


def test_urls_and_presets_take_tinylfu(tmp_path: Path) -> None:
    limited = pystorage.open("memory://?limit=100&eviction=tinylfu")
    (limit, _) = limited.layers
    assert isinstance(limit, CountLimit) and limit.eviction == "tinylfu"
    (memory,) = pystorage.open("memory://?lru=100&eviction=tinylfu").layers
    assert isinstance(memory, TinyLFU) and memory.maxsize == 100
    tiered = pystorage.open(f"file://{tmp_path}?lru=10&limit=50&eviction=tinylfu").layers
    assert [type(layer) for layer in tiered[:2]] == [CountLimit, Tier]
    assert isinstance(tiered[1].front, TinyLFU)
    sqlite = pystorage.open(f"sqlite://{tmp_path}/c.db?limit=50&eviction=tinylfu")
    for i in range(80):
        sqlite[f"k{i}"] = i
    assert len(sqlite) == 50

    provider = StorageProvider()
    (front,) = provider.create(StorageProvider.STORAGE_LRU, maxsize=5, eviction="tinylfu").layers
    assert isinstance(front, TinyLFU)
    (plain,) = provider.create(StorageProvider.STORAGE_LRU, maxsize=5).layers
    assert isinstance(plain, LRU)
    disk = provider.create(
        StorageProvider.STORAGE_DISKLRU, limit=3, path=tmp_path / "d", eviction="tinylfu"
    )
    assert disk.layers[0].eviction == "tinylfu"


def test_bad_evictions_are_refused_before_anything_is_built(tmp_path: Path) -> None:
    with pytest.raises(StorageProviderError, match="must be one of used, stored, tinylfu"):
        pystorage.open(f"file://{tmp_path}/x?limit=3&eviction=lfu")
    with pytest.raises(StorageProviderError, match="memory://\\?lru= evicts by use"):
        pystorage.open("memory://?lru=3&eviction=stored")
    with pytest.raises(StorageProviderError, match="evicts by 'used' or 'tinylfu'"):
        StorageProvider().create(StorageProvider.STORAGE_LRU, maxsize=3, eviction="stored")
    assert not (tmp_path / "x").exists()


def _files_stack(folder: Path, suffix: str = "") -> Storage:
    return Storage(CountLimit(50, eviction="tinylfu"), Codec("pickle"), Files(folder, suffix))


def test_what_tinylfu_learnt_outlives_a_restart_on_files(tmp_path: Path) -> None:
    storage = _files_stack(tmp_path)
    for _ in range(8):
        storage.get("hot")
        storage["hot"] = 1
    learnt = storage.layers[0]._policy.sketch.estimate("hot")  # type: ignore[attr-defined]
    assert learnt >= 5
    storage.close()
    again = _files_stack(tmp_path)
    sketch = again.layers[0]._policy.sketch  # type: ignore[attr-defined]
    assert sketch.estimate("hot") == learnt
    # Keys never seen estimate 0 but where they collide with "hot" (about 1 in 256, by
    # the random salt): over 200 of them, a handful at most, not the 200+ of a sketch
    # read back wrong.
    assert sum(sketch.estimate(f"cold-{n}") for n in range(200)) <= 10
    assert sorted(again) == ["hot"]  # the note is no entry, under any suffix
    assert len(again) == 1


def test_a_damaged_or_foreign_note_is_ignored(tmp_path: Path) -> None:
    storage = _files_stack(tmp_path)
    storage["a"] = 1
    storage.close()
    (note,) = tmp_path.glob(".note-*")
    note.write_bytes(b"PSK1" + b"\0" * 40)  # the magic, then the wrong length
    again = _files_stack(tmp_path)
    assert again.layers[0]._policy.sketch.estimate("a") == 0  # type: ignore[attr-defined]
    assert again["a"] == 1
    again.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the note to another user")
def test_a_note_of_another_user_is_not_read(tmp_path: Path) -> None:
    storage = _files_stack(tmp_path)
    storage["a"] = 1
    storage.close()
    (note,) = tmp_path.glob(".note-*")
    assert Files(tmp_path).read_note("entries-tinylfu") == note.read_bytes()
    os.chown(note, 65534, 65534)  # as if another user had planted it
    assert Files(tmp_path).read_note("entries-tinylfu") is None
    assert Files(tmp_path, trust_others=True).read_note("entries-tinylfu") == note.read_bytes()


def test_backends_without_a_place_for_notes_begin_afresh(tmp_path: Path) -> None:
    memory = Memory()
    memory.write_note("entries-tinylfu", b"x")
    assert memory.read_note("entries-tinylfu") is None
    stack = Storage(CountLimit(5, eviction="tinylfu"), Memory())
    stack["a"] = 1
    stack.close()  # nothing to keep it in: no error either

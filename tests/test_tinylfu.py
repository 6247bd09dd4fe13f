"""Adaptive W-TinyLFU (pystorage/eviction/tinylfu.py) and the TinyLFU memory layer: the
bound, the values, and the policy's own books hold under any sequence of operations; it
keeps what is asked for often where LRU cannot; its counters age."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pystorage import Storage
from pystorage.eviction.tinylfu import FrequencySketch, WTinyLFU
from pystorage.layers import LRU, TinyLFU
from tests.helpers import FakeClock, hit_ratio

KEYS = st.sampled_from([f"k{i}" for i in range(12)])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, st.integers()),
        st.tuples(st.just("set_ttl"), KEYS, st.integers()),
        st.tuples(st.just("get"), KEYS),
        st.tuples(st.just("delete"), KEYS),
        st.tuples(st.just("set_many"), st.lists(KEYS, max_size=5), st.integers()),
        st.tuples(st.just("delete_many"), st.lists(KEYS, max_size=5)),
        st.tuples(st.just("add"), KEYS, st.integers()),
        st.tuples(st.just("incr"), KEYS),
        st.tuples(
            st.just("tick"),
        ),
        st.tuples(
            st.just("clear"),
        ),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(maxsize=st.integers(1, 8), operations=OPERATIONS)
def test_any_sequence_keeps_the_bound_the_last_values_and_the_books(
    maxsize: int, operations: list[tuple[object, ...]]
) -> None:
    clock = FakeClock()
    layer = TinyLFU(maxsize, clock=clock)
    storage = Storage(layer)
    written: dict[str, object] = {}  # the last value written to each key: what may come back
    for operation in operations:
        name, *args = operation
        if name == "set":
            key, value = args
            storage[key] = written[key] = value
        elif name == "set_ttl":
            key, value = args
            storage.set(key, value, ttl=1.5)
            written[key] = value
        elif name == "get":
            (key,) = args
            found = storage.get(key, "<missing>")
            assert found == "<missing>" or found == written[key]
        elif name == "delete":
            (key,) = args
            storage.pop(key, None)
        elif name == "set_many":
            keys, value = args
            storage.set_many(dict.fromkeys(keys, value))
            written.update(dict.fromkeys(keys, value))
        elif name == "delete_many":
            (keys,) = args
            storage.delete_many(keys)
        elif name == "add":
            key, value = args
            if storage.add(key, value):
                written[key] = value
        elif name == "incr":
            (key,) = args
            if isinstance(storage.get(key, 0), int):
                written[key] = storage.incr(key)
        elif name == "tick":
            clock.now += 1.0
        else:
            storage.clear()
        stored = layer._data
        assert len(stored) <= maxsize
        assert set(stored) == set(layer._policy.keys()), "the policy holds exactly the keys"
        assert layer._policy.weight == len(stored)
        for key, value in storage.items():
            assert value == written[key]


def test_a_loop_a_little_larger_than_the_cache_is_mostly_hits() -> None:
    # LRU always evicts the key that the loop asks for next: every access misses.
    trace = [f"k{i % 110}" for i in range(20_000)]
    assert hit_ratio(Storage(LRU(100)), trace) == 0.0
    assert hit_ratio(Storage(TinyLFU(100)), trace) > 0.7


def test_a_popular_set_survives_a_stream_of_one_off_keys() -> None:
    rng = random.Random(7)
    popular = [f"hot{i}" for i in range(50)]
    trace = [rng.choice(popular) if rng.random() < 0.5 else f"once{i}" for i in range(20_000)]
    lru, tinylfu = hit_ratio(Storage(LRU(100)), trace), hit_ratio(Storage(TinyLFU(100)), trace)
    assert tinylfu > 0.45  # nearly every access of the popular half
    assert tinylfu > lru + 0.1


def test_the_window_grows_where_recency_is_what_counts() -> None:
    # Each key is asked for a few times in a short span, then never again: frequency
    # says nothing, and the climber should move the window up from 1 % (where frequency
    # refuses each new key in favour of the last block's, asked for three times).
    trace = []
    for start in range(0, 40_000, 20):
        block = [f"k{start + i}" for i in range(20)]
        trace += block * 3
    policy = WTinyLFU(100)
    widest = policy.window_limit
    for key in trace:
        if key in policy:
            policy.hit(key)
        else:
            policy.write(key, 1)
            policy.evict()
        widest = max(widest, policy.window_limit)
    assert widest >= 20  # a block fits in the window


def test_counts_fade_after_each_sample() -> None:
    sketch = FrequencySketch(10)
    for _ in range(12):
        sketch.record("hot")
    before = sketch.estimate("hot")
    assert before >= 12
    for i in range(sketch.sample):  # one sample of other keys: every count halved
        sketch.record(f"other{i}")
    assert sketch.estimate("hot") <= before // 2 + 1


def test_a_weighted_policy_keeps_the_total_weight_within_its_capacity() -> None:
    rng = random.Random(3)
    policy = WTinyLFU(1_000, entries=50)
    held: dict[str, int] = {}
    for _ in range(5_000):
        key = f"k{rng.randrange(200)}"
        weight = rng.randrange(1, 120)
        policy.write(key, weight)
        removed = policy.evict()
        held[key] = weight
        for victim in removed:
            del held[victim]
        assert policy.weight == sum(held.values()) <= 1_000
        assert set(held) == set(policy.keys())


def test_the_shipped_conformance_suite_passes_alone_and_as_a_front() -> None:
    from pystorage.conformance import check
    from pystorage.layers import Codec, Memory, Tier

    alone = check(lambda: [TinyLFU(100_000)]).assert_ok()
    front = check(lambda: [Tier(TinyLFU(3)), Codec("pickle"), Memory()]).assert_ok()
    assert not alone.skipped and not front.skipped and len(alone.passed) >= 10


def test_refused_admissions_are_counted_among_the_evictions() -> None:
    cache = Storage(TinyLFU(100))
    popular = [f"hot{i}" for i in range(90)]
    for _ in range(5):
        for key in popular:
            cache.get(key) or cache.setdefault(key, 1)
    for number in range(1_000):  # one-off keys: each refused against a popular one
        cache[f"once{number}"] = 1
    counts = cache.stats()
    assert 0 < counts["refused"] <= counts["evictions"]
    assert sum(key in cache for key in popular) >= 75  # most stayed (LRU: none)


@given(st.lists(st.text(max_size=6), max_size=300), st.booleans())
@settings(max_examples=50, deadline=None)
def test_a_sketch_that_grows_keeps_every_estimate(keys: list[str], stable: bool) -> None:
    sketch = FrequencySketch(4, stable=stable)
    for key in keys:
        sketch.record(key)
    before = {key: sketch.estimate(key) for key in [*keys, "never seen"]}
    sketch.grow()
    sketch.grow()
    assert sketch.capacity == 16  # a width of 16, twice doubled
    assert {key: sketch.estimate(key) for key in before} == before


def test_a_saved_sketch_loads_into_a_narrower_or_wider_one() -> None:
    wide = FrequencySketch(1000, stable=True)
    for number in range(3000):
        wide.record(f"k{number % 50}")
    saved = wide.save()
    assert saved is not None
    narrow = FrequencySketch(10, stable=True)
    assert narrow.load(saved) and narrow.capacity == wide.capacity
    assert all(narrow.estimate(f"k{n}") == wide.estimate(f"k{n}") for n in range(60))
    small = FrequencySketch(10, stable=True)
    for _ in range(5):
        small.record("hot")
    grown = FrequencySketch(1000, stable=True)
    small_saved = small.save()
    assert small_saved is not None and grown.load(small_saved)
    assert grown.capacity == 1024 and grown.estimate("hot") == small.estimate("hot")
    assert not grown.load(small_saved[:-1])  # damaged: refused, nothing changed
    odd = bytearray(small_saved)
    odd[12:16] = (24).to_bytes(4, "big")  # the width field: not a power of two
    assert not grown.load(bytes(odd))


def test_a_huge_bound_costs_a_sketch_of_the_keys_held_not_of_the_bound() -> None:
    """A SizeLimit of 50 MB sized its sketch for 50 million entries: 800 MB of counters
    for each stack, before a single write."""
    policy = WTinyLFU(50_000_000)
    assert policy.sketch.capacity <= 1024
    for number in range(5000):
        policy.write(f"k{number}", 1)
        policy.evict()
    assert 5000 <= policy.sketch.capacity < 10_000
    bounded = WTinyLFU(100)
    for number in range(5000):
        bounded.write(f"k{number}", 1)
        bounded.evict()
    assert bounded.sketch.capacity == FrequencySketch(100).capacity  # never past the bound

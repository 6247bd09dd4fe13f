"""A hypothesis state machine drives stacks with random operations, TTLs and limits,
against a dict model with a fake clock."""

from __future__ import annotations

import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pystorage import Storage
from pystorage.layers import Codec, CountLimit, Expiry, Files, Memory
from tests.helpers import FakeClock

KEYS = st.sampled_from(["a", "b", "c", "d", "e", "../f", ""])
VALUES = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none())
TTLS = st.one_of(st.none(), st.sampled_from([1.0, 2.5, 5.0]))
LIMIT = 4


class Model:
    """What the stack should hold: LRU order, values and deadlines."""

    def __init__(self, clock: FakeClock, default_ttl: float | None) -> None:
        self.clock = clock
        self.default_ttl = default_ttl
        self.entries: OrderedDict[str, tuple[Any, float | None]] = OrderedDict()

    def expire(self) -> None:
        for key, (_, deadline) in list(self.entries.items()):
            if deadline is not None and deadline <= self.clock.now:
                del self.entries[key]

    def set(self, key: str, value: Any, ttl: float | None) -> None:
        self.expire()
        ttl = self.default_ttl if ttl is None else ttl
        self.entries[key] = (value, None if ttl is None else self.clock.now + ttl)
        self.entries.move_to_end(key)
        while len(self.entries) > LIMIT:
            self.entries.popitem(last=False)

    def get(self, key: str) -> Any:
        self.expire()
        value, _ = self.entries[key]
        self.entries.move_to_end(key)
        return value


def machine_for(build: Callable[[Path, FakeClock, float | None], Storage]) -> type:
    class StackMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.folder = Path(tempfile.mkdtemp())
            self.clock = FakeClock()
            self.model = Model(self.clock, 3.0)
            self.storage = build(self.folder, self.clock, 3.0)

        def teardown(self) -> None:
            self.storage.close()
            shutil.rmtree(self.folder, ignore_errors=True)

        @rule(key=KEYS, value=VALUES, ttl=TTLS)
        def set(self, key: str, value: Any, ttl: float | None) -> None:
            self.storage.set(key, value, ttl=ttl)
            self.model.set(key, value, ttl)

        @rule(key=KEYS)
        def get(self, key: str) -> None:
            try:
                expected = self.model.get(key)
            except KeyError:
                assert self.storage.get(key, "missing") == "missing"
            else:
                assert self.storage[key] == expected

        @rule(key=KEYS)
        def delete(self, key: str) -> None:
            self.model.expire()
            if key in self.model.entries:
                del self.storage[key]
                del self.model.entries[key]
            else:
                try:
                    del self.storage[key]
                except KeyError:
                    pass
                else:
                    raise AssertionError(f"deleted {key!r}, which the model does not hold")

        @rule(key=KEYS)
        def contains(self, key: str) -> None:
            self.model.expire()
            assert (key in self.storage) == (key in self.model.entries)

        @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 4.0]))
        def wait(self, seconds: float) -> None:
            self.clock.now += seconds

        @invariant()
        def same_keys(self) -> None:
            self.model.expire()
            assert sorted(self.storage) == sorted(self.model.entries)
            assert len(self.storage) == len(self.model.entries) <= LIMIT

    return StackMachine


def _memory(folder: Path, clock: FakeClock, ttl: float | None) -> Storage:
    return Storage(Expiry(ttl, clock), CountLimit(LIMIT), Codec("pickle"), Memory())


def _files(folder: Path, clock: FakeClock, ttl: float | None) -> Storage:
    return Storage(Expiry(ttl, clock), CountLimit(LIMIT), Codec("json"), Files(folder))


SETTINGS = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestExpiryCountLimitMemory = machine_for(_memory).TestCase
TestExpiryCountLimitMemory.settings = SETTINGS
TestExpiryCountLimitFiles = machine_for(_files).TestCase
TestExpiryCountLimitFiles.settings = SETTINGS

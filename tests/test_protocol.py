"""The protocol: a core of at most ten operations, named capabilities, one definition."""

from __future__ import annotations

from typing import Any

import pytest

from pystorage import Storage
from pystorage.aio import rules
from pystorage.errors import ConfigurationError, UnsupportedError
from pystorage.layers import Backend, Codec, CountLimit, Expiry, Layer, Memory, SQLite, Stats
from pystorage.layers.protocol import CAPABILITIES, io_operations, missing, require


class Plain(Backend):
    """Only the core a backend must write."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data[key]

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self.refuse_ttl(ttl)
        self.data[key] = value

    def delete(self, key: str) -> None:
        del self.data[key]

    def contains(self, key: str) -> bool:
        return key in self.data

    def keys(self) -> Any:
        return iter(list(self.data))


def test_the_core_is_at_most_ten_operations_and_every_operation_has_one_capability() -> None:
    assert len(CAPABILITIES["core"].operations) <= 10
    named = [name for capability in CAPABILITIES.values() for name in capability.operations]
    assert len(named) == len(set(named))  # no operation in two capabilities
    public = {name for name in dir(Layer) if name[0] != "_" and callable(getattr(Layer, name))}
    assert public == set(named)


def test_the_generator_reads_which_operations_do_io_from_the_protocol() -> None:
    assert set(io_operations()) == rules.OPERATIONS | rules.ASYNC_RESULTS
    assert {"keys", "exclusive"} == rules.ASYNC_RESULTS
    assert "counters" not in rules.OPERATIONS and "get" in rules.OPERATIONS


def test_a_backend_of_the_core_alone_has_the_defaulted_capabilities() -> None:
    storage = Storage(Plain())
    storage.set_many({"a": 1, "b": 2})
    assert storage.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    assert len(storage) == 2 and storage.stats() == {}
    for capability in ("batches", "order", "section", "key_lock", "counters", "bounds"):
        assert missing(storage.top, capability) is None


def test_missing_capabilities_are_refused_naming_them() -> None:
    storage = Storage(Stats(), Plain())
    assert "'atomic' capability (add, modify)" in str(missing(storage.top, "atomic"))
    assert "'ttl' capability" in str(missing(storage.top, "ttl"))
    with pytest.raises(UnsupportedError, match="'atomic' capability"):
        require(storage.top, "atomic")
    with pytest.raises(UnsupportedError, match="'atomic' capability"):
        storage.incr("n")
    with pytest.raises(UnsupportedError, match="'ttl' capability"):
        storage.set("k", 1, ttl=5)


def test_layers_that_need_a_capability_ask_for_it_when_linked() -> None:
    assert missing(Storage(Expiry(), Memory()).top, "ttl") is None
    assert missing(Storage(Memory()).top, "atomic") is None
    with pytest.raises(ConfigurationError, match=r"Plain .* lacks the 'ttl' capability"):
        Storage(Expiry(), Plain())


def test_wrappers_pass_capabilities_through_to_the_backend(tmp_path: Any) -> None:
    top = Storage(Stats(), Codec("pickle"), SQLite(tmp_path / "db")).top
    assert all(missing(top, name) is None for name in CAPABILITIES if name != "ttl")


class Bare(Layer):
    """A backend on ``Layer`` itself, not ``Backend``: the core, and no defaults."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    get = Plain.get
    set = Plain.set
    delete = Plain.delete
    contains = Plain.contains
    keys = Plain.keys
    refuse_ttl = Plain.refuse_ttl

    def count(self) -> int:
        return len(self.data)

    def clear(self) -> None:
        self.data.clear()

    def close(self) -> None:
        pass


def test_layers_above_ask_for_the_capabilities_they_use() -> None:
    assert "'order' capability" in str(missing(Bare(), "order"))
    with pytest.raises(UnsupportedError, match="Bare lacks the 'order' capability"):
        Storage(CountLimit(3), Bare())
    storage = Storage(Bare())
    storage["k"] = 1
    assert storage["k"] == 1 and len(storage) == 1
    with pytest.raises(UnsupportedError, match="Bare lacks the 'key_lock' capability"):
        storage.memoize()(len)
    with pytest.raises(UnsupportedError, match="Bare lacks the 'batches' capability"):
        storage.get_many(["k"])

"""The Storage facade, operation by operation (issue 24: `make mutation MODULE=storage`):
what each method returns, refuses and hands down, and the messages of its refusals."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage
from pystorage.errors import (
    ConfigurationError,
    InvalidKeyError,
    NotAnIntegerError,
    UnsupportedError,
)
from pystorage.layers import Codec, CountLimit, Expiry, Files, Memory, Stats
from pystorage.layers.sqlite import SQLite
from tests.helpers import FakeClock


class NoDeadlines(Memory):
    """A backend of the user's that keeps no deadlines."""

    supports_ttl = False


def test_a_client_that_must_be_awaited_is_refused_naming_the_way_out() -> None:
    class AsyncClient(Memory):
        client_is_async = True

    backend = AsyncClient()
    with pytest.raises(ConfigurationError) as refused:
        Storage(backend)
    assert str(refused.value) == (
        f"{backend!r} was given a redis.asyncio client, which a Storage cannot await: use "
        "it in an AsyncStorage, or give a Storage a redis.Redis or "
        "redis.cluster.RedisCluster client"
    )


def test_the_refusals_of_a_stack_that_does_not_fit_name_the_layer() -> None:
    with pytest.raises(ConfigurationError) as refused:
        Storage()
    assert str(refused.value) == "a Storage needs at least a backend, e.g. Memory()"
    codec = Codec("json")
    with pytest.raises(ConfigurationError) as refused:
        Storage(codec)
    assert str(refused.value) == (
        f"the last layer must be a backend (Memory, Files, ...), not {codec!r}"
    )
    memory = Memory()
    with pytest.raises(ConfigurationError) as refused:
        Storage(memory, Memory())
    assert str(refused.value) == (
        f"{memory!r} must be the last layer: only wrappers can have a layer below"
    )


def test_a_bytes_backend_without_a_codec_is_refused_with_an_example(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Storage(Stats(), Files(tmp_path))
    assert str(refused.value) == (
        "Files stores bytes: put a Codec layer above it, e.g. Storage(Codec('pickle'), Files(...))"
    )


def test_a_new_limit_trims_what_the_stack_below_already_holds() -> None:
    below = Storage(Memory())
    below.set_many({f"k{i}": i for i in range(5)})
    above = Storage(CountLimit(2), below)  # its index is read, and applied, at once
    assert len(below) == 2  # before any operation on the new stack
    assert len(above) == 2


def test_a_limit_the_backend_enforces_itself_leaves_the_stack(tmp_path: Path) -> None:
    storage = Storage(CountLimit(3), Codec("pickle"), SQLite(tmp_path / "db"))
    assert [type(layer).__name__ for layer in storage.layers] == ["Codec", "SQLite"]
    for key in "abcde":
        storage[key] = key
    assert len(storage) == 3  # enforced below
    storage.close()


def test_mapping_reads_and_writes() -> None:
    storage = Storage(Codec("json"), Memory())
    storage["k"] = [1]
    assert storage["k"] == [1]
    assert storage.get("k") == [1] and storage.get("nope") is None
    assert storage.get("nope", "default") == "default"
    assert "k" in storage and "nope" not in storage
    assert b"k" not in storage and 1 not in storage  # not a key: not in, never an error
    assert list(storage) == ["k"] and len(storage) == 1
    with pytest.raises(InvalidKeyError):
        storage[b"k"] = 2  # type: ignore[index]
    del storage["k"]
    with pytest.raises(KeyError):
        storage["k"]
    assert repr(storage) == f"Storage({storage.layers[0]!r}, {storage.layers[1]!r})"


def test_pop_returns_the_value_it_removes_or_the_default() -> None:
    storage = Storage(Memory())
    storage["k"] = 1
    assert storage.pop("k") == 1 and "k" not in storage
    assert storage.pop("k", None) is None and storage.pop("k", 5) == 5
    with pytest.raises(KeyError) as missing:
        storage.pop("k")
    assert missing.value.args == ("k",)


def test_pop_that_loses_the_delete_to_another_deleter_returns_what_it_read() -> None:
    class DeletedMeanwhile(Memory):
        def delete(self, key: str) -> None:
            super().delete(key)  # another deleter's
            super().delete(key)  # ours: missing now

    storage = Storage(DeletedMeanwhile())
    storage["k"] = 1
    assert storage.pop("k") == 1 and "k" not in storage


def test_ttls_go_down_with_every_write_and_come_back_with_every_read() -> None:
    storage = Storage(Memory(clock=FakeClock()))
    storage.set("s", 1, ttl=10)
    assert storage.add("a", 2, ttl=20)
    assert storage.incr("i", 3, ttl=30) == 3
    assert storage.decr("d", 4, ttl=40) == -4
    storage.set_many({"m": 5}, ttl=50)
    storage["forever"] = 6
    assert storage.get_with_ttl("s") == (1, 10) and storage.get_with_ttl("forever") == (6, None)
    assert storage.get_many_with_ttl(["a", "i", "d", "m", "nope"]) == {
        "a": (2, 20), "i": (3, 30), "d": (-4, 40), "m": (5, 50)
    }  # fmt: skip
    assert storage.get_many(["s", "forever", "nope"]) == {"s": 1, "forever": 6}


def test_a_ttl_on_a_stack_that_cannot_expire_is_refused_before_any_write() -> None:
    storage = Storage(NoDeadlines())
    message = (
        "this stack cannot expire entries (it lacks the 'ttl' capability): add an Expiry "
        "layer (or use a backend with native expiry) to use a per-key ttl"
    )
    for write in (
        lambda: storage.set("k", 1, ttl=5),
        lambda: storage.add("k", 1, ttl=5),
        lambda: storage.incr("k", ttl=5),
        lambda: storage.decr("k", ttl=5),
        lambda: storage.set_many({"k": 1}, ttl=5),
    ):
        with pytest.raises(UnsupportedError) as refused:
            write()
        assert str(refused.value) == message
    assert len(storage) == 0
    storage.set("k", 1, ttl=None)  # no ttl: no question asked
    assert storage.add("j", 2, ttl=None) and storage.incr("n", ttl=None) == 1


def test_a_write_with_a_key_that_is_not_a_str_writes_nothing_and_names_the_key() -> None:
    storage = Storage(Memory())
    for write in (
        lambda: storage.__setitem__(b"k", 1),  # type: ignore[arg-type]
        lambda: storage.set(b"k", 1),  # type: ignore[arg-type]
        lambda: storage.add(b"k", 1),  # type: ignore[arg-type]
        lambda: storage.incr(b"k"),  # type: ignore[arg-type]
        lambda: storage.set_many({"a": 1, b"k": 2}),  # type: ignore[dict-item]
    ):
        with pytest.raises(InvalidKeyError) as refused:
            write()
        assert str(refused.value) == "keys are str, not bytes: b'k'"
    assert len(storage) == 0


def test_add_answers_a_bool_whatever_the_backend_returns() -> None:
    class Truthy(Memory):
        def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
            return 1 if super().add(key, value, ttl) else 0  # type: ignore[return-value]

    storage = Storage(Truthy())
    assert storage.add("k", 1) is True
    assert storage.add("k", 2) is False


def test_incr_and_decr_add_and_subtract_the_delta() -> None:
    storage = Storage(Memory())
    assert storage.incr("n") == 1 and storage.incr("n", 10) == 11
    assert storage.decr("n") == 10 and storage.decr("n", 4) == 6
    assert storage.decr("m", -2) == 2
    assert storage["n"] == 6


def test_incr_refusals_name_the_key_and_the_type() -> None:
    storage = Storage(Memory())
    storage.set_many({"flag": True, "text": "1"})
    with pytest.raises(NotAnIntegerError) as refused:
        storage.incr("flag")
    assert str(refused.value) == "cannot increment key 'flag': its value is a bool, not an int"
    with pytest.raises(NotAnIntegerError) as refused:
        storage.incr("text")
    assert str(refused.value) == "cannot increment key 'text': its value is a str, not an int"
    with pytest.raises(NotAnIntegerError) as refused:
        storage.decr("n", 1.5)  # type: ignore[arg-type]
    assert str(refused.value) == "delta must be an int, not float"
    with pytest.raises(NotAnIntegerError, match=r"^delta must be an int, not bool$"):
        storage.incr("n", True)
    assert storage["flag"] is True and storage["text"] == "1" and "n" not in storage


def test_an_int_subclass_is_incremented_to_a_plain_int() -> None:
    class Level(enum.IntEnum):
        LOW = 1

    storage = Storage(Memory())
    storage["level"] = Level.LOW
    assert storage.incr("level") == 2
    assert type(storage["level"]) is int


def test_batches_clear_expire_and_stats() -> None:
    clock = FakeClock()
    storage = Storage(Stats(), Expiry(10, clock), Memory(clock=clock))
    storage.set_many({"a": 1, "b": 2, "c": 3})
    storage.delete_many(["a", "missing"])
    assert sorted(storage) == ["b", "c"]
    clock.now += 10
    assert storage.expire() == 2
    storage["d"] = 4
    counts = storage.stats()
    assert (counts["writes"], counts["deletes"], counts["expirations"]) == (4, 2, 2)
    storage.clear()
    assert len(storage) == 0


def test_memoize_caches_in_this_storage_with_each_option_handed_on() -> None:
    storage = Storage(Memory(clock=FakeClock()))
    calls: list[object] = []

    @storage.memoize(ttl=60)
    def square(x: float) -> float:
        calls.append(x)
        return x * x

    assert square(3) == 9 and square(3) == 9 and calls == [3]
    (key,) = list(storage)
    assert storage.get_with_ttl(key)[1] == 60
    assert square(3.0) == 9 and calls == [3]  # equal arguments share an entry by default

    @storage.memoize(typed=True)
    def typed(x: float) -> float:
        calls.append(x)
        return x

    typed(1), typed(1.0)
    assert calls == [3, 1, 1.0]

    @storage.memoize(key_func=lambda x: x % 10)
    def last_digit(x: int) -> int:
        calls.append(x)
        return x % 10

    assert last_digit(13) == 3 and last_digit(23) == 3 and calls[-1] == 13

    @storage.memoize(key="shared")
    def one(x: int) -> str:
        return "one"

    @storage.memoize(key="shared")  # the same name: the same entries, whatever the function
    def other(x: int) -> str:
        return "other"

    assert one(1) == "one" and other(1) == "one"


def test_the_context_manager_gives_the_storage_and_closes_it_on_an_error() -> None:
    closed = []

    class Recording(Memory):
        def close(self) -> None:
            closed.append(True)

    storage = Storage(Recording())
    with pytest.raises(RuntimeError), storage as entered:
        assert entered is storage
        raise RuntimeError
    assert closed == [True]
    storage.close()
    assert closed == [True, True]


def test_tags_on_a_stack_without_them_are_refused_word_for_word() -> None:
    from pystorage.errors import ConfigurationError

    plain = Storage(Codec("json"), Memory())
    with pytest.raises(ConfigurationError) as refused:
        plain.set("k", 1, tags=["t"])
    assert str(refused.value) == (
        "this stack has no Tags layer on top (its top is Codec), so it cannot store tags: put "
        "Tags() on top with a Codec(..., tagged=True), or give a preset tags=True or a URL "
        "tags=1"
    )


def test_envelopes_without_a_tags_layer_above_are_refused_word_for_word() -> None:
    from pystorage.errors import ConfigurationError

    codec = Codec("json", tagged=True)
    with pytest.raises(ConfigurationError) as refused:
        Storage(codec, Memory())
    assert str(refused.value) == (
        f"{codec!r} stores the envelopes of a Tags layer, and none is above it: build the "
        "stack with Tags() on top, in one Storage(...)"
    )


def test_tagged_add_and_set_many_keep_their_ttl() -> None:
    from pystorage.layers import Tags

    storage = Storage(Tags(), Codec("json", tagged=True), Memory())
    assert storage.add("a", 1, ttl=60, tags=["t"])
    storage.set_many({"b": 2}, ttl=30, tags=["t"])
    for key, value, ttl in (("a", 1, 60), ("b", 2, 30)):
        stored, left = storage.get_with_ttl(key)
        assert stored == value and left is not None and ttl - 1 < left <= ttl, key
    storage.invalidate_tag("t")
    assert "a" not in storage and "b" not in storage


def test_memoize_hands_refresh_and_tags_on() -> None:
    from pystorage.errors import ConfigurationError
    from pystorage.layers import Tags
    from pystorage.stampede import Refresh

    with pytest.raises(ConfigurationError, match="refresh= refreshes entries before and after"):
        Storage(Memory()).memoize(refresh=Refresh(stale=30))  # no ttl: refused, so handed on
    storage = Storage(Tags(), Codec("json", tagged=True), Memory())
    calls: list[int] = []

    @storage.memoize(tags=["t"])
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    assert (double(2), double(2)) == (4, 4) and calls == [2]
    storage.invalidate_tag("t")
    assert double(2) == 4 and calls == [2, 2]

"""One dict-model suite, run on every stack in STACKS."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pystorage import Storage, conformance
from pystorage.errors import InvalidKeyError
from tests.conformance.stacks import ALL_STACKS, Place, StackFactory

# The values and keys of the shipped suite (pystorage.conformance), written once there.
VALUES: list[Any] = [*conformance.VALUES, "plain text"]
KEYS = conformance.KEYS


@pytest.fixture(params=sorted(ALL_STACKS))
def factory(request: pytest.FixtureRequest) -> StackFactory:
    return ALL_STACKS[request.param]


@pytest.fixture
def storage(
    factory: StackFactory, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Storage]:
    with factory(Place(tmp_path / "store", request)) as storage:
        yield storage


def test_set_get_overwrite(storage: Storage) -> None:
    for index, value in enumerate(VALUES):
        storage[f"k{index}"] = value
    for index, value in enumerate(VALUES):
        assert storage[f"k{index}"] == value
    storage["k0"] = "replaced"
    assert storage["k0"] == "replaced"
    assert len(storage) == len(VALUES)


def test_missing_key(storage: Storage) -> None:
    with pytest.raises(KeyError):
        storage["absent"]
    with pytest.raises(KeyError):
        del storage["absent"]
    assert "absent" not in storage
    assert storage.get("absent", "default") == "default"


def test_delete_len_iter_contains(storage: Storage) -> None:
    assert len(storage) == 0
    assert list(storage) == []
    for key in KEYS:
        storage[key] = key
    assert sorted(storage) == sorted(KEYS)
    assert len(storage) == len(KEYS)
    assert all(key in storage for key in KEYS)
    del storage["a/b"]
    assert "a/b" not in storage
    assert len(storage) == len(KEYS) - 1
    with pytest.raises(KeyError):
        storage["a/b"]


def test_clear(storage: Storage) -> None:
    storage.update({f"k{i}": i for i in range(20)})
    storage.clear()
    assert len(storage) == 0
    assert list(storage) == []
    assert "k1" not in storage


def test_batches(storage: Storage) -> None:
    storage.set_many({"a": 1, "b": [2], "c": {"three": 3}})
    assert storage.get_many(["a", "c", "missing"]) == {"a": 1, "c": {"three": 3}}
    storage.delete_many(["a", "missing"])
    assert sorted(storage) == ["b", "c"]
    assert storage.get_many([]) == {}


def test_values_come_with_the_time_they_have_left(storage: Storage) -> None:
    storage.set("short", {"n": 1}, ttl=100)
    storage["plain"] = [2]
    value, left = storage.get_with_ttl("short")
    assert value == {"n": 1} and left is not None and 50 < left <= 100
    value, left = storage.get_with_ttl("plain")  # a stack's default TTL may apply
    assert value == [2] and (left is None or 0 < left <= 3600)
    found = storage.get_many_with_ttl(["short", "plain", "missing"])
    assert sorted(found) == ["plain", "short"]
    assert found["short"][0] == {"n": 1} and 50 < (found["short"][1] or 0) <= 100
    assert found["plain"] == (value, found["plain"][1])
    with pytest.raises(KeyError):
        storage.get_with_ttl("missing")


def test_mapping_mixins(storage: Storage) -> None:
    assert storage.setdefault("s", 1) == 1
    assert storage.setdefault("s", 2) == 1
    assert storage.pop("s") == 1
    assert storage.pop("s", None) is None
    storage.update(x=1, y=2)
    assert dict(storage.items()) == {"x": 1, "y": 2}
    assert sorted(storage.values()) == [1, 2]
    assert storage == {"x": 1, "y": 2}


def test_unicode_and_hostile_keys(storage: Storage) -> None:
    hostile = [
        "../../etc/passwd",
        "a\\b",
        "\0",
        "\n",
        "%41",
        "~",
        "é",
        "e\u0301",
        "CON",
        "x" * 5000,
    ]
    stored = []
    for key in hostile:
        try:
            storage[key] = key
        except InvalidKeyError:
            continue
        stored.append(key)
    assert sorted(storage) == sorted(stored)
    assert all(storage[key] == key for key in stored)


def test_non_str_key_is_refused(storage: Storage) -> None:
    with pytest.raises(InvalidKeyError):
        storage[1] = "x"  # type: ignore[index]
    assert 1 not in storage


operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(KEYS[:6]), st.sampled_from(VALUES)),
        st.tuples(st.just("del"), st.sampled_from(KEYS[:6])),
        st.tuples(st.just("get"), st.sampled_from(KEYS[:6])),
        st.tuples(
            st.just("set_many"),
            st.dictionaries(st.sampled_from(KEYS[:6]), st.integers(-(2**63), 2**63 - 1)),
        ),
        st.tuples(st.just("delete_many"), st.lists(st.sampled_from(KEYS[:6]))),
        st.tuples(st.just("clear")),
    ),
    max_size=25,
)


# The factory fixture is stateless: every example builds its own storage.
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_random_operations_match_a_dict(
    factory: StackFactory, request: pytest.FixtureRequest, ops: list[tuple[Any, ...]]
) -> None:
    model: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as folder,
        factory(Place(Path(folder) / "s", request)) as storage,
    ):
        for op, *args in ops:
            if op == "set":
                storage[args[0]] = args[1]
                model[args[0]] = args[1]
            elif op == "del":
                assert (args[0] in model) == (args[0] in storage)
                if args[0] in model:
                    del storage[args[0]]
                    del model[args[0]]
            elif op == "get":
                assert storage.get(args[0]) == model.get(args[0])
            elif op == "set_many":
                storage.set_many(args[0])
                model.update(args[0])
            elif op == "delete_many":
                storage.delete_many(args[0])
                for key in args[0]:
                    model.pop(key, None)
            else:
                storage.clear()
                model.clear()
            assert len(storage) == len(model)
        assert dict(storage.items()) == model

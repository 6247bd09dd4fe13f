"""memoize, pinned (issue 24: `make mutation MODULE=memoize`).

Each test pins what a memoized function returns, how many times it computes, under which
key it stores (the encoding of every stable kind, fixed across runs and versions, so that
processes share results), with which TTL and tags, which lock it takes, what it refuses
and with which message (naming the argument or the closure variable, as docs/memoize.md
promises), and what it counts. The lock across processes is the backend's ``key_lock``:
memoize only enters it, so one process shows which key it locks, on every backend alike.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import datetime
import decimal
import enum
import gc
import inspect
import math
import threading
import time
import uuid
import weakref
import zoneinfo
from collections import namedtuple
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import attrs
import pytest

from pystorage import AsyncStorage, Refresh, Storage
from pystorage.errors import ConfigurationError, InvalidKeyError
from pystorage.layers import Codec, Expiry, Files, Memory, SQLite, Tags
from pystorage.layers.base import MAX_TTL, new_token
from pystorage.memoize import STABLE_KINDS
from tests.helpers import FakeClock

DEADLINE = 30.0  # seconds: a generous bound for what should take milliseconds
ROOT = Path(__file__).resolve().parent.parent


# -- the keys: one encoding per stable kind, the same in every run and version ----------


class Shade(enum.Enum):
    DARK = 1
    LIGHT = 1.5


@dataclasses.dataclass(frozen=True)
class Spot:
    x: int
    y: float = 0.0
    note: str = dataclasses.field(default="", compare=False)


@attrs.frozen
class Price:
    amount: decimal.Decimal
    currency: str
    source: str = attrs.field(default="", eq=False)


Span = namedtuple("Span", "start end")

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
EST = datetime.timezone(datetime.timedelta(hours=-5), "EST")

#: A value of each stable kind (and the edges of its encoding): its key untyped, typed,
#: and as a keyword argument (the first 16 hex digits of each hash after "k:").
KEYS: dict[str, tuple[Any, str]] = {
    "str": ("é\udcff", "a40507b4cc51cb4c a40507b4cc51cb4c 7c82b947600c3cc3"),
    "none": (None, "ae5d8965a2d06edf ae5d8965a2d06edf a31a2e5359a375ca"),
    "true": (True, "c87d59dac99415f0 a802e0c6bae4d488 3f3a93c5a93965ef"),
    "false": (False, "8151a441df7fa16a 817e7eab0a49623d 2549ba8f40c926e1"),
    "zero": (0, "8151a441df7fa16a 8151a441df7fa16a 2549ba8f40c926e1"),
    "ints": (
        (1, -1, 127, 128, 255, 256, -128, -129, 2**64),
        "fedb1ddba039576e fedb1ddba039576e 4ebda4a34084351f",
    ),
    "floats": (
        (1.0, 0.5, -2.0, 1e300, math.inf),
        "bf1db11762cd9ef7 47dafe3a5dd85a7d 3f93fcb6b4fa807e",
    ),
    "bytes": (b"\x00\xff", "d195fe7617b78f3e d195fe7617b78f3e 9ccd5602a38846a9"),
    "list": ([1, "a", None], "7627253da8b6ff66 7627253da8b6ff66 0866cba5dae98173"),
    "nested": (((), [()], [[]]), "4fd84bc54e030cb2 4fd84bc54e030cb2 ec97d8c8e982d444"),
    "surrogate keys": (
        {"\udcff": 1, "a\udcfe": 2},
        "a777248e40374adb a777248e40374adb edaaecd5a82eb52d",
    ),
    "dict": ({"b": 1, "a": [2]}, "31c712334f4cd0fd 31c712334f4cd0fd ae8fcb9289278b6b"),
    "mixed dict": ({1: "a", "1": 2.0}, "9534dee04ff9c35f 60f974c189bb41ed a2d51c17fc0629d3"),
    "set": ({3, 1, 2}, "790df9ad2a027936 790df9ad2a027936 429bde55425fe0e2"),
    "frozenset": (frozenset({"x"}), "ee373ec998442aa3 870f57f6c8ecaaa7 2320334c5926e25f"),
    "enum": (Shade.LIGHT, "368fcb5cfa6be079 368fcb5cfa6be079 f31137e77d4cb73a"),
    "class": (Spot, "b6ae2208741c3f13 b6ae2208741c3f13 92142ba5fc0a705a"),
    "namedtuple": (Span(1, 2), "38a28967c4e99f62 38a28967c4e99f62 e93031b990a93323"),
    "dataclass": (Spot(1, 2.5, note="n"), "44c2b5bf53b390e6 44c2b5bf53b390e6 d3a97655863b4e08"),
    "attrs": (
        Price(decimal.Decimal("9.990"), "EUR", source="s"),
        "ae7feab7554bc85d ae7feab7554bc85d ec35623edd5a08f4",
    ),
    "datetime": (
        datetime.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=PARIS),
        "31d46c7619623c70 31d46c7619623c70 9431d862794478d6",
    ),
    "utc": (
        datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
        "da86c6cb8897153b da86c6cb8897153b 361d47092e060fa7",
    ),
    "offset": (
        datetime.datetime(2024, 1, 1, tzinfo=EST),
        "8b3f476e8c0b1128 8b3f476e8c0b1128 2973de44addfeb8b",
    ),
    "naive": (
        datetime.datetime(2024, 1, 1, 12, 0, 0, 7),
        "cd816ff0a59d33ac cd816ff0a59d33ac 9ad2c123601c281a",
    ),
    "time": (
        datetime.time(23, 59, 1, tzinfo=datetime.timezone.utc),
        "4d1efcdde7a42156 4d1efcdde7a42156 9a00e2b03467e1ef",
    ),
    "date": (datetime.date(2024, 2, 29), "7bc421281522cf36 7bc421281522cf36 202d2e9c348d656d"),
    "timedelta": (
        datetime.timedelta(days=-1, seconds=5, microseconds=6),
        "c0a76a0344b7cc5f c0a76a0344b7cc5f a5fb4e7382971315",
    ),
    "decimal": (decimal.Decimal("-0.10"), "504191fde3c1ac69 504191fde3c1ac69 8419d96114a7fa15"),
    "uuid": (uuid.UUID(int=2**100 + 5), "9a4cdc87549e8ec3 9a4cdc87549e8ec3 82741e5bcf8e7a74"),
    "posix": (PurePosixPath("/a/b"), "9706098b6333a7bf 9706098b6333a7bf 02068dac5e2d64c0"),
    "path": (Path("a"), "b61bd815f2de6e34 b61bd815f2de6e34 2639285345fbe9ee"),
    "windows": (PureWindowsPath("C:/a"), "39fa1d2f672cda4e 39fa1d2f672cda4e 6953be66880cdb49"),
}


def _keyed(typed: bool = False) -> Any:
    return Storage(Memory()).memoize(key="k", typed=typed)(lambda *args, **kwargs: None)


@pytest.mark.parametrize("name", KEYS)
def test_each_stable_kind_has_the_same_key_in_every_run(name: str) -> None:
    # Keys are shared by processes of other runs and versions (docs/memoize.md): a change
    # of the encoding would lose every entry stored before it, silently.
    value, expected = KEYS[name]
    found = [
        _keyed().cache_key(value),
        _keyed(typed=True).cache_key(value),
        _keyed().cache_key(x=value),
    ]
    assert all(key.startswith("k:") and len(key) == 34 for key in found)
    assert " ".join(key[2:18] for key in found) == expected


def test_equal_values_share_a_key_and_the_parts_outside_equality_are_left_out() -> None:
    keyed, typed = _keyed(), _keyed(typed=True)
    shared = [
        (Spot(1, 2.0, note="a"), Spot(1, 2.0, note="b")),  # compare=False: not in the key
        (Price(decimal.Decimal(1), "EUR", "a"), Price(decimal.Decimal(1), "EUR", "b")),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({1: "a", "1": 2}, {"1": 2, 1: "a"}),
        ({"x", "y"}, {"y", "x"}),
        (Path("a/b"), PurePosixPath("a/b")),  # equal paths: one key
    ]
    for left, right in shared:
        assert keyed.cache_key(left) == keyed.cache_key(right), left
        assert typed.cache_key(left) == typed.cache_key(right), left
    # Untyped, numbers equal as Python compares them share a key; typed, they do not.
    for left, right in [(True, 1), (False, 0), (1.0, 1), (-2.0, -2), ({1.0}, {True})]:
        assert keyed.cache_key(left) == keyed.cache_key(right), (left, right)
        assert typed.cache_key(left) != typed.cache_key(right), (left, right)
    assert keyed.cache_key(frozenset({1})) == keyed.cache_key({1})
    assert typed.cache_key(frozenset({1})) != typed.cache_key({1})
    # Keyword arguments too.
    assert keyed.cache_key(x=1) == keyed.cache_key(x=1.0) == keyed.cache_key(x=True)
    assert len({typed.cache_key(x=1), typed.cache_key(x=1.0), typed.cache_key(x=True)}) == 3
    assert typed.cache_key(True) != typed.cache_key(False)


def test_values_that_differ_get_keys_that_differ() -> None:
    keyed = _keyed()
    different = [
        Spot(1, 2.0),
        Spot(1, 3.0),
        Price(decimal.Decimal(1), "EUR"),
        Price(decimal.Decimal(1), "USD"),
        Span(1, 2),
        Span(2, 1),
        Shade.DARK,
        Shade.LIGHT,
        Shade,
        Spot,
        datetime.datetime(2024, 10, 27, 2, 30, tzinfo=PARIS),
        datetime.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=PARIS),
        datetime.datetime(2024, 1, 1, tzinfo=EST),
        datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
        datetime.datetime(2024, 1, 1),
        datetime.time(1),
        datetime.time(1, tzinfo=datetime.timezone.utc),
        datetime.date(2024, 1, 2),
        datetime.timedelta(seconds=1),
        datetime.timedelta(microseconds=1),
        datetime.timedelta(days=1),
        decimal.Decimal("1.0"),
        decimal.Decimal("1.00"),
        uuid.UUID(int=1),
        uuid.UUID(int=2),
        PurePosixPath("a"),
        PureWindowsPath("a"),
        "a",
        b"a",
        1.5,
        2.5,
        255,
        256,
        -1,
        {"a": 1},
        {"a": 2},
        {"b": 1},
        {1: 1},
        {2: 1},
        {1},
        {2},
        (1, 2),
        [1, 2],
        ((1,), 2),
        (1, (2,)),
    ]
    keys = [keyed.cache_key(value) for value in different]
    assert len(set(keys)) == len(different)
    assert keyed.cache_key(1, 2) != keyed.cache_key(2, 1)
    assert keyed.cache_key(a=1) != keyed.cache_key(b=1) != keyed.cache_key(1)


class Plain:
    """An object with the default repr: no stable value."""

    def __init__(self, value: int = 0) -> None:
        self.value = value


class Item:
    """Another, whose name begins with a vowel."""


def _message(error: pytest.ExceptionInfo[BaseException]) -> str:
    return str(error.value)


def test_an_argument_with_no_stable_value_is_named_in_full() -> None:
    keyed = _keyed()
    with pytest.raises(InvalidKeyError) as refused:
        keyed.cache_key(1, Plain())
    assert _message(refused) == (
        "cannot memoize a call of k: argument '#2' is a Plain, which has no stable value to "
        f"make a key from (stable values: {STABLE_KINDS}); pass key_func= to make the key "
        "yourself"
    )
    # What docs/memoize.md's table lists, in the message.
    assert STABLE_KINDS == (
        "None, bool, int, float, str, bytes, tuples, lists, dicts, sets, frozensets, enum "
        "members, dataclass and attrs instances, namedtuples, datetime values, Decimal, UUID, "
        "paths, classes"
    )


class Xylophone:
    """A class whose name begins with a consonant that is no vowel: "a Xylophone"."""


@pytest.mark.parametrize(
    ("value", "described"),
    [
        (Item(), "an Item, which has no stable value"),
        (Xylophone(), "a Xylophone, which has no stable value"),
        # A node of the syntax tree has _fields, as a namedtuple, but is no tuple.
        (ast.Name("x"), "a Name, which has no stable value"),
        (object(), "an object, which has no stable value"),
        ([1, Plain()], "a list that contains a Plain, which has no stable value"),
        ({"k": (Item(),)}, "a dict that contains an Item, which has no stable value"),
        ({Plain(): 1}, "a dict that contains a Plain, which has no stable value"),
        ({1, Plain()}, "a set that contains a Plain, which has no stable value"),
        (Spot(Plain()), "a Spot that contains a Plain, which has no stable value"),  # type: ignore[arg-type]
        (
            datetime.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo.no_cache("UTC")),
            "",  # a ZoneInfo with a key: stable
        ),
    ],
)
def test_what_an_unstable_argument_contains_is_named(value: Any, described: str) -> None:
    keyed = _keyed()
    if not described:
        assert keyed.cache_key(value).startswith("k:")
        return
    with pytest.raises(InvalidKeyError, match=r"^cannot memoize a call of k: ") as refused:
        keyed.cache_key(value)
    assert f": argument '#1' is {described} to make a key from" in _message(refused)


def _zone_file(name: str) -> Path:
    """The TZif file of a zone, where zoneinfo finds it (the test needs one to read)."""
    for folder in zoneinfo.TZPATH:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    pytest.skip(f"no time zone file for {name} on {zoneinfo.TZPATH}")


def test_a_time_zone_without_a_stable_name_is_refused() -> None:
    with _zone_file("Europe/Paris").open("rb") as file:
        unnamed = zoneinfo.ZoneInfo.from_file(file)  # no key: nothing to name it by
    with pytest.raises(InvalidKeyError) as refused:
        _keyed().cache_key(datetime.datetime(2024, 1, 1, tzinfo=unnamed))
    assert "argument '#1' is a datetime that contains a ZoneInfo, which has" in _message(refused)


# -- which argument: labels from the signature, by position where it has none ----------


def test_the_argument_is_named_by_its_parameter_or_its_position() -> None:
    storage = Storage(Memory())

    @storage.memoize(key="f")
    def f(a: Any, /, b: Any, *rest: Any, c: Any = None, **more: Any) -> None:
        raise AssertionError("never called")

    def refused(*args: Any, **kwargs: Any) -> str:
        with pytest.raises(InvalidKeyError) as error:
            f(*args, **kwargs)
        return _message(error).split(": ", 1)[1].split(" is ")[0]

    assert refused(Plain(), 1) == "argument 'a'"  # positional-only
    assert refused(1, Plain()) == "argument 'b'"
    assert refused(1, b=Plain()) == "argument 'b'"
    assert refused(1, 2, Plain()) == "argument '#3'"  # *rest has no name of its own
    assert refused(1, 2, 3, Plain()) == "argument '#4'"
    assert refused(1, 2, c=Plain()) == "argument 'c'"  # keyword-only
    assert refused(1, 2, d=[Plain()]) == "argument 'd'"
    # The first argument with no stable value is named, in the order of the call.
    assert refused(Item(), Plain()) == "argument 'a'"
    # A function whose signature cannot be read: by position.
    with pytest.raises(InvalidKeyError, match=r"argument '#2' is an object,"):
        storage.memoize(key="max")(max)(1, object())


@dataclasses.dataclass(eq=False)
class Shifty:
    """A value that has no stable encoding once, then has one: another thread changed it
    between the two encodings of a refused call."""

    value: int = 0

    def __getattribute__(self, name: str) -> Any:
        if name != "value":
            return object.__getattribute__(self, name)
        state = object.__getattribute__(self, "__dict__")
        state["reads"] = state.get("reads", 0) + 1
        return Plain() if state["reads"] == 1 else state["value"]


def test_a_refusal_names_no_argument_when_none_has_an_unstable_value_alone() -> None:
    with pytest.raises(InvalidKeyError) as refused:
        _keyed().cache_key(Shifty())
    assert _message(refused).startswith(
        "cannot memoize a call of k: an argument to make a key from (stable values: "
    )


def test_key_func_s_value_is_the_key_and_an_unstable_one_is_refused_in_full() -> None:
    storage = Storage(Memory())
    calls: list[Any] = []

    @storage.memoize(key="f", key_func=lambda p, q=0: (p.value, q))
    def f(p: Plain, q: int = 0) -> int:
        calls.append((p.value, q))
        return p.value + q

    assert [f(Plain(1)), f(Plain(1)), f(Plain(1), q=2), f(Plain(2))] == [1, 1, 3, 2]
    assert calls == [(1, 0), (1, 2), (2, 0)]
    # The key is made of key_func's value alone (typed as the memoize says).
    assert f.cache_key(Plain(1)) == f.cache_key(Plain(1), 0) != f.cache_key(Plain(2))
    assert f.cache_key(Plain(1), q=2) == f.cache_key(Plain(1), 2)
    typed = storage.memoize(key="t", typed=True, key_func=lambda x: x)(lambda x: x)
    untyped = storage.memoize(key="t", key_func=lambda x: x)(lambda x: x)
    assert typed.cache_key(1) != typed.cache_key(1.0)
    assert untyped.cache_key(1) == untyped.cache_key(1.0)

    broken = storage.memoize(key="b", key_func=lambda x: [x])(lambda x: x)
    with pytest.raises(InvalidKeyError) as refused:
        broken(Item())
    assert _message(refused) == (
        "cannot memoize a call of b: key_func returned a list that contains an Item, which has "
        f"no stable value to make a key from (stable values: {STABLE_KINDS})"
    )
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(InvalidKeyError, match="key_func returned a list that contains itself"):
        broken(looped)


# -- the function's identity: its name, and what a closure or a bound method holds -------


def module_function(x: int) -> int:
    return 2 * x


def rate_of(currency: str, rates: dict[str, float]) -> Callable[[float], float]:
    """A factory of closures, each over its own currency."""

    def convert(amount: float) -> float:
        return amount * rates[currency]

    return convert


def traced(function: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator without functools.wraps: its wrappers share one name."""

    def wrapper(*args: Any) -> Any:
        return function(*args)

    return wrapper


def _prefix(key: str) -> str:
    return key[: len(key) - 32]


def test_a_function_is_keyed_by_its_module_and_qualified_name() -> None:
    storage = Storage(Memory())
    memoized = storage.memoize()(module_function)
    assert _prefix(memoized.cache_key(1)) == "tests.test_mutation_memoize.module_function:"
    assert memoized(4) == 8 and storage[memoized.cache_key(4)] == 8
    # A builtin function is a method of its module: not looked into, not refused.
    floor = storage.memoize()(math.floor)
    assert _prefix(floor.cache_key(1.5)) == "math.floor:" and floor(1.5) == 1
    # A method of a builtin type has no module at all: None, as for exec()'s code.
    join = storage.memoize()(str.join)
    assert _prefix(join.cache_key(",", "ab")) == "None.str.join:" and join(",", "ab") == "a,b"
    # Code run by exec() without a __name__: its module is None, and keys say so.
    scope: dict[str, Any] = {}
    exec("def loose(x):\n    return x\n", scope)
    assert _prefix(storage.memoize()(scope["loose"]).cache_key(1)) == "None.loose:"


def test_closures_and_bound_methods_add_a_hash_of_what_they_hold() -> None:
    storage = Storage(Memory())
    rates = {"JPY": 150.0, "EUR": 0.5}
    jpy, eur = storage.memoize()(rate_of("JPY", rates)), storage.memoize()(rate_of("EUR", rates))
    name = "tests.test_mutation_memoize.rate_of.<locals>.convert"
    assert _prefix(jpy.cache_key(1)) == f"{name}#5106fadb46229861:"
    assert _prefix(eur.cache_key(1)) == f"{name}#c6b9c0f43a0a58cd:"
    assert [jpy(2), eur(2), jpy(2)] == [300.0, 1.0, 300.0]
    # A decorator's wrappers: told apart by what they wrap, and by what that holds.
    traced_jpy = storage.memoize()(traced(rate_of("JPY", rates)))
    traced_eur = storage.memoize()(traced(rate_of("EUR", rates)))
    traced_floor = storage.memoize()(traced(math.floor))
    wrapper = "tests.test_mutation_memoize.traced.<locals>.wrapper"
    assert _prefix(traced_jpy.cache_key(1)) == f"{wrapper}#05c3f2769bcb99ef:"
    assert _prefix(traced_eur.cache_key(1)) == f"{wrapper}#6650be267cdd19ea:"
    assert _prefix(traced_floor.cache_key(1)) == f"{wrapper}#d5643d1f5eff3e99:"
    assert [traced_jpy(2), traced_eur(2), traced_floor(2.5)] == [300.0, 1.0, 2]
    # A bound method: its object is part of the function.
    one, two = storage.memoize()(Spot(1).__eq__), storage.memoize()(Spot(2).__eq__)
    assert _prefix(one.cache_key(1)) == "tests.test_mutation_memoize.Spot.__eq__#f855472a8243da02:"
    assert _prefix(two.cache_key(1)) != _prefix(one.cache_key(1))
    assert one(Spot(1)) is True and two(Spot(1)) is False


def recursive(storage: Storage) -> Callable[[int], int]:
    """A memoized closure over itself."""

    @storage.memoize()
    def steps(n: int) -> int:
        return 0 if n == 0 else 1 + steps(n - 1)

    return steps


def keyed_early(storage: Storage) -> tuple[str, Callable[[int], int]]:
    """A memoized closure keyed before its variable is assigned."""

    @storage.memoize()
    def late_bound(n: int) -> int:
        return n + offset

    key = late_bound.cache_key(1)  # keyed while offset is not assigned yet
    offset = 10
    return key, late_bound


def test_a_recursive_closure_names_itself_and_a_variable_not_assigned_yet_is_marked() -> None:
    storage = Storage(Memory())
    first, again = recursive(storage), recursive(storage)
    assert first(5) == 5 and again(6) == 6
    name = "tests.test_mutation_memoize.recursive.<locals>.steps"
    assert _prefix(first.cache_key(1)) == _prefix(again.cache_key(1)) == f"{name}#bf3635f3dd7e8b9c:"
    key, late_bound = keyed_early(storage)
    name = "tests.test_mutation_memoize.keyed_early.<locals>.late_bound"
    assert _prefix(key) == f"{name}#648830448afeb3b1:"
    assert late_bound(1) == 11 and late_bound.cache_key(1) == key  # read once, kept


class Opaque:
    """A class whose instances have no stable value, with a method."""

    def method(self) -> int:
        return 1


def test_what_a_function_holds_without_a_stable_value_is_refused_when_decorating() -> None:
    storage = Storage(Memory())
    source = Plain(3)
    hidden = object()
    looped: list[Any] = []
    looped.append(looped)

    def over_plain() -> int:
        return source.value

    def over_object() -> object:
        return hidden

    def over_loop() -> object:
        return looped

    def over_list() -> object:
        return [source]

    name = "tests.test_mutation_memoize.test_what_a_function_holds_without_a_stable_value_is_refused_when_decorating.<locals>"  # noqa: E501
    cases = [
        (over_plain, "over_plain", "it is a closure over 'source': a Plain, which has"),
        (over_object, "over_object", "it is a closure over 'hidden': an object, which has"),
        (
            over_loop,
            "over_loop",
            "it is a closure over 'looped': a list that contains itself or is nested too deeply",
        ),
        (Opaque().method, "", "it is a method of an Opaque, which has no stable value"),
    ]
    for function, local, why in cases:
        with pytest.raises(ConfigurationError) as refused:
            storage.memoize()(function)
        who = f"{name}.{local}" if local else "tests.test_mutation_memoize.Opaque.method"
        assert _message(refused).startswith(f"cannot memoize {who}: {why}"), _message(refused)
        assert _message(refused).endswith(
            " to make a key from, so functions with this name would share results (stable "
            f"values: {STABLE_KINDS}); pass key='...' to name its entries"
        )
    with pytest.raises(ConfigurationError) as refused:
        storage.memoize()(traced(over_plain))  # through the function a wrapper holds
    assert _message(refused).startswith(
        "cannot memoize tests.test_mutation_memoize.traced.<locals>.wrapper: it is a closure "
        "over 'source': a Plain, which has no stable value"
    )
    lambda_ = lambda: 1  # noqa: E731
    with pytest.raises(ConfigurationError) as refused:
        storage.memoize()(traced(lambda_))
    assert (
        f"cannot memoize {'tests.test_mutation_memoize.traced.<locals>.wrapper'}: it is a "
        f"closure over 'function': {lambda_!r}, which has no stable name to make a key from"
    ) in _message(refused)
    # key= names the function: nothing it holds is looked into.
    assert storage.memoize(key="named")(over_plain)() == 3
    assert storage.memoize(key="named2")(Opaque().method)() == 1


def test_what_has_no_name_of_its_own_is_refused_with_the_way_to_name_it() -> None:
    storage = Storage(Memory())

    class Callable_:
        def __call__(self, x: int) -> int:
            return x

    for function in [lambda x: x, Callable_()]:
        with pytest.raises(ConfigurationError) as refused:
            storage.memoize()(function)
        assert _message(refused) == (
            f"cannot memoize {function!r}: it has no qualified name that tells it apart from "
            "other functions; pass key='...' to name its entries"
        )
    assert storage.memoize(key="c")(Callable_())(5) == 5


def test_generators_and_async_generators_are_refused_when_decorating() -> None:
    storage = Storage(Memory())

    def numbers() -> Iterator[int]:
        yield 1

    async def anumbers() -> Any:
        yield 1

    for function in (numbers, anumbers):
        with pytest.raises(ConfigurationError) as refused:
            storage.memoize()(function)
        assert _message(refused) == (
            f"cannot memoize {function!r}: a generator is consumed once; return a list"
        )


# -- a call: read, lock the key, read again, compute, store ------------------------------


class Hooked(Memory):
    """A Memory that notes each key locked and runs ``hook`` when a lock is asked for:
    what another caller (another process) does while this one waits for the lock."""

    locked: list[str]
    hook: Callable[[str], None]

    def key_lock(self, key: str) -> AbstractContextManager[Any]:
        self.locked.append(key)
        self.hook(key)
        return super().key_lock(key)


def _hooked(hook: Callable[[str], None] = lambda key: None) -> Hooked:
    backend = Hooked()
    backend.locked = []
    backend.hook = hook
    return backend


def test_a_miss_locks_its_own_key_and_a_hit_locks_nothing() -> None:
    backend = _hooked()
    storage = Storage(backend)
    calls: list[int] = []

    @storage.memoize(key="f")
    def f(x: int) -> int:
        calls.append(x)
        return x + 1

    assert [f(1), f(2), f(1), f(2)] == [2, 3, 2, 3]
    assert calls == [1, 2]
    assert backend.locked == [f.cache_key(1), f.cache_key(2)]
    assert storage[f.cache_key(1)] == 2 and len(storage) == 2


def test_a_value_stored_while_waiting_for_the_lock_is_returned_not_computed() -> None:
    storage: Storage
    backend = _hooked(lambda key: storage.set(key, "computed by another"))
    storage = Storage(backend)
    calls: list[int] = []

    @storage.memoize(key="f")
    def f(x: int) -> str:
        calls.append(x)
        return "computed here"

    assert f(1) == "computed by another"
    assert calls == []
    assert backend.locked == [f.cache_key(1)]


@pytest.mark.parametrize("kind", ["files", "sqlite"])
def test_the_function_runs_holding_the_lease_of_its_key(tmp_path: Path, kind: str) -> None:
    # The lease is what keeps other processes out (tests/test_leases.py runs them): the
    # one of this call's key, held while the function runs, given back after.
    def backend() -> Any:
        return Files(tmp_path / "f") if kind == "files" else SQLite(tmp_path / "d.db")

    storage, probe = Storage(Codec("pickle"), backend()), backend()
    held: list[bool] = []

    def is_held(key: str) -> bool:
        token = new_token()
        if probe.take_lease(key, token, 60.0) != token:
            return True
        probe.end_lease(key, token)
        return False

    @storage.memoize(key="f")
    def f(x: int) -> int:
        held.append(is_held(f.cache_key(x)))
        held.append(is_held(f.cache_key(x + 1)))
        return x

    assert f(1) == 1 and held == [True, False]
    assert not is_held(f.cache_key(1))


def test_a_result_is_stored_with_the_ttl_and_read_until_its_deadline() -> None:
    clock = FakeClock(0.0)
    storage = Storage(Expiry(clock=clock), Memory(clock=clock))
    calls: list[int] = []

    @storage.memoize(ttl=10, key="f")
    def f(x: int) -> int:
        calls.append(x)
        return len(calls)

    assert f(1) == 1
    assert storage.get_with_ttl(f.cache_key(1)) == (1, 10.0)
    clock.now = 9.999
    assert f(1) == 1
    clock.now = 10.0
    assert f(1) == 2 and calls == [1, 1]
    untimed = storage.memoize(key="g")(lambda: 5)
    assert untimed() == 5 and storage.get_with_ttl(untimed.cache_key()) == (5, None)


def test_a_plain_function_that_returns_an_awaitable_is_refused_and_it_is_closed() -> None:
    storage = Storage(Memory())
    made: list[Any] = []

    async def work() -> int:
        return 1

    class Later:
        """An awaitable that is not a coroutine: nothing to close."""

        def __await__(self) -> Iterator[Any]:
            yield from ()

    @storage.memoize(key="hidden")
    def hidden(coroutine: bool) -> Any:
        made.append(work() if coroutine else Later())
        return made[-1]

    for coroutine in (True, False):
        with pytest.raises(ConfigurationError) as refused:
            hidden(coroutine)
        assert _message(refused) == (
            "hidden returned an awaitable, which can be awaited only once: memoize an async "
            "def instead"
        )
    assert inspect.getcoroutinestate(made[0]) == inspect.CORO_CLOSED  # no "never awaited"
    assert len(storage) == 0


def test_invalidate_removes_one_call_and_cache_clear_only_this_function_s_keys() -> None:
    storage = Storage(Memory())
    f = storage.memoize(key="f")(lambda x: x * 2)
    assert [f(1), f(2)] == [2, 4]
    assert f.invalidate(1) is None
    assert list(storage) == [f.cache_key(2)]
    # Keys of this shape only: "f:" and 32 hex digits; neither longer nor shorter ones.
    near = ["f:" + "0" * 31, "f:" + "0" * 33, "g:" + "0" * 32, "f" + "0" * 33]
    for key in near:
        storage[key] = 0
    storage["f:" + "a" * 32] = 0  # of this shape: taken for this function's
    assert f.cache_clear() is None
    assert sorted(storage) == sorted(near)
    assert f.stats() == {}  # counts only with refresh=


# -- async defs: on an AsyncStorage (the backend's lock too) or a Storage (in-process) ----


def _run(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(work(), DEADLINE)

    return asyncio.run(bounded())


def test_an_async_miss_on_an_async_storage_asks_the_backend_for_its_key_s_lock() -> None:
    backend = _hooked()
    storage = AsyncStorage(backend)
    calls: list[int] = []

    @storage.memoize(key="f")
    async def f(x: int) -> int:
        calls.append(x)
        return x + 1

    async def main() -> list[int]:
        return [await f(1), await f(2), await f(1)]

    assert _run(main) == [2, 3, 2] and calls == [1, 2]
    assert backend.locked == [f.cache_key(1), f.cache_key(2)]
    assert backend.get(f.cache_key(2)) == 3


def test_an_async_miss_returns_what_was_stored_while_it_waited_for_the_lock() -> None:
    backend = _hooked(lambda key: backend.set(key, "computed by another"))
    storage = AsyncStorage(backend)
    calls: list[int] = []

    @storage.memoize(key="f")
    async def f(x: int) -> str:
        calls.append(x)
        return "computed here"

    assert _run(lambda: f(1)) == "computed by another" and calls == []


def test_an_async_def_on_a_sync_storage_locks_in_process_only_and_keeps_the_ttl() -> None:
    clock = FakeClock(0.0)
    backend = _hooked()
    storage = Storage(Expiry(clock=clock), backend)
    calls: list[int] = []

    @storage.memoize(ttl=10, key="f")
    async def f(x: int) -> int:
        calls.append(x)
        return x + 1

    assert [_run(lambda: f(1)), _run(lambda: f(1))] == [2, 2] and calls == [1]
    assert backend.locked == []
    assert storage.get_with_ttl(f.cache_key(1)) == (2, 10.0)
    clock.now = 10.0
    assert _run(lambda: f(1)) == 2 and calls == [1, 1]


def test_an_async_result_is_stored_with_the_ttl_on_an_async_storage() -> None:
    clock = FakeClock(0.0)
    storage = AsyncStorage(Expiry(clock=clock), Memory(clock=clock))

    @storage.memoize(ttl=10, key="f")
    async def f(x: int) -> int:
        return x + 1

    async def main() -> Any:
        assert await f(1) == 2
        return await storage.get_with_ttl(f.cache_key(1))

    assert _run(main) == (2, 10.0)


def test_plain_functions_are_refused_on_an_async_storage() -> None:
    storage = AsyncStorage(Memory())

    def plain(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError) as refused:
        storage.memoize()(plain)
    assert _message(refused) == (
        f"cannot memoize {plain!r} on an AsyncStorage: it caches async defs"
    )


def test_async_invalidate_and_cache_clear_are_awaited_and_clear_only_this_function() -> None:
    for storage in (AsyncStorage(Memory()), Storage(Memory())):

        @storage.memoize(key="f")
        async def f(x: int) -> int:
            return 2 * x

        async def main(storage: Any = storage, f: Any = f) -> list[str]:
            await f(1), await f(2)
            if isinstance(storage, AsyncStorage):
                await storage.set("f:" + "0" * 31, 0)
                await f.invalidate(1)
                assert not await storage.contains(f.cache_key(1))
                assert await storage.contains(f.cache_key(2))
                await f.cache_clear()
                return [key async for key in storage]
            storage.set("f:" + "0" * 31, 0)
            f.invalidate(1)
            assert f.cache_key(1) not in storage and f.cache_key(2) in storage
            f.cache_clear()
            return list(storage)

        assert _run(main) == ["f:" + "0" * 31]


def test_two_keys_never_wait_for_each_other_in_one_event_loop() -> None:
    storage = Storage(Memory())

    async def main() -> list[int]:
        second_done = asyncio.Event()

        @storage.memoize(key="f")  # a closure over an Event: named by hand
        async def f(x: int) -> int:
            if x == 1:
                await second_done.wait()  # holds key 1's lock until key 2 is computed
            else:
                second_done.set()
            return x

        first = asyncio.create_task(f(1))
        await asyncio.sleep(0)  # the first task is in f, holding its key's lock
        return [await f(2), await first]

    assert _run(main) == [2, 1]


def test_event_loops_of_other_threads_have_locks_of_their_own() -> None:
    storage = Storage(Memory())
    computing, both = threading.Barrier(2, timeout=DEADLINE), []

    @storage.memoize(key="f")
    async def f(x: int) -> int:
        computing.wait()  # each loop's caller computes at once: neither waits for the other
        both.append(x)
        return x

    threads = [threading.Thread(target=lambda: _run(lambda: f(1))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert both == [1, 1]


def test_an_event_loop_s_locks_are_forgotten_once_its_callers_are_done() -> None:
    storage = Storage(Memory())

    @storage.memoize(key="f")
    async def f(x: int) -> int:
        return x

    loop = asyncio.new_event_loop()
    assert loop.run_until_complete(f(1)) == 1
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None  # no lock table keeps a closed loop alive


# -- refresh=: records, early and stale refreshes, the stale value on an error -----------


class Refreshed:
    """A memoized function with ``refresh=``, sync on a Storage or async on an
    AsyncStorage (one event loop for the test: background tasks run on it), over one
    memory backend whose locks are noted and whose clock the test moves."""

    def __init__(self, awaited: bool, clock: FakeClock, refresh: Refresh, hook: Any) -> None:
        self.clock = clock
        self.backend = _hooked(hook)
        self.sync = Storage(Expiry(clock=self.clock), self.backend)
        self.results: list[Any] = []  # what each computation returns (or raises)
        self.calls = 0
        self.awaited = awaited
        self.loop = asyncio.new_event_loop()
        if awaited:
            storage = AsyncStorage(Expiry(clock=self.clock), self.backend)

            @storage.memoize(ttl=10, key="r", refresh=refresh)
            async def afunction() -> Any:
                return self._compute()

            self.function: Any = afunction
        else:
            self.function = self.sync.memoize(ttl=10, key="r", refresh=refresh)(self._compute)

    def _compute(self) -> Any:
        self.calls += 1
        result = self.results.pop(0)
        if callable(result):  # what happens while it computes
            result = result()
        if isinstance(result, Exception):
            raise result
        return result

    def __call__(self) -> Any:
        if not self.awaited:
            return self.function()
        return self.loop.run_until_complete(asyncio.wait_for(self.function(), DEADLINE))

    @property
    def key(self) -> str:
        key: str = self.function.cache_key()
        return key

    def record(self) -> Any:
        return self.backend.get(self.key)

    def settle(self, value: Any) -> None:
        """Wait until a background refresh (a thread or a task) stored ``value``."""
        give_up = time.monotonic() + DEADLINE
        while self.record()[0] != value:
            assert time.monotonic() < give_up, "the refresh never ran"
            if self.awaited:
                self.loop.run_until_complete(asyncio.sleep(0.001))
            else:
                time.sleep(0.001)


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def awaited(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def _refreshed(
    awaited: bool, hook: Callable[[str], None] = lambda key: None, **options: Any
) -> Refreshed:
    clock = FakeClock(0.0)
    return Refreshed(awaited, clock, Refresh(clock=clock, **options), hook)


def test_a_refreshable_result_is_a_record_kept_ttl_plus_the_grace(awaited: bool) -> None:
    memoized = _refreshed(awaited, stale=30, stale_if_error=20)
    memoized.results = [7]
    assert memoized() == 7
    assert memoized.key.startswith("r~refresh:")
    value, fresh_until, seconds = memoized.record()
    assert (value, fresh_until) == (7, 10.0) and 0 <= seconds < DEADLINE
    assert memoized.sync.get_with_ttl(memoized.key)[1] == 40.0  # ttl + the longest grace
    memoized.clock.now = 9.9
    assert memoized() == 7 and memoized.calls == 1  # fresh: read, not computed
    assert memoized.function.stats() == {
        "early_refreshes": 0,
        "stale_served": 0,
        "stale_on_error": 0,
        "refresh_errors": 0,
    }
    assert memoized.backend.locked == [memoized.key]  # the miss only


def test_a_stale_key_is_refreshed_by_its_caller_and_then_by_the_next(awaited: bool) -> None:
    memoized = _refreshed(awaited, stale=30)
    memoized.results = [1, 2, 3]
    assert memoized() == 1
    memoized.clock.now = 11.0  # expired, within the stale grace
    assert memoized() == 2  # without background=, the caller refreshes and gets it
    assert memoized.record()[:2] == [2, 21.0]
    memoized.clock.now = 22.0
    assert memoized() == 3  # its claim was given back: refreshed again
    assert memoized.function.stats()["stale_served"] == 2
    assert memoized.backend.locked == [memoized.key]  # a refresh takes no key lock


def test_a_stale_key_is_refreshed_in_the_background_while_callers_get_it(awaited: bool) -> None:
    memoized = _refreshed(awaited, stale=30, background=True)
    memoized.results = [1, 2]
    assert memoized() == 1
    memoized.clock.now = 11.0
    assert memoized() == 1  # at once, the refresh in a thread or task
    memoized.settle(2)
    assert memoized() == 2 and memoized.calls == 2
    assert memoized.function.stats()["stale_served"] == 1


def test_a_failed_stale_refresh_serves_the_stale_value_and_reports_it(awaited: bool) -> None:
    reported: list[tuple[str, str]] = []
    memoized = _refreshed(
        awaited, stale=30, on_error=lambda key, error: reported.append((key, str(error)))
    )
    memoized.results = [1, ValueError("down"), 3]
    assert memoized() == 1
    memoized.clock.now = 11.0
    assert memoized() == 1  # the refresh raised: the stale value, the error reported
    assert reported == [(memoized.key, "down")]
    assert memoized.function.stats()["refresh_errors"] == 1
    assert memoized() == 3  # the claim was given back: the next caller refreshes


def test_a_failure_past_the_grace_is_the_caller_s(awaited: bool) -> None:
    memoized = _refreshed(awaited, stale=30)
    late = ValueError("late")

    def body() -> Exception:  # the grace ends while the function runs
        memoized.clock.now = 100.0
        return late

    memoized.results = [1, body]
    assert memoized() == 1
    memoized.clock.now = 11.0
    with pytest.raises(ValueError, match="late"):
        memoized()


def test_an_expired_key_serves_its_value_if_the_function_fails_within_stale_if_error(
    awaited: bool,
) -> None:
    reported: list[tuple[str, str]] = []
    memoized = _refreshed(
        awaited, stale_if_error=30, on_error=lambda key, error: reported.append((key, repr(error)))
    )
    memoized.results = [1, ValueError("down"), ValueError("still down")]
    assert memoized() == 1
    memoized.clock.now = 11.0  # expired: recomputed as a miss, under the key's lock
    assert memoized() == 1
    assert reported == [(memoized.key, "ValueError('down')")]
    assert memoized.function.stats()["stale_on_error"] == 1
    assert memoized.backend.locked == [memoized.key, memoized.key]
    memoized.clock.now = 41.0  # past stale_if_error: missing, the error is the caller's
    with pytest.raises(ValueError, match="still down"):
        memoized()
    assert memoized.function.stats()["stale_on_error"] == 1


def test_an_expired_key_refreshed_meanwhile_is_read_under_the_lock(awaited: bool) -> None:
    memoized: Refreshed

    def refreshed_by_another(key: str) -> None:
        if memoized.clock.now:  # not the first miss: another caller refreshed it
            memoized.backend.set(key, ["another's", memoized.clock.now + 10, 0.0])

    memoized = _refreshed(awaited, hook=refreshed_by_another, stale_if_error=30)
    memoized.results = [1]
    assert memoized() == 1
    memoized.clock.now = 11.0
    assert memoized() == "another's" and memoized.calls == 1


def test_refresh_needs_a_ttl_and_the_ttl_with_its_grace_must_be_one_the_stack_keeps() -> None:
    storage = Storage(Expiry(), Memory())
    with pytest.raises(ConfigurationError) as refused:
        storage.memoize(refresh=Refresh(stale=5))
    assert _message(refused) == "refresh= refreshes entries before and after a ttl: give one"
    storage.memoize(ttl=MAX_TTL - 5, refresh=Refresh(stale=5))
    with pytest.raises(ConfigurationError, match="ttl"):
        storage.memoize(ttl=MAX_TTL - 5, refresh=Refresh(stale=6))


# -- tags=: read before computing, from the arguments or a list checked when decorating ---


def test_tags_from_the_arguments_make_only_their_calls_missing(awaited: bool) -> None:
    storage = Storage(Tags(), Memory())
    calls: list[int] = []
    if awaited:

        @AsyncStorage(storage).memoize(tags=lambda user, **options: [f"user:{user}"], key="p")
        async def aprofile(user: int, **options: Any) -> int:
            calls.append(user)
            return user

        def profile(user: int, **options: Any) -> int:
            return int(_run(lambda: aprofile(user, **options)))

    else:

        @storage.memoize(tags=lambda user, **options: [f"user:{user}"], key="p")
        def profile(user: int, **options: Any) -> int:
            calls.append(user)
            return user

    assert [profile(7), profile(8), profile(7, full=True), profile(user=9)] == [7, 8, 7, 9]
    storage.invalidate_tag("user:7")
    storage.invalidate_tag("user:9")  # its tags came from a keyword argument
    assert [profile(7), profile(8), profile(7, full=True), profile(user=9)] == [7, 8, 7, 9]
    assert calls == [7, 8, 7, 9, 7, 7, 9]


def test_tags_are_read_before_computing_on_every_kind_of_storage(awaited: bool) -> None:
    storage = Storage(Tags(), Memory())
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        storage.invalidate_tag("t")  # the data changed while the value was computed
        return len(calls)

    if awaited:

        @AsyncStorage(storage).memoize(tags=["t"], key="a")
        async def aslow() -> int:
            return compute()

        async def both() -> list[int]:
            return [await aslow(), await aslow()]

        assert _run(both) == [1, 2]  # the first result was never served again
    else:
        slow = storage.memoize(tags=["t"], key="s")(compute)
        assert [slow(), slow()] == [1, 2]

    # An async def on a sync Storage reads the tags too.
    @storage.memoize(tags=["t"], key="m")
    async def mixed() -> int:
        return compute()

    first = _run(mixed)
    assert _run(mixed) == first + 1


def test_a_list_of_tags_is_checked_when_decorating() -> None:
    storage = Storage(Tags(), Memory())
    with pytest.raises(ConfigurationError) as refused:
        storage.memoize(tags="prices")  # type: ignore[arg-type]
    assert _message(refused) == "tags is a list of str (tags=['prices']), not 'prices'"
    with pytest.raises(ConfigurationError, match="tags are str, not int: 1"):
        storage.memoize(tags=[1])  # type: ignore[list-item]
    calls: list[int] = []

    @storage.memoize(tags=("b", "a", "b"), key="f")  # any sequence: kept as a list
    def f() -> int:
        calls.append(1)
        return len(calls)

    assert f() == 1 and f() == 1
    storage.invalidate_tag("a")
    assert f() == 2


def test_a_refreshable_result_reads_its_tags_before_computing(awaited: bool) -> None:
    storage = Storage(Tags(), Expiry(), Memory())
    calls: list[int] = []

    def compute(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            storage.invalidate_tag(f"x:{x}")  # the data changed while it was computed
        return len(calls)

    options: dict[str, Any] = {
        "ttl": 60,
        "key": "r",
        "refresh": Refresh(stale=30),
        "tags": lambda x: [f"x:{x}"],
    }
    if awaited:

        @AsyncStorage(storage).memoize(**options)
        async def arefreshed(x: int) -> int:
            return compute(x)

        def refreshed(x: int) -> int:
            return int(_run(lambda: arefreshed(x)))

    else:
        refreshed = storage.memoize(**options)(compute)
    # The first result was stored with the tokens read before: missing at once.
    assert [refreshed(1), refreshed(1), refreshed(1)] == [1, 2, 2]
    storage.invalidate_tag("x:1")
    assert refreshed(1) == 3 and calls == [1, 1, 1]


def test_an_early_refresh_recomputes_before_expiry_and_is_counted(awaited: bool) -> None:
    memoized = _refreshed(awaited, early=1.0)
    memoized.results = [1, 2]
    assert memoized() == 1
    # A record that took an age to compute: XFetch recomputes it well before its expiry
    # (unless random() gives exactly 0: once in 2**53).
    memoized.backend.set(memoized.key, [1, 10.0, 1e12])
    memoized.clock.now = 5.0
    assert memoized() == 2  # without background=, its caller refreshes and gets it
    assert memoized.function.stats()["early_refreshes"] == 1
    assert memoized.function.stats()["stale_served"] == 0
    assert memoized.record()[:2] == [2, 15.0]


def test_a_refreshable_function_gets_its_keyword_arguments(awaited: bool) -> None:
    clock = FakeClock(0.0)
    storage = Storage(Expiry(clock=clock), Memory(clock=clock))
    options: dict[str, Any] = {"ttl": 10, "key": "r", "refresh": Refresh(stale=30, clock=clock)}
    if awaited:

        @AsyncStorage(storage).memoize(**options)
        async def ascale(x: int, *, by: int = 1) -> int:
            return x * by

        def scale(x: int, *, by: int = 1) -> int:
            return int(_run(lambda: ascale(x, by=by)))

    else:

        @storage.memoize(**options)
        def scale(x: int, *, by: int = 1) -> int:
            return x * by

    assert [scale(2, by=3), scale(2), scale(2, by=3)] == [6, 2, 6]
    clock.now = 11.0  # stale: refreshed by the caller, with its keyword arguments
    assert scale(2, by=5) == 10 and scale(2, by=3) == 6


def test_a_background_refresh_failing_past_the_grace_is_reported_not_raised(
    awaited: bool,
) -> None:
    reported: list[str] = []
    memoized = _refreshed(
        awaited,
        stale=30,
        background=True,
        on_error=lambda key, error: reported.append(repr(error)),
    )

    def late() -> Exception:  # the grace ends while the refresh runs
        memoized.clock.now = 100.0
        return ValueError("late")

    memoized.results = [1, late]
    assert memoized() == 1
    memoized.clock.now = 11.0
    assert memoized() == 1  # served at once; no caller waits for the refresh
    give_up = time.monotonic() + DEADLINE
    while not reported:  # a thread's or a task's: nobody is left to raise it to
        assert time.monotonic() < give_up, "the failure was never reported"
        memoized.settle(1)
    assert reported == ["ValueError('late')"]
    assert memoized.function.stats()["refresh_errors"] == 1


def test_an_expired_key_found_early_under_the_lock_is_returned(awaited: bool) -> None:
    memoized: Refreshed

    def refreshed_by_another(key: str) -> None:
        if memoized.clock.now:  # a record refreshed meanwhile, and due early
            memoized.backend.set(key, ["another's", memoized.clock.now + 10, 1e12])

    memoized = _refreshed(awaited, hook=refreshed_by_another, early=1.0)
    memoized.results = [1]
    assert memoized() == 1
    memoized.clock.now = 11.0  # expired, no grace: a miss, under the lock
    assert memoized() == "another's" and memoized.calls == 1


def test_a_background_refresh_task_is_kept_until_it_ends_and_leaves_nothing_behind() -> None:
    clock = FakeClock(0.0)
    storage = AsyncStorage(Expiry(clock=clock), Memory(clock=clock))
    release: list[asyncio.Future[int]] = []
    errors: list[str] = []

    @storage.memoize(ttl=10, key="r", refresh=Refresh(stale=30, background=True, clock=clock))
    async def value() -> int:
        if not release:
            return 1
        # A future that only this task holds: the collector would take a task nothing
        # refers to, and its refresh with it.
        return await release[0]

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: errors.append(context["message"]))
        assert await value() == 1
        release.append(loop.create_future())
        clock.now = 11.0
        assert await value() == 1
        for _ in range(3):  # the refresh task runs until it awaits the future
            await asyncio.sleep(0)
        waiter = weakref.ref(release.pop())
        gc.collect()
        pending = [
            task
            for task in asyncio.all_tasks()  # a weak set: tasks nothing else refers to go
            if getattr(task.get_coro(), "__name__", "") == "arefresh"
        ]
        assert len(pending) == 1, "the refresh task was collected"
        future = waiter()
        assert future is not None
        future.set_result(2)
        await asyncio.wait_for(asyncio.gather(*pending), DEADLINE)
        await asyncio.sleep(0)  # the done callbacks
        return await storage.get(value.cache_key())

    record = _run(main)
    assert record[0] == 2 and errors == []


def test_two_expired_keys_never_wait_for_each_other_with_refresh() -> None:
    storage = Storage(Expiry(), Memory())

    async def main() -> list[int]:
        second_done = asyncio.Event()

        @AsyncStorage(storage).memoize(ttl=10, key="f", refresh=Refresh(stale_if_error=5))
        async def f(x: int) -> int:
            if x == 1:
                await second_done.wait()  # holds key 1's lock until key 2 is computed
            else:
                second_done.set()
            return x

        first = asyncio.create_task(f(1))
        await asyncio.sleep(0)  # the first task is in f, holding its key's lock
        return [await f(2), await first]

    assert _run(main) == [2, 1]


def test_a_background_refresh_thread_never_keeps_the_process_from_exiting() -> None:
    clock = FakeClock(0.0)
    storage = Storage(Expiry(clock=clock), Memory(clock=clock))
    started, release = threading.Event(), threading.Event()

    @storage.memoize(ttl=10, key="r", refresh=Refresh(stale=30, background=True, clock=clock))
    def value() -> int:
        if clock.now:
            started.set()
            release.wait(DEADLINE)  # a refresh that hangs
        return 1

    assert value() == 1
    clock.now = 11.0
    try:
        assert value() == 1
        assert started.wait(DEADLINE)
        (refreshing,) = [t for t in threading.enumerate() if t.name.endswith("(refresh_now)")]
        assert refreshing.daemon is True  # the interpreter exits without waiting for it
    finally:
        release.set()

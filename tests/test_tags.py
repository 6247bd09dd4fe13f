"""Tags (issue 19): set(..., tags=) and invalidate_tag on every backend, sync and async,
across processes and restarts, with a memory Tier in front, and memoize(tags=...).

Each stack is a URL (``tags=1``), so that another process can open the same one; the
Redis cluster is built from layers (URLs name one server). Every table test runs on
the ``Storage`` and on an ``AsyncStorage`` of the same layers (seen through AsyncView).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pystorage
from pystorage import Storage
from pystorage.aio.storage import AsyncStorage
from pystorage.codecs import JSON, Signed
from pystorage.errors import CodecError, ConfigurationError
from pystorage.layers import LRU, Codec, Memory, Redis, SQLite, Tags, Tier
from pystorage.layers.envelope import MAGIC
from tests.conformance.async_view import AsyncView
from tests.helpers import unique

Place = Callable[[Path, pytest.FixtureRequest], str]


def _s3_url(tmp: Path, request: pytest.FixtureRequest, extra: str = "") -> str:
    options = request.getfixturevalue("s3_options")
    bucket = request.getfixturevalue("s3_bucket")
    monkeypatch = request.getfixturevalue("monkeypatch")
    # The URL names the server; the credentials come from the environment (children too).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", options["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options["aws_secret_access_key"])
    return (
        f"s3://{bucket}/{unique('tags-')}?endpoint_url={options['endpoint_url']}"
        f"&region={options['region_name']}&tags=1{extra}"
    )


def _redis_url(request: pytest.FixtureRequest, extra: str = "") -> str:
    url = request.getfixturevalue("redis_url")
    return f"{url}?prefix={unique('tags')}:&tags=1{extra}"


#: Every backend, and a memory Tier in front of each persistent one.
URLS: dict[str, Place] = {
    "memory": lambda tmp, request: "memory://?tags=1",
    "memory-json": lambda tmp, request: "memory://?codec=json&tags=1",
    "files": lambda tmp, request: f"file://{tmp}/files?tags=1",
    "files-tier": lambda tmp, request: f"file://{tmp}/files?tags=1&lru=100",
    "sqlite": lambda tmp, request: f"sqlite://{tmp}/c.db?tags=1&codec=json",
    "sqlite-tier-limited": lambda tmp, request: (
        f"sqlite://{tmp}/c.db?tags=1&lru=100&ttl=3600&limit=1000&max_bytes=10000000"
    ),
    "redis": lambda tmp, request: _redis_url(request),
    "redis-tier": lambda tmp, request: _redis_url(request, "&lru=100&codec=msgpack"),
    "s3": lambda tmp, request: _s3_url(tmp, request),
    "s3-tier": lambda tmp, request: _s3_url(tmp, request, "&lru=100"),
}
PERSISTENT = [name for name in URLS if not name.startswith("memory")]


def _cluster(request: pytest.FixtureRequest) -> Storage:
    from redis.cluster import RedisCluster

    client = RedisCluster.from_url(request.getfixturevalue("redis_cluster_url"))
    prefix = unique("tags") + ":"
    return Storage(Tags(), Codec("json", tagged=True), Redis(client, prefix=prefix))


@pytest.fixture(params=[*URLS, "redis-cluster"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Storage]:
    """A maker of the stack: each call opens it again (one store)."""
    if request.param == "redis-cluster":
        built = _cluster(request)
        return lambda: built
    url = URLS[request.param](tmp_path, request)
    return lambda: pystorage.open(url)


@pytest.fixture(params=["sync", "async"])
def storage(request: pytest.FixtureRequest, stack: Callable[[], Storage]) -> Iterator[Any]:
    sync = stack()
    if request.param == "sync":
        with sync:
            yield sync
        return
    with AsyncView(AsyncStorage(sync), sync.layers[-1]) as view:
        yield view


def test_an_invalidated_tag_makes_its_entries_missing_and_only_those(storage: Any) -> None:
    storage.set("a", {"x": 1}, tags=["user:7"])
    storage.set("b", [2], tags=["user:7", "team:1"])
    storage.set("c", "three", tags=["team:1"])
    storage["d"] = 4
    assert storage["a"] == {"x": 1} and storage.get("b") == [2]
    assert sorted(storage) == ["a", "b", "c", "d"] and len(storage) == 4

    storage.invalidate_tag("user:7")

    assert storage.get("a") is None and "a" not in storage
    with pytest.raises(KeyError):
        storage["b"]
    assert storage["c"] == "three" and storage["d"] == 4
    assert storage.get_many(["a", "b", "c", "d"]) == {"c": "three", "d": 4}
    assert set(storage.get_many_with_ttl(["a", "b", "c"])) == {"c"}
    assert sorted(storage) == ["c", "d"] and len(storage) == 2
    storage.set("a", "again", tags=["user:7"])  # written after: current
    assert storage["a"] == "again"


def test_add_incr_and_batches_with_tags(storage: Any) -> None:
    assert storage.add("k", 1, tags=["t"]) is True
    assert storage.add("k", 2, tags=["t"]) is False and storage["k"] == 1
    storage.invalidate_tag("t")
    assert storage.add("k", 3, tags=["t"]) is True  # an invalidated entry is absent
    assert storage["k"] == 3

    storage.set("n", 10, tags=["counter"])
    assert storage.incr("n") == 11  # a current entry keeps its tags...
    storage.invalidate_tag("counter")
    assert storage.get("n") is None  # ...so the invalidation reaches it
    assert storage.incr("n") == 1  # and an invalidated one counts as absent
    assert storage.incr("plain", 5) == 5 and storage.incr("plain") == 6

    storage.set_many({"p": 1, "q": 2}, tags=["pq"])
    storage.set_many({"r": 3})
    assert storage.get_many(["p", "q", "r"]) == {"p": 1, "q": 2, "r": 3}
    storage.invalidate_tag("pq")
    assert storage.get_many(["p", "q", "r"]) == {"r": 3}


def test_a_snapshot_taken_before_an_invalidation_stores_a_missing_value(storage: Any) -> None:
    before = storage.snapshot_tags(["user:7"])
    storage.invalidate_tag("user:7")  # while the value was being computed
    storage.set("late", "computed from old data", tags=before)
    assert storage.get("late") is None
    storage.set("fresh", "ok", tags=storage.snapshot_tags(["user:7"]))
    assert storage["fresh"] == "ok"


def test_expire_sweeps_invalidated_entries_out(storage: Any) -> None:
    storage.set_many({f"k{i}": i for i in range(10)}, tags=["sweep"])
    storage.set("kept", 1, tags=["other"])
    storage.invalidate_tag("sweep")
    assert storage.expire() >= 10
    assert sorted(storage) == ["kept"]


def test_tags_that_are_not_a_list_of_str_are_refused(storage: Any) -> None:
    with pytest.raises(ConfigurationError, match="list of str"):
        storage.set("k", 1, tags="user:7")
    with pytest.raises(ConfigurationError, match="str"):
        storage.set("k", 1, tags=[7])
    assert storage.get("k") is None


# -- the model: random operations against a dict ----------------------------------------

OPERATION = st.one_of(
    st.tuples(
        st.just("set"),
        st.sampled_from("abcd"),
        st.integers(-1000, 1000),  # every codec's ints
        st.sets(st.sampled_from("xyz")),
    ),
    st.tuples(st.just("invalidate"), st.sampled_from("xyz")),
    st.tuples(st.just("delete"), st.sampled_from("abcd")),
)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(OPERATION, max_size=20))
def test_random_operations_match_a_model(storage: Any, operations: list[Any]) -> None:
    storage.clear()
    model: dict[str, tuple[int, set[str]]] = {}
    for operation in operations:
        if operation[0] == "set":
            _, key, value, tags = operation
            storage.set(key, value, tags=sorted(tags))
            model[key] = (value, tags)
        elif operation[0] == "invalidate":
            storage.invalidate_tag(operation[1])
            model = {key: entry for key, entry in model.items() if operation[1] not in entry[1]}
        else:
            storage.pop(operation[1], None)
            model.pop(operation[1], None)
        assert storage.get_many("abcd") == {key: value for key, (value, _) in model.items()}
    assert sorted(storage) == sorted(model)


# -- across processes and restarts ----------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    import pystorage

    url, action = sys.argv[1], sys.argv[2]
    with pystorage.open(url) as storage:
        if action == "invalidate":
            storage.invalidate_tag("user:7")
        elif action == "write":
            storage.set("from-child", "hello", tags=["user:7"])
    """
)


def _child(url: str, action: str) -> None:
    subprocess.run([sys.executable, "-c", CHILD, url, action], check=True, timeout=120)


@pytest.mark.parametrize("name", PERSISTENT)
def test_another_process_invalidates_and_this_one_misses_at_once(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = URLS[name](tmp_path, request)
    with pystorage.open(url) as storage:
        storage.set("profile", {"name": "Ada"}, tags=["user:7"])
        storage.set("other", "kept", tags=["user:8"])
        assert storage["profile"] == {"name": "Ada"}  # now in the memory front, if any
        _child(url, "write")
        assert storage["from-child"] == "hello"  # the child's tokens are this one's

        _child(url, "invalidate")

        assert storage.get("profile") is None and storage.get("from-child") is None
        assert storage["other"] == "kept"


@pytest.mark.parametrize("name", PERSISTENT)
def test_tags_hold_across_a_restart(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = URLS[name](tmp_path, request)
    with pystorage.open(url) as first:
        first.set("a", 1, tags=["t"])
        first.set("b", 2, tags=["u"])
    with pystorage.open(url) as second:  # a new process would open it the same way
        assert second["a"] == 1
        second.invalidate_tag("t")
    with pystorage.open(url) as third:
        assert third.get("a") is None and third["b"] == 2


@pytest.mark.parametrize("name", ["sqlite-tier-limited", "redis-tier", "s3-tier"])
def test_an_async_stack_misses_after_another_process_invalidates(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = URLS[name](tmp_path, request)

    async def main() -> tuple[Any, Any]:
        async with pystorage.open_async(url) as storage:
            await storage.set("k", "v", tags=["user:7"])
            first = await storage.get("k")
            await asyncio.to_thread(_child, url, "invalidate")
            return first, await storage.get("k")

    assert asyncio.run(main()) == ("v", None)


# -- memoize ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sqlite-tier-limited", "redis", "files"])
def test_memoize_tags_from_the_arguments_and_a_static_list(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    calls: list[Any] = []
    with pystorage.open(URLS[name](tmp_path, request)) as storage:

        @storage.memoize(tags=lambda user_id: [f"user:{user_id}"])
        def profile(user_id: int) -> dict[str, int]:
            calls.append(user_id)
            return {"id": user_id}

        @storage.memoize(tags=["prices"])
        def price(item: str) -> int:
            calls.append(item)
            return len(item)

        assert [profile(7), profile(7), profile(8), price("ab"), price("ab")] == [
            {"id": 7},
            {"id": 7},
            {"id": 8},
            2,
            2,
        ]
        storage.invalidate_tag("user:7")
        storage.invalidate_tag("prices")
        profile(7), profile(8), price("ab")
        assert calls == [7, 8, "ab", 7, "ab"]


def test_memoize_stores_as_missing_what_an_invalidation_overtook(tmp_path: Path) -> None:
    storage = pystorage.open(f"sqlite://{tmp_path}/c.db?tags=1")
    calls = []

    @storage.memoize(tags=["t"], key="slow")
    def slow() -> int:
        calls.append(1)
        storage.invalidate_tag("t")  # the data changed while this ran
        return len(calls)

    assert slow() == 1 and slow() == 2  # the first result was never served


def test_async_memoize_with_tags(tmp_path: Path) -> None:
    async def main() -> list[int]:
        calls: list[int] = []
        async with pystorage.open_async(f"sqlite://{tmp_path}/c.db?tags=1") as storage:

            @storage.memoize(tags=lambda x: [f"x:{x}"])
            async def double(x: int) -> int:
                calls.append(x)
                return 2 * x

            await double(1), await double(1), await double(2)
            await storage.invalidate_tag("x:1")
            await double(1), await double(2)
        return calls

    assert asyncio.run(main()) == [1, 2, 1]


# -- what a stack without tags answers, and what is refused ---------------------------


def test_a_stack_without_a_tags_layer_refuses_tags_instead_of_dropping_them(
    tmp_path: Path,
) -> None:
    plain = pystorage.open(f"sqlite://{tmp_path}/c.db")
    for call in (
        lambda: plain.set("k", 1, tags=["t"]),
        lambda: plain.add("k", 1, tags=["t"]),
        lambda: plain.set_many({"k": 1}, tags=["t"]),
        lambda: plain.invalidate_tag("t"),
        lambda: plain.snapshot_tags(["t"]),
        lambda: plain.memoize(tags=["t"]),
    ):
        with pytest.raises(ConfigurationError, match="no Tags layer"):
            call()
    assert "k" not in plain

    async def main() -> None:
        async with AsyncStorage(Memory()) as storage:
            with pytest.raises(ConfigurationError, match="no Tags layer"):
                await storage.set("k", 1, tags=["t"])

    asyncio.run(main())


def test_stacks_that_would_serve_stale_values_or_unframed_ones_are_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigurationError, match="tagged=True"):
        Storage(Tags(), Codec("json"), SQLite(tmp_path / "a.db"))
    with pytest.raises(ConfigurationError, match="none is above"):
        Storage(Codec("json", tagged=True), SQLite(tmp_path / "a.db"))
    with pytest.raises(ConfigurationError, match="Tier cannot sit above Tags"):
        Storage(Tier(LRU(10)), Tags(), Memory())
    with pytest.raises(ConfigurationError, match="signed codec"):
        Codec(JSON() | Signed("a secret of sixteen bytes at least"), tagged=True)
    with pytest.raises(ConfigurationError, match="above the Codec"):
        Storage(Codec("json"), Tags(), Memory())


def test_tags_over_a_backend_that_keeps_no_tokens_is_refused_when_built() -> None:
    from tests.user_layers import DictBackend

    with pytest.raises(ConfigurationError, match="lacks the 'tags' capability"):
        Storage(Tags(), DictBackend())


def test_values_are_always_framed_and_unframed_ones_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with pystorage.open(f"sqlite://{path}?codec=json") as plain:
        plain["old"] = MAGIC.decode("latin-1")  # a value, written without tags
    with pystorage.open(f"sqlite://{path}?codec=json&tags=1") as tagged:
        tagged["untagged"] = "x"
        with pytest.raises(CodecError, match="not written through a Tags layer"):
            tagged["old"]
        assert tagged["untagged"] == "x"
    with pystorage.open(f"sqlite://{path}?codec=json") as plain, pytest.raises(CodecError):
        plain["untagged"]  # a frame is no JSON


def test_a_user_value_that_is_an_envelope_comes_back_as_written() -> None:
    from pystorage.layers.envelope import Envelope

    storage = Storage(Tags(), Memory())
    own = Envelope((("t", "forged"),), "inside")
    storage.set("k", own)
    assert storage["k"] is own  # wrapped like any value: never taken for ours


def test_tag_records_are_never_entries(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    for name in ("files", "sqlite", "redis", "s3"):
        with pystorage.open(URLS[name](tmp_path / name, request)) as storage:
            storage.set("k", 1, tags=["t" * 300, "ü/../x", ""])
            storage.invalidate_tag("t" * 300)
            assert list(storage) == [] and len(storage) == 0
            # the records stay out of listings of the stack without Tags too
            assert list(storage.layers[-1].keys()) == ["k"]


@pytest.mark.parametrize("name", PERSISTENT)
def test_clear_leaves_other_storages_alone(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with (
        pystorage.open(URLS[name](tmp_path / "one", request)) as one,
        pystorage.open(URLS[name](tmp_path / "two", request)) as two,
    ):
        one.set("k", 1, tags=["t"])
        two.set("k", 2, tags=["t"])
        one.invalidate_tag("t")
        assert one.get("k") is None and two["k"] == 2


def test_the_url_puts_tags_on_top_of_stats_and_tier(tmp_path: Path) -> None:
    storage = pystorage.open(f"sqlite://{tmp_path}/c.db?tags=1&stats=1&lru=5&ttl=60")
    kinds = [type(layer).__name__ for layer in storage.layers]
    assert kinds == ["Tags", "Stats", "Expiry", "Tier", "Codec", "SQLite"]
    assert storage.layers[4].tagged  # type: ignore[attr-defined]
    assert os.path.exists(tmp_path / "c.db")


def test_every_kind_of_preset_takes_tags_true(tmp_path: Path) -> None:
    from pystorage import StorageProvider as Provider

    provider = Provider()
    made = {
        "sqlite-limited": provider.create(
            Provider.STORAGE_SQLITE, path=tmp_path / "a.db", limit=10, expiration=60, tags=True
        ),
        "disklru": provider.create(Provider.STORAGE_DISKLRU, path=tmp_path / "d", tags=True),
        "memory": provider.create(Provider.STORAGE_MEMORY, tags=True),
        "lru-over-json": provider.create(
            Provider.STORAGE_LRU,
            maxsize=10,
            storage=provider.create(Provider.STORAGE_JSON, path=tmp_path / "j"),
            tags=True,
        ),
        "pickle-stats": provider.create(
            Provider.STORAGE_PICKLE, path=tmp_path / "p", stats=True, tags=True
        ),
    }
    for name, storage in made.items():
        assert type(storage.layers[0]).__name__ == "Tags", name
        storage.set("a", 1, tags=["t"])
        storage["b"] = 2
        storage.invalidate_tag("t")
        assert (storage.get("a"), storage["b"]) == (None, 2), name
    with pytest.raises(ConfigurationError, match="signed codec"):
        provider.create(Provider.STORAGE_PICKLE, path=tmp_path / "s", secret="x" * 20, tags=True)


def test_memoize_with_refresh_and_tags(tmp_path: Path) -> None:
    from pystorage import Refresh

    storage = pystorage.open(f"sqlite://{tmp_path}/c.db?tags=1")
    calls: list[int] = []

    @storage.memoize(ttl=60, refresh=Refresh(stale=30), tags=lambda x: [f"x:{x}"])
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [square(3), square(3)] == [9, 9]
    storage.invalidate_tag("x:3")
    assert square(3) == 9 and calls == [3, 3]


def _copy(src: str, dst: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from pystorage.cli import main

    status = main(["copy", "-q", src, dst])
    return status, capsys.readouterr().err


def test_copy_keeps_each_entrys_tags_and_time_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src_url = f"file://{tmp_path}/src?codec=json&tags=1"
    dst_url = f"sqlite://{tmp_path}/dst.db?codec=json&tags=1"
    with pystorage.open(src_url) as src:
        src.set("profile:7", {"name": "Ada"}, tags=["user:7"])
        src.set("orders:7", [101], ttl=600, tags=["user:7", "orders"])
        src.set("profile:8", {"name": "Bob"}, tags=["user:8"])
        src.set("plain", 1)
        src.set("gone", 2, tags=["old"])
        src.invalidate_tag("old")  # missing in SRC: not copied
    status, err = _copy(src_url, dst_url, capsys)
    assert status == 0, err
    assert "copied 4," in err
    with pystorage.open(dst_url) as dst:
        assert dict(dst) == {
            "profile:7": {"name": "Ada"},
            "orders:7": [101],
            "profile:8": {"name": "Bob"},
            "plain": 1,
        }
        ttl = dst.get_with_ttl("orders:7")[1]
        assert ttl is not None and 590 < ttl <= 600
        assert dst.get_with_ttl("profile:7")[1] is None
        dst.invalidate_tag("user:7")  # DST's own tokens: SRC is untouched
        assert dict(dst) == {"profile:8": {"name": "Bob"}, "plain": 1}
        dst.invalidate_tag("orders")
        dst.invalidate_tag("user:8")
        assert dict(dst) == {"plain": 1}
    with pystorage.open(src_url) as src:
        assert len(src) == 4


def test_copy_from_tags_to_a_store_without_them_is_refused_before_dst_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src_url = f"sqlite://{tmp_path}/src.db?codec=json&tags=1"
    with pystorage.open(src_url) as src:
        src.set("k", 1, tags=["t"])
    status, err = _copy(src_url, f"sqlite://{tmp_path}/dst.db?codec=json", capsys)
    assert status == 2
    assert err == (
        "pystorage: error: SRC keeps tags (tags=1) and DST does not: its entries would lose "
        "their tags, and invalidate_tag would no longer reach them. Add tags=1 to DST\n"
    )
    assert not (tmp_path / "dst.db").exists()


def test_get_many_tagged_reads_values_deadlines_and_tag_names() -> None:
    storage = Storage(Tags(), Codec("json", tagged=True), Memory())
    storage.set("a", 1, tags=["y", "x"])
    storage.set("b", 2, ttl=60)
    storage.set("c", 3, tags=["z"])
    storage.invalidate_tag("z")
    tags_layer = storage.top
    assert isinstance(tags_layer, Tags)
    found = tags_layer.get_many_tagged(["a", "b", "c", "absent"])
    assert found.keys() == {"a", "b"}
    assert found["a"] == (1, None, ["x", "y"])
    value, ttl, tags = found["b"]
    assert (value, tags) == (2, [])
    assert ttl is not None and 59 < ttl <= 60

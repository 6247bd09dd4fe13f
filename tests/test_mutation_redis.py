"""The Redis backend, pinned where `make mutation MODULE=redis` found it unpinned (issue 24).

Against the real servers of tests/conftest.py. Failures are provoked for real too: a client
of a port where nothing listens (connection refused, with redis-py's retries turned off so
that each takes milliseconds), a user of the server whose ACL refuses one command, or a
reply the server refuses (a lease longer than Redis counts).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from pystorage import Storage
from pystorage.errors import (
    BackendError,
    ConfigurationError,
    InvalidKeyError,
    ValueTooLargeError,
)
from pystorage.layers import Codec, CountLimit, Redis
from pystorage.layers import redis as redis_layer
from pystorage.testing import free_port
from tests.helpers import unique


@pytest.fixture
def prefix() -> str:
    return unique("mut:") + ":"


def _nowhere() -> tuple[redis.Redis, str]:
    """A client of a port where nothing listens, failing at once; and its endpoint."""
    port = free_port()
    client = redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    return client, f"127.0.0.1:{port}/0"


def _failure(call: Callable[[], Any]) -> BackendError:
    with pytest.raises(BackendError) as caught:
        call()
    return caught.value


# -- every failure names the server, the action and the key ----------------------------------


def _bounded(backend: Redis, eviction: str = "used") -> Redis:
    assert backend.take_bound("entries", 10, eviction)
    return backend


def test_every_failure_names_the_server_the_action_and_the_key() -> None:
    client, endpoint = _nowhere()
    backend = Redis(client, prefix="down:")
    actions: dict[str, Callable[[], Any]] = {
        "read 'k'": lambda: backend.get("k"),
        "read 'k2'": lambda: backend.get_with_ttl("k2"),
        "read 2 keys": lambda: backend.get_many(["a", "b"]),
        "read 3 keys": lambda: backend.get_many_with_ttl(["a", "b", "c", "a"]),
        "write 'k'": lambda: backend.set("k", b"v"),
        "write 'k3'": lambda: backend.set("k3", b"v", ttl=5),
        "write 2 keys": lambda: backend.set_many({"a": b"1", "b": b"2"}),
        "write 3 keys": lambda: backend.set_many({"a": b"1", "b": b"2", "c": b"3"}, ttl=5),
        "delete 'k'": lambda: backend.delete("k"),
        "delete 2 keys": lambda: backend.delete_many(["a", "b"]),
        "add 'k'": lambda: backend.add("k", b"v"),
        "modify 'k'": lambda: backend.modify("k", lambda old: b"1"),
        "check 'k'": lambda: backend.contains("k"),
        "list keys": lambda: list(backend.keys()),
        "read the tokens of 2 tags": lambda: backend.tag_tokens(["t", "u"], True),
        "invalidate the tag 't'": lambda: backend.renew_tag("t"),
        "take the lock of key 'k'": lambda: backend.take_lease("k", "token", 1.0),
        "release the lock of key 'k'": lambda: backend.end_lease("k", "token"),
    }
    for action, call in actions.items():
        error = _failure(call)
        assert isinstance(error.__cause__, redis.ConnectionError)
        assert str(error) == f"Redis at {endpoint}: cannot {action}: {error.__cause__}"


def test_every_failure_of_a_bounded_store_names_the_action_and_the_key() -> None:
    client, endpoint = _nowhere()
    backend = _bounded(Redis(client, prefix="down:"))
    actions: dict[str, Callable[[], Any]] = {
        "read 'k'": lambda: backend.get("k"),
        "read 2 keys": lambda: backend.get_many(["a", "b"]),
        "write 'k'": lambda: backend.set("k", b"v"),
        "write 2 keys": lambda: backend.set_many({"a": b"1", "b": b"2"}),
        "delete 'k'": lambda: backend.delete("k"),
        "delete 2 keys": lambda: backend.delete_many(["a", "b"]),
        "add 'k'": lambda: backend.add("k", b"v"),
        "modify 'k'": lambda: backend.modify("k", lambda old: b"1"),
    }
    for action, call in actions.items():
        error = _failure(call)
        assert str(error) == f"Redis at {endpoint}: cannot {action}: {error.__cause__}"


@pytest.fixture
def limited_user(client: redis.Redis, redis_url: str) -> Iterator[Callable[..., redis.Redis]]:
    """Clients of users of the server allowed every command but those named."""
    users: list[str] = []

    def make(*refused: str) -> redis.Redis:
        user = unique("mutuser")
        users.append(user)
        refusals = [f"-{command}" for command in refused]
        client.execute_command("ACL", "SETUSER", user, "reset", "on", ">secret", "~*", "&*")
        client.execute_command("ACL", "SETUSER", user, "+@all", *refusals)
        host, port = redis_url.split("//")[1].split("/")[0].split(":")
        return redis.Redis(host=host, port=int(port), username=user, password="secret")

    yield make
    for user in users:
        client.acl_deluser(user)


def test_a_failure_to_measure_or_to_clear_the_books_says_so(
    limited_user: Callable[..., redis.Redis], prefix: str, redis_url: str
) -> None:
    writer = Redis(url=redis_url, prefix=prefix)
    writer.set("k", b"value")
    measuring = Redis(limited_user("strlen"), prefix=prefix)
    error = _failure(measuring.sizes_by_age)
    assert str(error).endswith(f": cannot measure the values: {error.__cause__}"), str(error)
    clearing = _bounded(Redis(limited_user("eval", "evalsha"), prefix=unique("mut:") + ":"))
    error = _failure(clearing.clear)  # no entry to delete: the books are what fails
    assert str(error).endswith(f": cannot clear the books: {error.__cause__}"), str(error)
    writer.delete("k")


def test_a_refused_command_is_a_backend_error_not_a_missing_key(
    limited_user: Callable[..., redis.Redis], prefix: str
) -> None:
    backend = Redis(limited_user("get"), prefix=prefix)
    error = _failure(lambda: backend.get("k"))
    assert ": cannot read 'k': " in str(error) and "no permissions" in str(error)


@pytest.mark.parametrize("kind", ["server", "cluster"])
def test_an_error_of_the_server_names_it(kind: str, redis_url: str, redis_cluster_url: str) -> None:
    # A lease Redis cannot count in milliseconds: the server refuses the PX.
    if kind == "cluster":
        client: Any = RedisCluster.from_url(redis_cluster_url)
        host, port = redis_cluster_url.split("//")[1].split("/")[0].split(":")
        where = "cluster "
    else:
        client = redis.Redis.from_url(redis_url)
        where = redis_url.split("//")[1]
    backend = Redis(client, prefix=unique("mut:") + ":")
    error = _failure(lambda: backend.take_lease("k", "token", 1e30))
    assert str(error).startswith(f"Redis at {where}"), str(error)
    assert ": cannot take the lock of key 'k': " in str(error)
    if kind == "cluster":  # every node it knows, as host:port
        named = str(error).split(": cannot")[0].removeprefix("Redis at cluster ").split(",")
        nodes = {f"{node.host}:{node.port}" for node in client.get_nodes()}
        assert f"{host}:{port}" in named and set(named) == nodes and len(nodes) == 3
    client.close()


def test_a_unix_socket_is_named_by_its_path(tmp_path: Any) -> None:
    path = str(tmp_path / "no-server.sock")
    backend = Redis(redis.Redis(unix_socket_path=path, retry=Retry(NoBackoff(), 0)))
    assert str(_failure(lambda: backend.get("k"))).startswith(f"Redis at unix:{path}: ")


# -- options ---------------------------------------------------------------------------------


def test_how_long_an_async_task_waits_for_a_connection(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert Redis(client, pool_timeout=2.5).connection_wait() == 2.5
    assert Redis(client, pool_timeout=0.5).connection_wait() == 0.5  # below a second too
    with pytest.raises(ConfigurationError) as caught:
        Redis()
    assert str(caught.value) == "Redis needs a client= or a url="
    with pytest.raises(ConfigurationError) as caught:
        Redis(client, redis_url)
    assert str(caught.value) == "give Redis a client= or a url=, not both"
    assert Redis(client).connection_wait() == 20.0  # none given
    assert Redis(url=f"{redis_url}?timeout=3").connection_wait() == 3.0
    assert Redis(redis.Redis.from_url(redis_url, timeout=0.5)).connection_wait() == 0.5
    for unusable in ("0", "-1"):
        assert Redis(url=f"{redis_url}?timeout={unusable}").connection_wait() == 20.0
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigurationError) as caught:
            Redis(client, pool_timeout=bad)
        assert str(caught.value) == (
            f"pool_timeout must be a finite positive number of seconds, not {bad!r}"
        )
    with pytest.raises(ConfigurationError) as caught:
        Redis(client, autopipeline=1)  # type: ignore[arg-type]
    assert str(caught.value) == "autopipeline must be True or False, not 1"
    client.close()


def test_the_kind_of_client(redis_url: str, redis_cluster_url: str) -> None:
    plain = Redis(url=redis_url)
    assert (plain.client_is_cluster, plain.client_is_async, plain.owned) == (False, False, True)
    cluster = Redis(RedisCluster.from_url(redis_cluster_url))
    assert (cluster.client_is_cluster, cluster.client_is_async) == (True, False)
    assert cluster.owned is False
    assert not Redis(redis.Redis.from_url(redis_url)).owned
    cluster.client.close()
    plain.close()


def _connected(client: redis.Redis, name: str) -> bool:
    return any(entry.get("name") == name for entry in client.client_list())


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)  # polling the server's list of clients, up to the deadline


def test_close_closes_the_client_it_made_and_only_that(client: redis.Redis, redis_url: str) -> None:
    made_name, given_name = unique("made"), unique("given")
    made = Redis(url=f"{redis_url}?client_name={made_name}")
    given_client = redis.Redis.from_url(redis_url, client_name=given_name)
    given = Redis(given_client)
    made.contains("k"), given.contains("k")
    assert _connected(client, made_name) and _connected(client, given_name)
    made.close()
    given.close()
    _wait_for(lambda: not _connected(client, made_name), "the client made was not closed")
    assert _connected(client, given_name)  # still the caller's to use
    given_client.close()


# -- what is written, read and counted -------------------------------------------------------


def test_milliseconds_round_up_and_never_reach_zero() -> None:
    assert redis_layer._milliseconds(1.0004) == 1001
    assert redis_layer._milliseconds(2.5) == 2500
    assert redis_layer._milliseconds(0.0001) == 1
    assert redis_layer._optional_milliseconds(None) is None
    assert redis_layer._optional_milliseconds(3) == 3000
    assert redis_layer._seconds_left(-1) is None
    assert redis_layer._seconds_left(b"1500") == 1.5
    assert redis_layer._seconds_left(0) == 0


@pytest.mark.parametrize("bounded", [False, True])
def test_a_ttl_reaches_redis_in_milliseconds(
    client: redis.Redis, prefix: str, bounded: bool
) -> None:
    backend = Redis(client, prefix=prefix)
    if bounded:
        _bounded(backend, "stored")
    backend.set("one", b"1", ttl=100)
    backend.set_many({"two": b"2", "three": b"3"}, ttl=200)
    assert backend.add("four", b"4", ttl=300)
    backend.modify("five", lambda old: b"5", ttl=400)
    for key, seconds in (("one", 100), ("two", 200), ("three", 200), ("four", 300), ("five", 400)):
        left = client.pttl(f"{prefix}{key}")
        assert seconds * 1000 - 5000 < left <= seconds * 1000, (key, left)
        _, ttl = backend.get_with_ttl(key)
        assert ttl is not None and seconds - 5 < ttl <= seconds
    backend.set("none", b"n")
    assert client.pttl(f"{prefix}none") == -1
    assert backend.get_with_ttl("none") == (b"n", None)
    assert backend.get_many_with_ttl(["none", "missing"]) == {"none": (b"n", None)}
    backend.clear()


def test_a_value_at_its_last_millisecond_is_gone(client: redis.Redis, prefix: str) -> None:
    # PTTL answers 0 only in the last millisecond: taken for expired, by both reads. A
    # read lands in that millisecond in about one try in ten (a round trip after the
    # write of a key of 1 ms): 300 tries each, never a value with 0 seconds left.
    backend = Redis(client, prefix=prefix)
    for _ in range(300):
        client.set(f"{prefix}k", b"v", px=1)
        try:
            _, left = backend.get_with_ttl("k")
        except KeyError:
            continue
        assert left is not None and 0 < left <= 0.001
    for _ in range(300):
        client.set(f"{prefix}k", b"v", px=1)
        for _, left in backend.get_many_with_ttl(["k"]).values():
            assert left is not None and 0 < left <= 0.001


def test_modify_replaces_a_key_of_another_type_as_a_new_entry(
    client: redis.Redis, prefix: str
) -> None:
    backend = Redis(client, prefix=prefix)
    client.hset(f"{prefix}h", "field", "value")
    seen: list[Any] = []

    def change(old: Any) -> bytes:
        seen.append(old)
        return b"new"

    assert backend.modify("h", change, ttl=50) == b"new"
    assert seen == [redis_layer.ABSENT]
    assert client.get(f"{prefix}h") == b"new" and 45_000 < client.pttl(f"{prefix}h") <= 50_000
    client.set(f"{prefix}kept", b"1", px=80_000)
    assert backend.modify("kept", lambda old: old + b"2", ttl=5) == b"12"
    assert 70_000 < client.pttl(f"{prefix}kept") <= 80_000  # the deadline stays
    client.delete(f"{prefix}h", f"{prefix}kept")


# -- the books of a bound kept by the server ---------------------------------------------------


def test_the_books_live_under_the_prefix_with_their_names(client: redis.Redis, prefix: str) -> None:
    # Every process (and version) writing the prefix with a bound shares these records.
    backend = _bounded(Redis(client, prefix=prefix), "stored")
    backend.set_many({"a": b"12", "b": b"345"}, ttl=100)
    raw = prefix.encode() + b"\xff"
    assert set(client.zrange(raw + b"order", 0, -1)) == {prefix.encode() + k for k in (b"a", b"b")}
    assert client.hgetall(raw + b"sizes") == {
        prefix.encode() + b"a": b"2",
        prefix.encode() + b"b": b"3",
    }
    assert int(client.hget(raw + b"totals", "bytes")) == 5  # type: ignore[arg-type]
    assert client.zcard(raw + b"ends") == 2
    backend.clear()
    assert client.exists(raw + b"order", raw + b"sizes", raw + b"ends") == 0


def test_the_bounds_a_store_keeps_and_how_it_says_so(client: redis.Redis, prefix: str) -> None:
    backend = Redis(client, prefix=prefix)
    assert (backend.bounds, backend.eviction, backend.removes_entries) == ({}, None, False)
    assert backend.counters() == {}
    assert backend.take_bound("entries", 10, "used") is True
    assert backend.take_bound("entries", 7, "used") is True  # the smaller of two
    assert backend.take_bound("entries", 9, "used") is True
    assert backend.take_bound("bytes", 100, "used") is True
    assert backend.bounds == {"entries": 7, "bytes": 100}
    assert backend.eviction == "used" and backend.removes_entries is True
    assert backend.counters() == {"evictions": 0}
    with pytest.raises(ConfigurationError) as caught:
        backend.take_bound("bytes", 50, "stored")
    assert str(caught.value) == (
        "two limits over one Redis must evict in the same order ('used' and 'stored')"
    )
    assert backend.bounds == {"entries": 7, "bytes": 100}
    with pytest.raises(ValueTooLargeError) as too_large:
        backend.set("big", b"x" * 101)
    assert str(too_large.value) == (
        "the value of 'big' weighs 101 bytes, more than the whole limit of 100: not stored"
    )
    backend.set("fits", b"x" * 100)
    assert backend.get("fits") == b"x" * 100


def test_a_bound_redis_does_not_keep_says_why(redis_url: str, redis_cluster_url: str) -> None:
    plain = Redis(url=redis_url, prefix=unique("mut:") + ":")
    assert plain.bound_per_process() == (
        "a layer between the limit and Redis (such as a Tier, whose front would "
        "outlive Redis's evictions) keeps the bound from Redis's own index"
    )
    assert plain.take_bound("entries", 5, "tinylfu") is False
    assert plain.bounds == {} and plain.eviction is None
    assert plain.bound_per_process() == (
        "Redis keeps a shared bound in order of use or of writes; "
        "eviction='tinylfu' is not kept in Redis (yet): use 'used' or 'stored'"
    )
    cluster = Redis(RedisCluster.from_url(redis_cluster_url), prefix=unique("mut:") + ":")
    assert cluster.take_bound("entries", 5, "used") is False
    assert cluster.bounds == {} and cluster.eviction is None
    assert cluster.bound_per_process() == (
        "on a Redis Cluster, one index of every key would pin them all to one slot "
        "and undo the sharding. Bound the servers instead: maxmemory with "
        "maxmemory-policy allkeys-lru (or allkeys-lfu) on every node"
    )
    cluster.client.close()
    plain.close()


def test_reads_are_uses_only_with_eviction_by_use(client: redis.Redis) -> None:
    for eviction, evicted in (("used", "b"), ("stored", "a")):
        prefix = unique("mut:") + ":"
        backend = Redis(client, prefix=prefix)
        assert backend.take_bound("entries", 2, eviction)
        backend.set("a", b"1")
        backend.set("b", b"2")
        assert backend.get("a") == b"1"
        assert backend.get_many(["a", "missing"]) == {"a": b"1"}
        assert backend.get_with_ttl("a") == (b"1", None)
        assert backend.get_many_with_ttl(["a"]) == {"a": (b"1", None)}
        backend.set("c", b"3")
        assert sorted(backend.keys()) == sorted({"a", "b", "c"} - {evicted}), eviction
        assert backend.counters() == {"evictions": 1}
        with pytest.raises(KeyError):
            backend.get(evicted)
        backend.clear()


def test_a_bounded_store_adds_counts_and_deletes(client: redis.Redis, prefix: str) -> None:
    backend = _bounded(Redis(client, prefix=prefix), "stored")
    assert backend.add("a", b"1") is True
    assert backend.add("a", b"2") is False
    assert backend.get("a") == b"1"
    assert backend.modify("n", lambda old: b"1") == b"1"
    assert backend.modify("n", lambda old: old + b"0") == b"10"
    backend.delete("a")
    with pytest.raises(KeyError):
        backend.delete("a")
    assert sorted(backend.keys()) == ["n"]
    raw = prefix.encode() + b"\xff"
    assert client.zrange(raw + b"order", 0, -1) == [prefix.encode() + b"n"]
    backend.clear()


@pytest.mark.parametrize("bounded", [False, True])
def test_more_than_a_batch_of_entries(client: redis.Redis, prefix: str, bounded: bool) -> None:
    # 2,345 entries: listings, sizes, clear and the books go a thousand at a time.
    entries = {f"k{n}": b"x" * (n % 7) for n in range(2345)}
    client.mset({f"{prefix}{key}": value for key, value in entries.items()})
    backend = Redis(client, prefix=prefix)
    if bounded:  # entered in the books at the first write, every one of them
        assert backend.take_bound("entries", 3000, "stored")
        backend.set("new", b"")
        entries["new"] = b""
        assert client.zcard(prefix.encode() + b"\xfforder") == len(entries)
    assert sorted(backend.sizes_by_age()) == sorted((k, len(v)) for k, v in entries.items())
    scans = _calls(client, "scan")
    assert len(list(backend.keys())) == len(entries)
    # A thousand names asked per SCAN: the whole database in about one per thousand keys.
    assert _calls(client, "scan") - scans <= client.dbsize() // 200 + 5
    backend.clear()
    assert list(backend.keys()) == [] and client.exists(f"{prefix}k0", f"{prefix}k2344") == 0
    if bounded:
        assert client.zcard(prefix.encode() + b"\xfforder") == 0


# -- tags and leases ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["server", "cluster"])
def test_tag_tokens_are_made_once_and_renewed(
    kind: str, redis_url: str, redis_cluster_url: str
) -> None:
    client: Any = (
        RedisCluster.from_url(redis_cluster_url)
        if kind == "cluster"
        else redis.Redis.from_url(redis_url)
    )
    prefix = unique("mut:") + ":"
    backend = Redis(client, prefix=prefix)
    assert backend.tag_tokens([], True) == {}
    assert backend.tag_tokens(["t", "u"], False) == {}
    made = backend.tag_tokens(["t", "u"], True)
    assert set(made) == {"t", "u"} and made["t"] != made["u"]
    assert all(isinstance(token, str) and token for token in made.values())
    assert backend.tag_tokens(["u", "t", "v"], False) == made
    assert client.get(prefix.encode() + b"\xfftag:t") == made["t"].encode()
    backend.renew_tag("t")
    renewed = backend.tag_tokens(["t", "u"], False)
    assert renewed["u"] == made["u"] and renewed["t"] not in ("", made["t"])
    assert list(backend.keys()) == []  # never entries
    client.delete(prefix.encode() + b"\xfftag:t", prefix.encode() + b"\xfftag:u")
    client.close()


def test_a_lease_is_taken_held_and_given_back_by_its_token(
    client: redis.Redis, prefix: str, redis_url: str
) -> None:
    backend = Redis(client, prefix=prefix)
    name = prefix.encode() + b"\xfflock:k"
    assert backend.take_lease("k", "mine", 30) == "mine"
    assert client.get(name) == b"mine" and 25_000 < client.pttl(name) <= 30_000
    assert backend.take_lease("k", "yours", 30) == "mine"  # held: the holder's token
    backend.end_lease("k", "yours")
    assert client.get(name) == b"mine"  # not given back by another token
    backend.end_lease("k", "mine")
    assert client.exists(name) == 0
    for attempt in range(10):  # at least a millisecond, never 0 (no expiry)
        assert backend.take_lease(f"brief{attempt}", "brief", 0.0001) == "brief"
        assert client.pttl(prefix.encode() + b"\xfflock:brief%d" % attempt) <= 1
    decoding = Redis(redis.Redis.from_url(redis_url, decode_responses=True), prefix=prefix)
    assert decoding.take_lease("other", "tok", 30) == "tok"
    assert decoding.take_lease("other", "late", 30) == "tok"
    decoding.end_lease("other", "tok")
    assert client.exists(prefix.encode() + b"\xfflock:other") == 0
    decoding.close()


def test_an_empty_value_of_a_bounded_store_is_deleted_evicted_and_cleared(
    client: redis.Redis, prefix: str
) -> None:
    # Its size, 0, was taken back as -0, which Redis refuses: every delete, eviction and
    # clear that reached it failed, and so did every write once it was the least recent.
    storage = Storage(CountLimit(2, eviction="stored"), Codec("raw"), Redis(client, prefix=prefix))
    storage["e"] = b""
    del storage["e"]
    storage.set_many({"e": b"", "f": b""})
    storage["g"] = b"1"  # evicts "e"
    assert sorted(storage) == ["f", "g"]
    assert storage.stats()["evictions"] == 1
    storage.delete_many(["f"])
    storage["h"] = b""
    storage.clear()
    assert len(storage) == 0
    assert int(client.hget(prefix.encode() + b"\xfftotals", "bytes")) == 0  # type: ignore[arg-type]


# -- what a missing key names, what a batch sends ---------------------------------------------


def _missing(call: Callable[[], Any]) -> tuple[Any, ...]:
    with pytest.raises(KeyError) as caught:
        call()
    return caught.value.args


@pytest.mark.parametrize("eviction", [None, "used"])
def test_a_missing_key_is_named(client: redis.Redis, prefix: str, eviction: str | None) -> None:
    backend = Redis(client, prefix=prefix)
    if eviction:
        _bounded(backend, eviction)
    client.hset(f"{prefix}hash", "field", "value")
    assert _missing(lambda: backend.get("nope")) == ("nope",)
    assert _missing(lambda: backend.get("hash")) == ("hash",)  # another type: no entry
    assert _missing(lambda: backend.get_with_ttl("nope")) == ("nope",)
    assert _missing(lambda: backend.delete("nope")) == ("nope",)
    assert _missing(lambda: backend.delete("hash")) == ("hash",)
    client.delete(f"{prefix}hash")


def _calls(client: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_batches_are_plain_pipelines_that_hold_no_other_client_up(
    client: redis.Redis, prefix: str
) -> None:
    backend = Redis(client, prefix=prefix)
    backend.set_many({"a": b"1", "b": b"22"})
    before = _calls(client, "multi")
    assert backend.get_many_with_ttl(["a", "b", "c"]) == {"a": (b"1", None), "b": (b"22", None)}
    assert sorted(backend.sizes_by_age()) == [("a", 1), ("b", 2)]
    assert set(backend.tag_tokens(["t", "u"], True)) == {"t", "u"}
    assert _calls(client, "multi") == before  # no MULTI/EXEC: nothing waits for them
    backend.clear()


def test_more_than_a_batch_is_a_script_per_thousand(client: redis.Redis, prefix: str) -> None:
    entries = {f"{prefix}k{n}": b"x" for n in range(2345)}
    client.mset(entries)
    backend = Redis(client, prefix=prefix)
    before = _calls(client, "eval")
    backend.clear()  # a script deletes the strings among 1,000 names at a time
    assert _calls(client, "eval") - before == 3
    client.mset(entries)
    bounded = _bounded(Redis(client, prefix=prefix), "stored")
    for script in (redis_layer._WRITING, redis_layer._ENTERING):
        client.script_load(script.source)
    before = _calls(client, "evalsha")
    bounded.set("new", b"")  # refused until the books are entered: 3 scripts, then again
    assert _calls(client, "evalsha") - before == 5
    bounded.clear()


def test_writers_that_overlap_agree_on_a_tag_token(redis_url: str) -> None:
    # Another writer gives the tag its token between this one's read and its write: the
    # write (SET NX) keeps theirs, and both use it.
    prefix = unique("mut:") + ":"
    name = prefix.encode() + b"\xfftag:t"

    class Overtaken(redis.Redis):
        def mget(self, *args: Any, **kwargs: Any) -> Any:
            found = super().mget(*args, **kwargs)
            redis.Redis.set(self, name, b"theirs", nx=True)
            return found

    client = Overtaken.from_url(redis_url)
    backend = Redis(client, prefix=prefix)
    assert backend.tag_tokens(["t"], True) == {"t": "theirs"}
    client.delete(name)
    client.close()


def test_names_beside_the_entries_take_any_key(client: redis.Redis, prefix: str) -> None:
    backend = Redis(client, prefix=prefix)
    odd = "\ud800é"  # a lone surrogate, as keys may hold
    assert backend.take_lease(odd, "tok", 30) == "tok"
    encoded = odd.encode("utf-8", "surrogatepass")
    assert client.get(prefix.encode() + b"\xfflock:" + encoded) == b"tok"
    backend.end_lease(odd, "tok")
    assert set(backend.tag_tokens([odd], True)) == {odd}
    assert client.exists(prefix.encode() + b"\xfftag:" + encoded) == 1
    client.delete(prefix.encode() + b"\xfftag:" + encoded)
    for call in (lambda: backend.key_lock(3), lambda: backend.tag_tokens([3], True)):  # type: ignore[arg-type, list-item]
        with pytest.raises(InvalidKeyError) as caught:
            call()
        assert str(caught.value) == "keys are str, not int: 3"


@pytest.mark.parametrize("kind", ["server", "cluster", "bounded"])
def test_modify_reads_again_when_another_client_wrote_meanwhile(
    kind: str, redis_url: str, redis_cluster_url: str
) -> None:
    # WATCH, GET, then MULTI/SET/EXEC: a write by another client between the GET and the
    # EXEC (here, from inside the change) fails the EXEC, and the change runs again.
    client: Any = (
        RedisCluster.from_url(redis_cluster_url)
        if kind == "cluster"
        else redis.Redis.from_url(redis_url)
    )
    other: Any = (
        RedisCluster.from_url(redis_cluster_url)
        if kind == "cluster"
        else redis.Redis.from_url(redis_url)
    )
    prefix = unique("mut:") + ":"
    backend = Redis(client, prefix=prefix)
    if kind == "bounded":
        _bounded(backend, "stored")
    backend.set("n", b"1")
    seen: list[Any] = []

    def change(old: Any) -> bytes:
        seen.append(old)
        if len(seen) == 1:
            other.set(f"{prefix}n", b"5")
        return old + b"0"

    assert backend.modify("n", change) == b"50"
    assert seen == [b"1", b"5"]
    assert backend.get("n") == b"50"
    backend.clear()
    client.close()
    other.close()


def test_a_bounded_modify_keeps_the_deadline_in_redis_and_in_the_books(
    client: redis.Redis, prefix: str
) -> None:
    backend = _bounded(Redis(client, prefix=prefix), "stored")
    backend.set("k", b"1", ttl=100)
    assert backend.modify("k", lambda old: old + b"2", ttl=5) == b"12"
    assert 90_000 < client.pttl(f"{prefix}k") <= 100_000
    (server_seconds, micros) = client.time()
    now = server_seconds * 1000 + micros // 1000
    ends = client.zscore(prefix.encode() + b"\xffends", f"{prefix}k")
    assert ends is not None and 90_000 < ends - now <= 100_000  # evicted as it expires
    assert backend.modify("new", lambda old: b"1", ttl=50) == b"1"
    assert 45_000 < client.pttl(f"{prefix}new") <= 50_000
    backend.clear()


def test_scripts_the_server_does_not_have_are_sent_in_full(
    client: redis.Redis, prefix: str
) -> None:
    # EVALSHA first; a server that restarted (or flushed its scripts) answers NOSCRIPT,
    # and the script goes again in full, which also caches it.
    backend = _bounded(Redis(client, prefix=prefix), "used")
    operations: list[Callable[[], Any]] = [
        lambda: backend.set("a", b"1"),
        lambda: backend.set_many({"b": b"2", "c": b"3"}),
        lambda: backend.get("a"),
        lambda: backend.get_many(["a", "b"]),
        lambda: backend.add("d", b"4"),
        lambda: backend.delete("d"),
        lambda: backend.delete_many(["c"]),
        lambda: backend.take_lease("k", "tok", 30),
        lambda: backend.end_lease("k", "tok"),
        lambda: backend.clear(),
    ]
    results = []
    for operation in operations:
        client.script_flush()
        results.append(operation())
    assert results == [
        None,
        None,
        b"1",
        {"a": b"1", "b": b"2"},
        True,
        None,
        None,
        "tok",
        None,
        None,
    ]
    assert list(backend.keys()) == [] and client.exists(prefix.encode() + b"\xfflock:k") == 0
    client.script_flush()
    fresh = _bounded(Redis(client, prefix=unique("mut:") + ":"), "stored")
    client.set(f"{fresh.prefix}old", b"x")
    fresh.set("new", b"y")  # the books entered first: the scripts of entering, in full
    assert sorted(fresh.keys()) == ["new", "old"]
    fresh.clear()


def test_the_evictions_of_every_write_are_counted(client: redis.Redis, prefix: str) -> None:
    backend = _bounded(Redis(client, prefix=prefix), "stored")
    assert backend.take_bound("entries", 1, "stored")
    backend.set("a", b"1")
    backend.set("b", b"2")  # evicts a
    assert backend.counters() == {"evictions": 1}
    assert backend.modify("c", lambda old: b"3") == b"3"  # evicts b
    assert backend.counters() == {"evictions": 2}
    assert backend.add("d", b"4") is True  # evicts c
    backend.set_many({"e": b"5"})  # evicts d
    assert backend.counters() == {"evictions": 4}
    assert list(backend.keys()) == ["e"]
    backend.clear()


@pytest.mark.parametrize("read", ["get", "get_many", "get_with_ttl", "get_many_with_ttl"])
def test_each_read_is_a_use_with_eviction_by_use(client: redis.Redis, read: str) -> None:
    backend = Redis(client, prefix=unique("mut:") + ":")
    assert backend.take_bound("entries", 2, "used")
    backend.set("a", b"1")
    backend.set("b", b"2")
    reads: dict[str, Callable[[], Any]] = {
        "get": lambda: backend.get("a"),
        "get_many": lambda: backend.get_many(["a"]),
        "get_with_ttl": lambda: backend.get_with_ttl("a"),
        "get_many_with_ttl": lambda: backend.get_many_with_ttl(["a"]),
    }
    reads[read]()  # "a" is now the most recent
    backend.set("c", b"3")
    assert sorted(backend.keys()) == ["a", "c"]
    backend.clear()


@pytest.mark.parametrize(
    ("special", "neighbour"),
    [("\\", ":n"), ("*", "zz:n"), ("?", "z:n"), ("[", "x:n"), ("]", "x:n")],
)
def test_each_glob_character_of_a_prefix_is_itself(
    client: redis.Redis, special: str, neighbour: str
) -> None:
    # A prefix is SCANned as a MATCH pattern: each of its glob characters escaped, so its
    # listing holds its own keys, and never a neighbour's that the pattern would match.
    base = unique("g")
    client.set(f"{base}{neighbour}", b"not mine")
    storage = Storage(Codec("text"), Redis(client, prefix=f"{base}{special}:"))
    storage["k"] = "mine"
    assert list(storage) == ["k"] and len(storage) == 1
    storage.clear()
    assert client.get(f"{base}{neighbour}") == b"not mine"
    client.delete(f"{base}{neighbour}")


def test_without_redis_py_the_layer_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # as if redis-py were not installed
    with pytest.raises(ImportError) as caught:
        Redis(url=redis_url)
    assert str(caught.value) == "Redis needs redis-py: pip install 'pystorage-layers[redis]'"


def test_prefixes_and_keys_with_lone_surrogates(client: redis.Redis) -> None:
    prefix = unique("\ud800") + ":"
    backend = Redis(client, prefix=prefix)
    backend.set("\udfff", b"v")
    assert backend.get("\udfff") == b"v" and list(backend.keys()) == ["\udfff"]
    raw = prefix.encode("utf-8", "surrogatepass") + "\udfff".encode("utf-8", "surrogatepass")
    assert client.get(raw) == b"v"
    for call in (lambda: backend.get(3), lambda: backend.set(3, b"v")):  # type: ignore[arg-type]
        with pytest.raises(InvalidKeyError) as caught:
            call()
        assert str(caught.value) == "keys are str, not int: 3"
    backend.clear()


def test_prefixes_are_refused_with_what_is_wrong() -> None:
    client = redis.Redis()  # never connects: every case is refused or only built
    with pytest.raises(ConfigurationError) as caught:
        Redis(client, prefix=3)  # type: ignore[arg-type]
    assert str(caught.value) == "prefix must be a str, not 3"
    with pytest.raises(ConfigurationError) as caught:
        Redis(client, prefix="")
    assert str(caught.value) == (
        'prefix="" makes every string key of the database an entry of this storage, '
        "and clear() would delete them all: give a prefix such as 'app:', or pass "
        "whole_database=True if the database is this storage's alone"
    )
    with pytest.raises(ConfigurationError) as caught:
        Redis(client, prefix="app:", whole_database=True)
    assert str(caught.value) == 'whole_database=True goes with prefix="" only'
    with pytest.raises(ConfigurationError) as caught:
        Redis(client, prefix="app")
    assert str(caught.value) == (
        "prefix 'app' must end with ':' (e.g. 'app:'): otherwise it also covers the "
        "entries of every prefix that starts with it, such as 'app:' or 'appx:'"
    )
    assert Redis(client, prefix="", whole_database=True).prefix == ""
    assert Redis(client, prefix="app:").prefix == "app:"


def test_a_failure_names_the_database() -> None:
    port = free_port()
    backend = Redis(redis.Redis(host="127.0.0.1", port=port, db=3, retry=Retry(NoBackoff(), 0)))
    assert str(_failure(lambda: backend.get("k"))).startswith(f"Redis at 127.0.0.1:{port}/3: ")

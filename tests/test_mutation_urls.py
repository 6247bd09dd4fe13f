"""What a URL is read as, option by option (issue 24: `make mutation MODULE=urls`).

Each test pins what ``parse`` reads from a URL (the options, their defaults, the codec and
its secrets), the stack ``build`` makes of it (layers and their order, with and without
the limits and the layers that read values), and the words of each refusal, which name
the option and the URL with its secrets hidden. Redis and S3 layers are made without
connecting: these tests claim nothing about the servers. No test name (or parameter id)
says "redis" or "s3": the mutation selection (pyproject.toml) leaves those out as tests of
servers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import attrs
import pytest

import pystorage
from pystorage import AsyncStorage, Storage, codecs
from pystorage.errors import ConfigurationError, StorageProviderError
from pystorage.layers import Memory
from pystorage.layers.base import MAX_TTL
from pystorage.urls import ParsedURL, open_async, open_url, parse, redact

SECRET = "a-secret-of-sixteen-bytes"
OLDER = "an-older-secret-of-sixteen-bytes"


REDACT_IDS: dict[str, int] = {}


def _shape(storage: Storage | AsyncStorage) -> list[str]:
    """The layers of a stack, each with its options (layers compare by identity)."""
    return [repr(layer) for layer in storage.layers]


def _refusal(url: Any) -> str:
    with pytest.raises(StorageProviderError) as error:
        parse(url)
    return str(error.value)


# -- what a URL is read as ------------------------------------------------------------


def test_the_defaults_of_a_url() -> None:
    parsed = parse("memory://")
    assert (parsed.shown, parsed.codec, parsed.codec_named) == ("memory://", None, False)
    assert (parsed.ttl, parsed.limit, parsed.max_bytes, parsed.lru) == (None, None, None, None)
    assert (parsed.eviction, parsed.stats, parsed.folder) == ("used", False, None)
    assert repr(parsed.make_backend()) == "Memory()"
    assert parse("sqlite:///tmp/a.db").codec == codecs.Pickle()
    assert parse("sqlite:///tmp/a.db").codec_named is False
    assert parse("sqlite:///tmp/a.db").folder is None  # a folder only for file://


def test_every_layer_option_is_read() -> None:
    parsed = parse(
        "file:///tmp/some%20folder?ttl=1.5&limit=7&max_bytes=900&eviction=stored&lru=4&stats=1"
        "&codec=json"
    )
    assert parsed.folder == Path("/tmp/some folder")
    assert (parsed.ttl, parsed.limit, parsed.max_bytes) == (1.5, 7, 900)
    assert (parsed.eviction, parsed.lru, parsed.stats) == ("stored", 4, True)
    assert parsed.codec == codecs.JSON() and parsed.codec_named is True


def test_secrets_sign_the_codec_newest_first() -> None:
    one = parse(f"memory://?codec=json&secret={SECRET}")
    assert one.codec == codecs.JSON() | codecs.Signed(SECRET) and one.codec_named
    two = parse(f"file:///tmp/f?secret={SECRET}&secret={OLDER}")
    assert two.codec == codecs.Pickle() | codecs.Signed([SECRET, OLDER])
    assert two.codec_named is True  # secret= chose a signed codec
    assert two.codec.stages[-1].secret == (SECRET.encode(), OLDER.encode())  # type: ignore[attr-defined]
    assert two.shown == "file:///tmp/f?secret=***&secret=***"


def test_an_empty_secret_is_refused_not_left_out() -> None:
    """``secret=`` with no value would otherwise store values unsigned."""
    for query in ("codec=json&secret=", f"codec=json&secret=&secret={SECRET}"):
        with pytest.raises(StorageProviderError) as error:
            parse(f"memory://?{query}")
        assert str(error.value).endswith("': a signing secret needs at least 16 bytes")


def test_a_signed_url_reads_what_it_wrote_and_refuses_another_secret(tmp_path: Path) -> None:
    pystorage.open(f"file://{tmp_path}?codec=json&secret={SECRET}")["k"] = [1]
    rotated = pystorage.open(f"file://{tmp_path}?codec=json&secret={OLDER}&secret={SECRET}")
    assert rotated["k"] == [1]
    with pytest.raises(pystorage.errors.CodecError):
        pystorage.open(f"file://{tmp_path}?codec=json&secret={OLDER}")["k"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("True", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("FALSE", False),
    ],
)
def test_flags(text: str, value: bool) -> None:
    assert parse(f"memory://?stats={text}").stats is value
    backend: Any = parse(f"file:///tmp/f?trust_others={text}").make_backend()
    assert backend.trust_others is value
    backend = parse(f"sqlite:///tmp/f.db?trust_others={text}").make_backend()
    assert backend.trust_others is value
    backend = parse(f"redis://h/0?autopipeline={text}").make_backend()
    assert backend.autopipeline is value


def test_a_bad_flag_names_the_option() -> None:
    assert _refusal("memory://?stats=2").endswith("stats= must be 1 or 0, not '2'")
    assert _refusal("file:///tmp/f?trust_others=y").endswith(
        "trust_others= must be 1 or 0, not 'y'"
    )
    assert _refusal("sqlite:///tmp/f.db?trust_others=").endswith(
        "trust_others= must be 1 or 0, not ''"
    )
    assert _refusal("redis://h/0?autopipeline=on").endswith(
        "autopipeline= must be 1 or 0, not 'on'"
    )


def test_counts() -> None:
    assert parse("memory://?limit=1").limit == 1
    assert parse("memory://?codec=raw&max_bytes=12").max_bytes == 12
    assert parse("file:///tmp/f?lru=30").lru == 30
    for name in ("limit", "lru", "max_bytes"):
        for text in ("0", "-1", "1.0", "x", "", "²"):
            assert _refusal(f"file:///tmp/f?{name}={text}") == (
                f"'file:///tmp/f?{name}={text}': {name}= must be a positive whole number, "
                f"not {text!r}"
            )


def test_seconds() -> None:
    assert parse("memory://?ttl=0.5").ttl == 0.5
    assert parse("memory://?ttl=3").ttl == 3.0
    assert parse("sqlite:///tmp/f.db?timeout=2.5").make_backend().timeout == 2.5  # type: ignore[attr-defined]
    for text in ("0", "-1", "x", "1_0", " 5", "5 ", "inf", "nan", "\u0665"):
        message = _refusal(f"memory://?ttl={text}")
        assert message.endswith(
            f"ttl= must be a finite number of seconds above 0 and at most {MAX_TTL} "
            f"(100 years), not {text!r}"
        ), message
    assert "timeout= must be a finite number" in _refusal("sqlite:///tmp/f.db?timeout=0")


def test_eviction() -> None:
    for policy in ("used", "stored", "tinylfu"):
        assert parse(f"memory://?eviction={policy}").eviction == policy
    assert _refusal("memory://?eviction=lfu") == (
        "'memory://?eviction=lfu': eviction= must be one of used, stored, tinylfu, not 'lfu'"
    )


def test_an_option_given_twice_is_refused_but_secret() -> None:
    assert _refusal("memory://?ttl=1&ttl=2") == "'memory://?ttl=1&ttl=2': ttl= is given twice"
    assert parse(f"memory://?codec=json&secret={SECRET}&secret={SECRET}").codec is not None


def test_unknown_options_are_listed_sorted() -> None:
    assert _refusal("memory://?x=1&b=2&a") == "'memory://?x=1&b=2&a': unknown options a, b, x"


def test_what_needs_a_codec() -> None:
    assert _refusal(f"memory://?secret={SECRET}") == (
        "'memory://?secret=***': secret= needs a codec= to sign"
    )
    assert _refusal("memory://?max_bytes=3") == (
        "'memory://?max_bytes=3': max_bytes= weighs encoded values: it needs a codec="
    )


def test_refusals_of_the_url_itself() -> None:
    assert _refusal(3) == "a storage URL is a str, not 3"
    assert _refusal(b"memory://") == "a storage URL is a str, not b'memory://'"
    assert _refusal("bogus://") == (
        "'bogus://': unknown scheme; known: file://, memory://, redis://, rediss://, s3://, "
        "sqlite://, unix://"
    )
    message = _refusal("redis://h:port/0")
    assert message.startswith("'redis://h:port/0': not a valid URL: ")
    with pytest.raises(StorageProviderError) as error:
        parse("redis://h:port/0")
    assert isinstance(error.value.__cause__, ConfigurationError)
    assert error.value.__cause__.__cause__ is None and error.value.__cause__.__suppress_context__


# -- redact ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@host:1/0", "redis://user:***@host:1/0"),
        ("redis://:pw@host/0", "redis://:***@host/0"),
        ("redis://a@b:pw@host/0", "redis://a@b:***@host/0"),
        ("redis://user:p:w@host", "redis://user:***@host"),
        ("redis://user@host/0", "redis://user@host/0"),
        ("redis://host/0/x?db=1", "redis://host/0/x?db=1"),
        ("memory://?secret=x&password=y&prefix=p", "memory://?secret=***&password=***&prefix=p"),
        ("memory://?sec%72et=z&x&secret", "memory://?sec%72et=***&x&secret"),
        ("memory://?passw+ord=z&pass%77ord=q", "memory://?passw+ord=z&pass%77ord=***"),
        ("memory://?", "memory://?"),
        ("memory://", "memory://"),
        ("no-scheme:pw@x?secret=s", "no-scheme:pw@x?secret=***"),
        ("", ""),
        # A path with ":" and "@" is no password; a "://" in it is no second scheme; a
        # secret with "=" in it is hidden whole.
        ("redis://host/a:b@c", "redis://host/a:b@c"),
        ("redis://u:p@h/x://y", "redis://u:***@h/x://y"),
        ("memory://?secret=a=b&x=1=2", "memory://?secret=***&x=1=2"),
    ],
    ids=lambda case: f"case-{REDACT_IDS.setdefault(case, len(REDACT_IDS))}",
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


# -- build ----------------------------------------------------------------------------


def test_build_puts_each_layer_in_its_place(tmp_path: Path) -> None:
    url = f"file://{tmp_path}?ttl=5&limit=3&lru=4&stats=1&codec=json&suffix=.j"
    assert _shape(pystorage.open(url)) == [
        "Stats()",
        "Expiry(ttl=5.0)",
        "CountLimit(eviction='used', limit=3)",
        "Tier(front=LRU(maxsize=4))",
        "Codec(codec=JSON())",
        f"Files(path={tmp_path!r}, suffix='.j', fsync=False, max_value_bytes=1073741824, "
        "trust_others=False)",
    ]


def test_a_size_limit_keeps_the_tier_below_it(tmp_path: Path) -> None:
    url = f"file://{tmp_path}?max_bytes=100&lru=2&eviction=tinylfu&codec=raw"
    assert _shape(pystorage.open(url))[:3] == [
        "Codec(codec=Raw())",
        "SizeLimit(eviction='tinylfu', max_bytes=100)",
        "Tier(front=TinyLFU(maxsize=2))",
    ]
    storage = pystorage.open(url)
    storage["a"] = b"x" * 60
    storage["b"] = b"y" * 60
    assert list(storage) == ["b"] or list(storage) == ["a"]
    assert len(storage) == 1


def test_build_without_limits_or_values(tmp_path: Path) -> None:
    parsed = parse(f"file://{tmp_path}?ttl=5&limit=3&lru=4&max_bytes=50&codec=json&eviction=stored")
    assert _shape(parsed.build(limit=False)) == [
        "Expiry(ttl=5.0)",
        "Tier(front=LRU(maxsize=4))",
        "Codec(codec=JSON())",
        _shape(parsed.build())[-1],
    ]
    assert _shape(parsed.build(values=False))[:3] == [
        "CountLimit(eviction='stored', limit=3)",
        "Codec(codec=Raw())",
        "SizeLimit(eviction='stored', max_bytes=50)",
    ]
    assert len(parsed.build(values=False).layers) == 4
    assert _shape(parsed.build(limit=False, values=False))[0] == "Codec(codec=Raw())"
    assert len(parsed.build(limit=False, values=False).layers) == 2
    raw = parse("memory://").build(values=False)
    assert _shape(raw) == ["Memory()"]  # no codec to replace


def test_values_false_returns_values_as_stored(tmp_path: Path) -> None:
    pystorage.open(f"file://{tmp_path}?codec=json")["k"] = {"a": 1}
    parsed = parse(f"file://{tmp_path}?codec=json&ttl=60&lru=3")
    assert parsed.build(values=False)["k"] == b'{"a": 1}'
    assert parsed.build()["k"] == {"a": 1}


def test_limits_without_a_size_limit_put_the_tier_above_the_codec(tmp_path: Path) -> None:
    shape = _shape(pystorage.open(f"file://{tmp_path}?lru=2&eviction=tinylfu"))
    assert shape[:2] == ["Tier(front=TinyLFU(maxsize=2))", "Codec(codec=Pickle(protocol=5))"]
    shape = _shape(pystorage.open(f"file://{tmp_path}?lru=2&eviction=stored&limit=5"))
    assert shape[:2] == ["CountLimit(eviction='stored', limit=5)", "Tier(front=LRU(maxsize=2))"]


def test_memory_tier_by_eviction() -> None:
    for eviction, kind in [("used", "LRU"), ("stored", "LRU"), ("tinylfu", "TinyLFU")]:
        parsed = parse(f"file:///tmp/f?eviction={eviction}")
        assert repr(parsed.memory_tier(3)) == f"{kind}(maxsize=3)"


def test_a_backend_that_cannot_be_made_names_the_url() -> None:
    parsed = parse("s3://bucket/folder?region=no%20such%20region&endpoint_url=http://h:1")
    with pytest.raises(StorageProviderError) as error:
        parsed.build()
    assert str(error.value).startswith(
        "'s3://bucket/folder?region=no%20such%20region&endpoint_url=http://h:1': "
    )
    assert isinstance(error.value.__cause__, ValueError)


def test_a_refused_stack_closes_the_backend_it_made() -> None:
    closed = []

    class Refused(Memory):
        client_is_async = True  # Storage refuses an async client

        def close(self) -> None:
            closed.append(True)
            super().close()

    parsed = attrs.evolve(parse("memory://"), make_backend=Refused)
    with pytest.raises(ConfigurationError):
        parsed.build()
    assert closed == [True]


def test_open_url_and_open_async(tmp_path: Path) -> None:
    storage = open_url(f"file://{tmp_path}?codec=json&stats=1")
    assert isinstance(storage, Storage)
    storage["k"] = 1
    assert pystorage.open is open_url
    aio = open_async(f"file://{tmp_path}?codec=json&stats=1")
    assert isinstance(aio, AsyncStorage)
    assert _shape(aio)[0] == "AsyncStats()"
    assert asyncio.run(aio.get("k")) == 1
    with pytest.raises(StorageProviderError, match="unknown scheme"):
        open_async("nope://")


# -- the backends ---------------------------------------------------------------------


def test_memory_urls() -> None:
    assert _shape(pystorage.open("memory://?lru=3")) == ["LRU(maxsize=3)"]
    assert _shape(pystorage.open("memory://?lru=3&eviction=tinylfu")) == ["TinyLFU(maxsize=3)"]
    assert _shape(pystorage.open("memory://?lru=3&eviction=used")) == ["LRU(maxsize=3)"]
    assert parse("memory://?lru=3").lru is None  # the memory is bounded, no tier
    assert _refusal("memory://?lru=3&eviction=stored") == (
        "'memory://?lru=3&eviction=stored': memory://?lru= evicts by use (or "
        "eviction=tinylfu); for the oldest write first, use limit= with eviction=stored"
    )
    assert _refusal("memory://?lru=0").endswith("lru= must be a positive whole number, not '0'")
    for url in ("memory://host", "memory:///path", "memory://h/p"):
        assert _refusal(url) == f"{url!r}: memory:// takes no host or path"
    assert _shape(pystorage.open("memory://?limit=2&eviction=stored")) == [
        "CountLimit(eviction='stored', limit=2)",
        "Memory()",
    ]


def test_file_urls(tmp_path: Path) -> None:
    backend: Any = parse(f"file://{tmp_path}").make_backend()
    assert (backend.path, backend.suffix, backend.trust_others) == (tmp_path, "", False)
    assert parse(f"file://localhost{tmp_path}").make_backend().path == tmp_path  # type: ignore[attr-defined]
    assert parse("file:///tmp/a%20b?suffix=x").make_backend().suffix == "x"  # type: ignore[attr-defined]
    assert parse("file:///tmp/a%20b").make_backend().path == Path("/tmp/a b")  # type: ignore[attr-defined]
    for url in ("file://host/x", "file:x", "file:///a%00b", "file://"):
        assert _refusal(url) == (
            f"{url!r}: a file URL names a local folder by its absolute path: file:///var/cache/app"
        )
    assert parse("file:///tmp/f").codec == codecs.Pickle()


def test_sqlite_urls(tmp_path: Path) -> None:
    path = tmp_path / "a b.db"
    backend: Any = parse("sqlite://" + str(path).replace(" ", "%20")).make_backend()
    assert (backend.path, backend.synchronous, backend.timeout) == (path, "NORMAL", 30.0)
    assert backend.trust_others is False
    backend = parse(f"sqlite://localhost{path}?synchronous=full&timeout=3").make_backend()
    assert (backend.synchronous, backend.timeout) == ("FULL", 3.0)
    for url in ("sqlite://host/x.db", "sqlite:x.db", "sqlite:///a%00.db", "sqlite://"):
        assert _refusal(url) == (
            f"{url!r}: sqlite:// names a local database file by its absolute path: "
            "sqlite:///var/cache/app.db"
        )
    assert _refusal("sqlite:///tmp/") == (
        "'sqlite:///tmp/': sqlite:// names a database file, not a folder"
    )
    assert parse(f"sqlite://{path}").codec == codecs.Pickle()


def test_key_value_server_urls() -> None:
    backend: Any = parse("redis://h:7/2").make_backend()
    assert (backend.url, backend.prefix, backend.autopipeline) == (
        "redis://h:7/2",
        "pystorage:",
        True,
    )
    assert parse("redis://h").codec == codecs.Pickle()
    backend = parse("rediss://u:p@h/3?prefix=a:&autopipeline=0&socket_timeout=2").make_backend()
    assert backend.url == "rediss://u:p@h/3?socket_timeout=2"
    assert (backend.prefix, backend.autopipeline) == ("a:", False)
    kwargs = backend.client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["db"], kwargs["socket_timeout"]) == ("h", 3, 2.0)
    backend = parse("redis://h?db=4&health_check_interval=9").make_backend()
    assert backend.url == "redis://h?db=4&health_check_interval=9"
    backend = parse("unix:///run/r.sock?db=1").make_backend()
    assert backend.url == "unix:///run/r.sock?db=1"
    assert (
        _refusal("unix://") == "'unix://': unix:// needs the socket's path: unix:///run/redis.sock"
    )
    assert _refusal("unix://host") == (
        "'unix://host': unix:// needs the socket's path: unix:///run/redis.sock"
    )
    assert (
        _refusal("rediss:///0") == "'rediss:///0': rediss:// needs a host: redis://localhost:6379/0"
    )
    assert _refusal("redis://h:0/0") == "'redis://h:0/0': the port must be from 1 to 65535"
    assert parse("redis://h:1/0").make_backend() is not None
    assert parse("redis://h:65535/").make_backend() is not None
    for path in ("/x", "/X", "/-1", "/0x1", "/\u0663", "/1/2"):
        assert _refusal(f"redis://h{path}") == (
            f"'redis://h{path}': the path of a redis:// URL is the database number (/0), "
            f"not {path!r}"
        )
    assert parse("redis://h/15/").make_backend().url == "redis://h/15/"  # type: ignore[attr-defined]
    shown, _, reason = _refusal("redis://h/0?socket_timeout=x").partition("': ")
    assert shown == "'redis://h/0?socket_timeout=x" and "'socket_timeout'" in reason  # redis-py's
    with pytest.raises(StorageProviderError) as error:
        parse("redis://h/0?socket_timeout=x")
    assert error.value.__cause__ is not None and error.value.__cause__.__cause__ is None


def test_bucket_urls() -> None:
    backend: Any = parse("s3://bucket").make_backend()
    assert (backend.bucket, backend.folder, backend.endpoint_url, backend.region) == (
        "bucket",
        "",
        None,
        None,  # boto3's own default: the environment's region
    )
    backend = parse(
        "s3://bucket//some%20folder/?endpoint_url=https://h:9&region=eu-west-3"
    ).make_backend()
    assert (backend.folder, backend.endpoint_url, backend.region) == (
        "some folder/",
        "https://h:9",
        "eu-west-3",
    )
    assert parse("s3://b?endpoint_url=http://h").make_backend().endpoint_url == "http://h"  # type: ignore[attr-defined]
    assert parse("s3://b/Xf").make_backend().folder == "Xf/"  # type: ignore[attr-defined]
    assert parse("s3://b").codec == codecs.Pickle()
    assert _refusal("s3://") == "'s3://': s3:// needs a bucket: s3://bucket/folder"
    assert _refusal("s3:///folder") == "'s3:///folder': s3:// needs a bucket: s3://bucket/folder"
    assert parse("s3://MyXBucket").make_backend().bucket == "MyXBucket"  # type: ignore[attr-defined]
    for host in ("b:1", "u@b", "[::1]", "u:p@b"):
        shown = redact(f"s3://{host}/f")
        assert _refusal(f"s3://{host}/f") == (
            f"{shown!r}: the host of an s3:// URL is the bucket's name, not {host!r} "
            "(give the server as endpoint_url=)"
        )
    for endpoint in ("ftp://h", "h:9", "http://", "https:///x"):
        assert _refusal(f"s3://b?endpoint_url={endpoint}") == (
            f"'s3://b?endpoint_url={endpoint}': endpoint_url= must be an http:// or https:// "
            f"URL, not {endpoint!r}"
        )
    for name in ("endpoint_url", "region"):
        for blank in ("", "%20"):
            assert _refusal(f"s3://b?{name}={blank}") == (
                f"'s3://b?{name}={blank}': {name}= must not be empty (leave it out for the default)"
            )


def test_parsed_url_is_frozen() -> None:
    parsed = parse("memory://")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        parsed.ttl = 3  # type: ignore[misc]
    assert isinstance(parsed, ParsedURL)

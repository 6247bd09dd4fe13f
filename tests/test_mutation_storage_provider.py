"""What each preset builds and where it writes (issue 24: `make mutation MODULE=storage_provider`).

Each test pins what a preset stores (the file, its name, its encoding), the stack it
builds where its backend needs a server (a Redis or S3 layer is made without connecting:
these tests claim nothing about the servers), its defaults, and the words of its refusals.
No test name says "redis" or "s3": the mutation selection (pyproject.toml) leaves those out
as tests of servers.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import stat
import tempfile
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard

from pystorage import AsyncStorage, Storage, StorageProvider, codecs
from pystorage.errors import BackendError, CodecError, ConfigurationError, StorageProviderError
from pystorage.layers import (
    LRU,
    S3,
    Codec,
    CountLimit,
    Expiry,
    Files,
    Memory,
    Redis,
    SQLite,
    Stats,
    Tier,
    TinyLFU,
)
from pystorage.storage_provider import (
    codec_layer,
    memory_tier,
    positive_seconds,
    signed_codec,
)
from tests.helpers import FakeClock

SECRET = "a secret of at least sixteen bytes"
PRESETS = {
    "STORAGE_MEMORY": "memory",
    "STORAGE_LRU": "lru",
    "STORAGE_JSON": "json",
    "STORAGE_PICKLE": "pickle",
    "STORAGE_PICKLE_GZIP": "pickle.gzip",
    "STORAGE_MSGPACK": "msgpack",
    "STORAGE_ZSTD": "zstd",
    "STORAGE_DISKLRU": "disklru",
    "STORAGE_VOLATILE": "volatile",
    "STORAGE_REDIS": "redis",
    "STORAGE_REDIS_JSON": "redis.json",
    "STORAGE_S3": "s3",
    "STORAGE_SQLITE": "sqlite",
}


def _systemp() -> Path:
    """The system temp folder of this test (conftest's ``isolated_tempdir``)."""
    return Path(tempfile.gettempdir())


def _private() -> Path:
    return _systemp() / f"pystorage-{os.getuid()}"


def _shape(storage: Storage) -> list[str]:
    """The layers of a stack, each with its options (layers compare by identity)."""
    return [repr(layer) for layer in storage.layers]


def _names(folder: Path) -> list[str]:
    """The entry files of a folder (not the Files layer's own ``.pystorage`` folder)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_the_preset_names_are_the_documented_strings() -> None:
    assert {name: getattr(StorageProvider, name) for name in PRESETS} == PRESETS
    assert StorageProvider().names() == sorted(PRESETS.values())


def test_each_name_builds_its_own_preset(tmp_path: Path) -> None:
    """The table maps each name to its function: a preset built by name writes what the
    function of that name writes."""
    provider = StorageProvider()
    suffixes = {
        "json": "storage.json",
        "pickle": "storage.pkl",
        "pickle.gzip": "storage.pkl.gz",
        "msgpack": "storage.msgpack",
        "zstd": "storage.pkl.zst",
        "disklru": "storage.lru",
    }
    for name, suffix in suffixes.items():
        storage = provider.create(name, path=tmp_path / name)
        storage["k"] = 1
        assert _names(tmp_path / name) == [f"k.{suffix}"], name
    (memory,) = provider.create("memory").layers
    assert type(memory) is Memory
    assert type(provider.create("lru").layers[0]) is LRU
    assert [type(layer) for layer in provider.create("volatile").layers] == [Expiry, Memory]
    database = provider.create("sqlite", path=tmp_path / "c.db")
    assert type(database.layers[-1]) is SQLite
    redis = provider.create("redis", url="redis://127.0.0.1:1/0")
    assert [type(layer) for layer in redis.layers] == [Codec, Redis]
    assert redis.layers[0].codec == codecs.Text()  # type: ignore[attr-defined]
    redis_json = provider.create("redis.json", url="redis://127.0.0.1:1/0")
    assert redis_json.layers[0].codec == codecs.JSON()  # type: ignore[attr-defined]
    bucket = provider.create("s3", "b", endpoint_url="http://127.0.0.1:1", region="us-east-1")
    assert type(bucket.layers[-1]) is S3


def test_file_presets_encode_as_their_names_say(tmp_path: Path) -> None:
    create = StorageProvider().create
    value = {"a": [1, 2]}
    create("json", path=tmp_path)["k"] = value
    assert json.loads((tmp_path / "k.storage.json").read_bytes()) == value
    create("pickle", path=tmp_path)["k"] = value
    assert pickle.loads((tmp_path / "k.storage.pkl").read_bytes()) == value
    create("msgpack", path=tmp_path)["k"] = value
    assert msgpack.unpackb((tmp_path / "k.storage.msgpack").read_bytes()) == value
    create("zstd", path=tmp_path)["k"] = value
    packed = (tmp_path / "k.storage.pkl.zst").read_bytes()
    assert pickle.loads(zstandard.ZstdDecompressor().decompress(packed)) == value
    create("pickle.gzip", path=tmp_path)["k"] = value
    written = (tmp_path / "k.storage.pkl.gz").read_bytes()
    assert pickle.loads(gzip.decompress(written)) == value
    assert written[8] == 2  # gzip's flag byte: the slowest, smallest level, 9, by default
    create("disklru", path=tmp_path)["k"] = value
    assert pickle.loads((tmp_path / "k.storage.lru").read_bytes()) == value


def test_file_presets_take_a_suffix_and_a_codec(tmp_path: Path) -> None:
    create = StorageProvider().create
    for name in ("json", "pickle", "pickle.gzip", "msgpack", "zstd", "disklru"):
        storage = create(name, path=tmp_path / name, suffix="mine", codec="json")
        storage["k"] = [1]
        assert json.loads((tmp_path / name / "k.mine").read_bytes()) == [1], name
        assert storage["k"] == [1]


def test_gzip_takes_a_compression_level(tmp_path: Path) -> None:
    storage = StorageProvider().create("pickle.gzip", path=tmp_path, compresslevel=1)
    storage["k"] = "x" * 100
    written = (tmp_path / "k.storage.pkl.gz").read_bytes()
    assert written[8] == 4  # gzip's flag byte for the fastest level, 1
    assert pickle.loads(gzip.decompress(written)) == "x" * 100
    with pytest.raises(StorageProviderError) as error:
        StorageProvider().create("pickle.gzip", path=tmp_path, compresslevel=1, codec="json")
    assert str(error.value) == "give compresslevel= or codec=, not both"


@pytest.mark.parametrize("name", ["json", "pickle", "pickle.gzip", "msgpack", "zstd", "disklru"])
def test_file_presets_sign_with_a_secret(tmp_path: Path, name: str) -> None:
    create = StorageProvider().create
    signed = create(name, path=tmp_path, secret=SECRET)
    signed["k"] = [1, "x"]
    assert signed["k"] == [1, "x"]
    (written,) = [p for p in tmp_path.iterdir() if p.name.startswith("k.")]
    unsigned = create(name, path=tmp_path)
    with pytest.raises(CodecError, match="'k' cannot be decoded"):  # the bytes carry a tag
        unsigned["k"]
    assert written.read_bytes() != b""
    with pytest.raises(CodecError, match="signature is missing or wrong"):  # another secret
        create(name, path=tmp_path, secret="another secret, sixteen bytes long")["k"]


def test_default_folders(tmp_path: Path) -> None:
    """JSON and msgpack in the system temp folder; pickles in a folder only this user
    enters (also with secret=: the folder is chosen by the codec alone)."""
    create = StorageProvider().create
    create("json")["j"] = 1
    create("msgpack")["m"] = 1
    create("disklru", codec="json")["d"] = 1
    assert (_systemp() / "j.storage.json").exists()
    assert (_systemp() / "m.storage.msgpack").exists()
    assert (_systemp() / "d.storage.lru").exists()
    assert not _private().exists()
    for name, suffix in [
        ("pickle", "storage.pkl"),
        ("pickle.gzip", "storage.pkl.gz"),
        ("zstd", "storage.pkl.zst"),
        ("disklru", "storage.lru"),
    ]:
        create(name)["p"] = 1
        assert (_private() / f"p.{suffix}").exists(), name
        assert not (_systemp() / f"p.{suffix}").exists(), name
    assert stat.S_IMODE(_private().stat().st_mode) == 0o700
    # The folder follows the codec given, not the preset's default one.
    create("json", codec="pickle")["q"] = 1
    create("msgpack", codec="gzip-pickle")["q"] = 1
    assert _names(_private()) == sorted(
        [
            *("p.storage.pkl", "p.storage.pkl.gz", "p.storage.pkl.zst", "p.storage.lru"),
            *("q.storage.json", "q.storage.msgpack"),
        ]
    )


def test_a_pickle_chain_that_is_signed_or_holds_no_pickle_uses_the_temp_folder() -> None:
    create = StorageProvider().create
    create("json", codec=codecs.Gzip() | codecs.Signed(SECRET))["a"] = b"x"
    create("json", codec="gzip-json")["b"] = 1
    create("json", codec=codecs.Pickle() | codecs.Signed(SECRET))["c"] = 1
    assert _names(_systemp()) == [
        "a.storage.json",
        "b.storage.json",
        "c.storage.json",
    ]
    create("json", codec=codecs.Pickle() | codecs.Gzip())["d"] = 1
    assert (_private() / "d.storage.json").exists()


def test_the_private_folder_is_refused_when_others_may_enter_it() -> None:
    create = StorageProvider().create
    create("pickle")["k"] = 1
    for mode in (0o701, 0o710, 0o740, 0o707):
        _private().chmod(mode)
        with pytest.raises(StorageProviderError) as error:
            create("pickle")
        assert str(error.value) == (
            f"{_private()}, the default folder for pickle files, must be a folder that only "
            "this user owns and enters (mode 0700): give path= to use another one"
        )
    _private().chmod(0o700)
    assert create("pickle")["k"] == 1  # kept: the folder is made only when missing


def test_the_private_folder_is_made_for_this_user_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "umask", os.umask)  # restored after the test
    previous = os.umask(0)  # a mode of 0o700 is asked for, not left to the umask
    try:
        StorageProvider().create("pickle")["k"] = 1
    finally:
        os.umask(previous)
    assert stat.S_IMODE(_private().stat().st_mode) == 0o700


def test_a_link_or_a_file_in_place_of_the_private_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    _private().symlink_to(elsewhere)
    with pytest.raises(StorageProviderError, match="must be a folder that only this user owns"):
        StorageProvider().create("pickle")
    _private().unlink()
    _private().write_bytes(b"")
    with pytest.raises(BackendError) as error:  # mkdir refuses a file
        StorageProvider().create("pickle")
    assert str(error.value).startswith(f"cannot create the folder {_private()}: ")
    assert isinstance(error.value.__cause__, FileExistsError)


def test_a_private_folder_of_another_owner_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    StorageProvider().create("pickle")["k"] = 1
    real = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real + 1)
    other = _systemp() / f"pystorage-{real + 1}"
    other.mkdir(mode=0o700)
    with pytest.raises(StorageProviderError, match="only this user owns"):
        StorageProvider().create("pickle")


def test_the_private_folder_cannot_be_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(BackendError) as error:
        StorageProvider().create("pickle")
    assert str(error.value).startswith(f"cannot create the folder {_private()}: ")
    assert isinstance(error.value.__cause__, FileNotFoundError)


def test_signed_codec_and_codec_layer() -> None:
    assert signed_codec("json") == codecs.JSON()
    signed = signed_codec("json", SECRET)
    assert signed.stages == (codecs.JSON(), codecs.Signed(SECRET))  # type: ignore[attr-defined]
    assert codec_layer("json").codec == codecs.JSON()
    layer = codec_layer("pickle", SECRET)
    assert layer.codec.stages[-1] == codecs.Signed(SECRET)  # type: ignore[attr-defined]


def test_positive_seconds_names_the_option() -> None:
    assert positive_seconds(2.5) == 2.5
    with pytest.raises(ConfigurationError) as error:
        positive_seconds(0)
    assert str(error.value).startswith("expiration must be a finite number of seconds above 0")
    with pytest.raises(ConfigurationError, match=r"^lifetime must be"):
        positive_seconds(-1, "lifetime")


def test_memory_presets() -> None:
    plain = StorageProvider().create("memory")
    value = [1]
    plain["k"] = value
    assert plain["k"] is value  # stored as it is
    encoded = StorageProvider().create("memory", codec="json")
    encoded["k"] = value
    assert encoded["k"] == value and encoded["k"] is not value
    assert [type(layer) for layer in encoded.layers] == [Codec, Memory]
    signed = StorageProvider().create("memory", codec="json", secret=SECRET)
    assert signed.layers[0].codec.stages[-1] == codecs.Signed(SECRET)  # type: ignore[attr-defined]
    with pytest.raises(StorageProviderError) as error:
        StorageProvider().create("memory", secret=SECRET)
    assert str(error.value) == "secret= signs encoded values: give a codec= too"


def test_memory_tier_by_eviction() -> None:
    assert repr(memory_tier(3)) == "LRU(maxsize=3)"
    assert repr(memory_tier(3, "used")) == "LRU(maxsize=3)"
    tiny = memory_tier(4, "tinylfu")
    assert type(tiny) is TinyLFU and tiny.maxsize == 4  # type: ignore[attr-defined]
    with pytest.raises(StorageProviderError) as error:
        memory_tier(3, "stored")
    assert str(error.value) == (
        "the memory tier evicts by 'used' or 'tinylfu', not 'stored' (for the oldest write "
        "first, bound Memory with CountLimit(n, eviction='stored'))"
    )


def test_lru_preset_sizes() -> None:
    create = StorageProvider().create
    assert _shape(create("lru")) == ["LRU(maxsize=128)"]
    assert _shape(create("lru", 5)) == ["LRU(maxsize=5)"]
    assert _shape(create("lru", memory_blocks=6)) == ["LRU(maxsize=6)"]
    assert create("lru", maxsize=7, eviction="tinylfu").layers[0].maxsize == 7
    assert type(create("lru", maxsize=7, eviction="tinylfu").layers[0]) is TinyLFU
    with pytest.raises(StorageProviderError) as error:
        create("lru", maxsize=2, memory_blocks=2)
    assert str(error.value) == "give maxsize= or memory_blocks= (its old name), not both"


def test_lru_preset_in_front_of_a_storage() -> None:
    below = Storage(Memory())
    tiered = StorageProvider().create("lru", storage=below, memory_blocks=2, eviction="tinylfu")
    tier, memory = tiered.layers
    assert type(tier) is Tier and type(memory) is Memory
    assert type(tier.front) is TinyLFU and tier.front.maxsize == 2  # type: ignore[attr-defined]
    tiered["a"] = 1
    assert below == {"a": 1}
    assert (
        repr(StorageProvider().create("lru", storage=below).layers[0].front) == "LRU(maxsize=128)"
    )


def test_disk_lru_keeps_its_limit(tmp_path: Path) -> None:
    create = StorageProvider().create
    assert _shape(create("disklru", path=tmp_path))[0] == repr(CountLimit(100))
    bounded = create("disklru", limit=2, path=tmp_path / "b", codec="json", eviction="stored")
    assert _shape(bounded)[0] == repr(CountLimit(2, eviction="stored"))
    bounded["a"] = 1
    bounded["b"] = 2
    assert bounded["a"] == 1  # a use, which "stored" does not count
    bounded["c"] = 3
    assert sorted(bounded) == ["b", "c"]
    signed = create("disklru", path=tmp_path / "s", secret=SECRET)
    assert signed.layers[1].codec.stages[-1] == codecs.Signed(SECRET)  # type: ignore[attr-defined]


def test_volatile_expires_its_writes() -> None:
    clock = FakeClock()
    storage = StorageProvider().create("volatile", expiration=5, clock=clock)
    storage["k"] = 1
    clock.now += 4.9
    assert storage["k"] == 1
    clock.now += 0.1
    assert "k" not in storage
    assert _shape(StorageProvider().create("volatile")) == ["Expiry(ttl=None)", "Memory()"]
    below = StorageProvider().create("memory")
    over = StorageProvider().create("volatile", storage=below, expiration=1)
    over["k"] = 1
    assert over.layers[1] is below.layers[0]
    assert repr(over.layers[0]) == "Expiry(ttl=1)"
    assert over.layers[0].clock is not clock  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError) as error:
        StorageProvider().create("volatile", expiration=0)
    assert str(error.value).startswith("expiration must be a finite number of seconds")


def test_the_key_value_server_presets_build_their_stack() -> None:
    create = StorageProvider().create
    text = create("redis", url="redis://127.0.0.1:1/3", prefix="p:")
    codec, redis = text.layers
    assert codec.codec == codecs.Text()  # type: ignore[attr-defined]
    assert redis.url == "redis://127.0.0.1:1/3" and redis.prefix == "p:"  # type: ignore[attr-defined]
    assert create("redis", url="redis://127.0.0.1:1/3").layers[1].prefix == "pystorage:"
    expiring = create(
        "redis", url="redis://127.0.0.1:1/3", expiration=7, codec="json", secret=SECRET
    )
    expiry, codec, redis = expiring.layers
    assert repr(expiry) == "Expiry(ttl=7)" and redis.prefix == "pystorage:"  # type: ignore[attr-defined]
    assert codec.codec.stages == (codecs.JSON(), codecs.Signed(SECRET))  # type: ignore[attr-defined]
    client = Redis(url="redis://127.0.0.1:1/4").client
    assert create("redis", client).layers[1].client is client
    given = create("redis.json", client, prefix="q:", expiration=3)
    expiry, codec, redis = given.layers
    assert repr(expiry) == "Expiry(ttl=3)" and codec.codec == codecs.JSON()  # type: ignore[attr-defined]
    assert redis.client is client and redis.prefix == "q:"  # type: ignore[attr-defined]
    signed = create("redis.json", url="redis://127.0.0.1:1/3", secret=SECRET)
    assert signed.layers[0].codec.stages[-1] == codecs.Signed(SECRET)  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match=r"^expiration must be"):
        create("redis", url="redis://127.0.0.1:1/3", expiration=-1)


def test_the_bucket_preset_builds_its_stack() -> None:
    create = StorageProvider().create
    options = {"endpoint_url": "http://127.0.0.1:1", "region": "eu-west-3"}
    codec, bucket = create("s3", "my-bucket", **options).layers
    assert codec.codec == codecs.Raw()  # type: ignore[attr-defined]
    assert (bucket.bucket, bucket.folder) == ("my-bucket", "")  # type: ignore[attr-defined]
    assert bucket.endpoint_url == "http://127.0.0.1:1"  # type: ignore[attr-defined]
    assert bucket.region == "eu-west-3"  # type: ignore[attr-defined]
    assert bucket.client.meta.region_name == "eu-west-3"  # type: ignore[attr-defined]
    codec, bucket = create(
        "s3", "b", "some/folder", "json", secret=SECRET, max_workers=3, **options
    ).layers
    assert bucket.folder == "some/folder/" and bucket.max_workers == 3  # type: ignore[attr-defined]
    assert codec.codec.stages == (codecs.JSON(), codecs.Signed(SECRET))  # type: ignore[attr-defined]
    client = bucket.client  # type: ignore[attr-defined]
    assert create("s3", "b", client=client).layers[1].client is client


def test_sqlite_preset_stores_rows(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    storage = StorageProvider().create("sqlite", path)
    storage["k"] = {"a": 1}
    (database,) = [layer for layer in storage.layers if type(layer) is SQLite]
    assert database.path == path and database.synchronous == "NORMAL"
    assert storage.layers[0].codec == codecs.Pickle()  # type: ignore[attr-defined]
    assert len(storage.layers) == 2  # no limit, no expiry unless asked
    assert StorageProvider().create("sqlite", path)["k"] == {"a": 1}
    full = StorageProvider().create("sqlite", path, synchronous="FULL", codec="json")
    assert full.layers[-1].synchronous == "FULL"  # type: ignore[attr-defined]
    assert full.layers[0].codec == codecs.JSON()  # type: ignore[attr-defined]


def test_sqlite_preset_limits_and_expiry(tmp_path: Path) -> None:
    storage = StorageProvider().create(
        "sqlite", tmp_path / "c.db", codec="raw", limit=2, expiration=9, eviction="stored"
    )
    assert repr(storage.layers[0]) == "Expiry(ttl=9)"
    storage["a"] = b"1"
    storage["b"] = b"2"
    assert storage["a"] == b"1"  # a use, which "stored" does not count
    storage["c"] = b"3"
    assert sorted(storage) == ["b", "c"]
    _, left = storage.get_with_ttl("c")
    assert left is not None and 8 < left <= 9
    sized = StorageProvider().create(
        "sqlite", tmp_path / "s.db", codec="raw", max_bytes=10, eviction="stored"
    )
    sized["a"] = b"x" * 4
    sized["b"] = b"y" * 4
    assert sized["a"] == b"x" * 4  # a use, which "stored" does not count
    sized["c"] = b"z" * 4
    assert sorted(sized) == ["b", "c"]
    used = StorageProvider().create("sqlite", tmp_path / "u.db", codec="raw", max_bytes=10)
    used["a"] = b"x" * 4
    used["b"] = b"y" * 4
    assert used["a"] == b"x" * 4  # a use: "used", the default, keeps it
    used["c"] = b"z" * 4
    assert sorted(used) == ["a", "c"]


def test_sqlite_preset_signs_with_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    StorageProvider().create("sqlite", path, codec="json", secret=SECRET)["k"] = [1]
    assert StorageProvider().create("sqlite", path, codec="json", secret=SECRET)["k"] == [1]
    with pytest.raises(CodecError, match="'k' cannot be decoded"):
        StorageProvider().create("sqlite", path, codec="json")["k"]


def test_sqlite_default_database() -> None:
    StorageProvider().create("sqlite")["k"] = 1
    assert (_private() / "cache.db").exists()
    assert not (_systemp() / "cache.db").exists()
    StorageProvider().create("sqlite", codec="json")["k"] = 1
    assert (_systemp() / "cache.db").exists()
    StorageProvider().create("sqlite", secret=SECRET)["s"] = 1  # signed pickles: temp folder
    assert StorageProvider().create("sqlite", _systemp() / "cache.db", secret=SECRET)["s"] == 1


def test_register_refuses_bad_names_and_factories() -> None:
    provider = StorageProvider()
    for name in ("", 3, None):
        with pytest.raises(StorageProviderError) as error:
            provider.register(name, dict)  # type: ignore[arg-type]
        assert str(error.value) == f"a preset name is a non-empty str, not {name!r}"
    with pytest.raises(StorageProviderError) as error:
        provider.register("mine", 3)  # type: ignore[arg-type]
    assert str(error.value) == "the factory for 'mine' must be callable"
    assert provider.register("mine", dict) is provider
    assert provider.create("mine", a=1) == {"a": 1}
    assert "mine" in provider.names() and provider.names() == sorted(provider.names())


def test_a_registered_preset_replaces_a_built_in_and_gets_stats_as_an_argument() -> None:
    provider = StorageProvider().register("memory", dict)
    assert provider.create("memory", stats=True) == {"stats": True}
    assert _shape(StorageProvider().create("memory")) == ["Memory()"]


def test_unknown_names_list_the_known_ones() -> None:
    known = ", ".join(sorted(PRESETS.values()))
    for name in ("nope", ["a list"]):
        with pytest.raises(StorageProviderError) as error:
            StorageProvider().create(name)  # type: ignore[arg-type]
        assert str(error.value) == f"unknown storage {name!r}; known: {known}"
        assert error.value.__cause__ is None and error.value.__suppress_context__


def test_wrong_arguments_keep_the_original_error() -> None:
    with pytest.raises(StorageProviderError) as error:
        StorageProvider().create("memory", colour="blue")
    assert str(error.value).startswith("cannot create 'memory': ")
    assert "colour" in str(error.value)
    assert isinstance(error.value.__cause__, TypeError)


def test_stats_on_top_of_a_built_in() -> None:
    create = StorageProvider().create
    counted = create("memory", stats=True)
    stats, memory = counted.layers
    assert type(stats) is Stats and type(memory) is Memory
    counted["k"] = 1
    assert counted.stats()["writes"] == 1
    assert [type(layer) for layer in create("memory", stats=False).layers] == [Memory]
    assert [type(layer) for layer in create("memory").layers] == [Memory]


def test_create_async_wraps_the_same_stack() -> None:
    storage = StorageProvider().create_async("lru", 3, stats=True)
    assert isinstance(storage, AsyncStorage)
    assert [repr(layer) for layer in storage.layers] == ["AsyncStats()", "LRU(maxsize=3)"]
    provider = StorageProvider().register("thing", dict)
    with pytest.raises(StorageProviderError) as error:
        provider.create_async("thing")
    assert str(error.value) == "the preset 'thing' does not build a Storage"


def test_file_presets_take_positional_arguments(tmp_path: Path) -> None:
    create = StorageProvider().create
    create("json", tmp_path, "j", "msgpack", SECRET)["k"] = 1
    assert create("json", tmp_path, "j", "msgpack", SECRET)["k"] == 1
    create("pickle.gzip", tmp_path, "g", 1)["k"] = 1
    assert (tmp_path / "k.g").read_bytes()[8] == 4
    create("disklru", 1, tmp_path / "d", "l", "json")["a"] = 1
    create("disklru", 1, tmp_path / "d", "l", "json")["b"] = 2
    assert _names(tmp_path / "d") == ["b.l"]


def test_options_reach_the_layers(tmp_path: Path) -> None:
    storage: Any = StorageProvider().create("json", path=str(tmp_path))
    assert repr(storage.layers[-1]) == repr(Files(tmp_path, "storage.json"))

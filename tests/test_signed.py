"""Signed values: nothing is unpickled unless it carries the right HMAC tag."""

from __future__ import annotations

import asyncio
import gzip
import hmac
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import pytest

import pystorage
from pystorage import Storage, StorageProvider, cli
from pystorage.aio.storage import AsyncStorage
from pystorage.codecs import (
    BaseCodec,
    Chain,
    Gzip,
    Pickle,
    Signed,
    Text,
    Zstd,
    base,
    register,
    resolve,
)
from pystorage.errors import CodecError, ConfigurationError
from pystorage.layers import Codec, Memory
from pystorage.layers.codec import SignedCodec

SECRET = "a secret of at least sixteen bytes"


class Exploit:
    """Unpickling this creates a file: proof that untrusted bytes were decoded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def test_signed_values_round_trip(tmp_path: Path) -> None:
    storage = StorageProvider().create(StorageProvider.STORAGE_PICKLE, path=tmp_path, secret=SECRET)
    storage["k"] = {"a": (1, 2)}
    assert storage["k"] == {"a": (1, 2)}


def test_planted_pickle_is_refused_without_being_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "exploited"
    storage = StorageProvider().create(
        StorageProvider.STORAGE_PICKLE, path=tmp_path / "store", secret=SECRET
    )
    storage["k"] = "honest"
    (tmp_path / "store" / "k.storage.pkl").write_bytes(pickle.dumps(Exploit(str(marker))))
    with pytest.raises(CodecError, match=r"'k'.*signature"):
        storage["k"]
    assert not marker.exists()
    # The same bytes through an unsigned stack would have run the payload.
    unsigned = StorageProvider().create(StorageProvider.STORAGE_PICKLE, path=tmp_path / "store")
    unsigned["k"]
    assert marker.exists()


@pytest.mark.parametrize("damage", ["flip", "truncate", "strip-tag", "empty"])
def test_tampered_bytes_are_codec_errors(damage: str) -> None:
    storage = Storage(Codec(Pickle() | Gzip() | Signed(SECRET)), Memory())
    storage["k"] = list(range(100))
    backend = storage.layers[-1]
    data = bytearray(backend.get("k"))
    if damage == "flip":
        data[40] ^= 1
    elif damage == "truncate":
        data = data[:-3]
    elif damage == "strip-tag":
        data = data[32:]
    else:
        data = bytearray()
    backend.set("k", bytes(data))
    with pytest.raises(CodecError, match="signature"):
        storage["k"]


def test_a_different_secret_cannot_read() -> None:
    memory = Memory()
    Storage(Codec(Pickle() | Signed(SECRET)), memory)["k"] = 1
    other = Storage(Codec(Pickle() | Signed(SECRET + "!")), Storage(memory))
    with pytest.raises(CodecError):
        other["k"]


def test_secrets_must_be_long_enough_and_signing_comes_last() -> None:
    with pytest.raises(ConfigurationError, match="16 bytes"):
        Signed("short")
    with pytest.raises(ConfigurationError):
        Signed(SECRET) | Pickle()
    raw_secret = os.urandom(32)
    storage = Storage(Codec(Pickle() | Signed(raw_secret)), Memory())
    storage["k"] = b"bytes secrets work too"
    assert storage["k"] == b"bytes secrets work too"
    assert SECRET not in repr(Signed(SECRET))  # a secret never shows in logs


@attrs.frozen
class Spy(BaseCodec):
    """A transform that records every decode: proof of what ran before the signature check."""

    name = "spy"
    kind = "transform"
    decoded: list[bytes] = attrs.field(factory=list, eq=False)

    def encode(self, value: Any) -> bytes:
        return bytes(value)

    def decode(self, data: bytes) -> Any:
        self.decoded.append(data)
        return data


def test_nothing_is_decoded_before_the_signature_check() -> None:
    spy = Spy()
    storage = Storage(Codec(Pickle() | spy | Signed(SECRET)), Memory())
    storage["k"] = "honest"
    assert len(spy.decoded) == 0
    storage["k"]
    assert len(spy.decoded) == 1
    storage.layers[-1].set("k", b"\x00" * 64 + gzip.compress(b"\x00" * 1_000_000))
    with pytest.raises(CodecError, match="signature"):
        storage["k"]
    assert len(spy.decoded) == 1


@pytest.mark.parametrize(
    "build",
    [
        lambda: Pickle() | Signed(SECRET) | Gzip(),  # the planted-bomb order of issue 10
        lambda: Signed(SECRET) | Gzip(),
        lambda: Pickle() | Signed(SECRET) | Zstd() | Gzip(),
        lambda: Pickle() | Signed(SECRET) | Signed(SECRET),
        lambda: Chain((Pickle() | Signed(SECRET), Gzip())),  # a chain nested in a chain
        lambda: Codec(Pickle() | Signed(SECRET) | Gzip()),
        lambda: Codec(Chain((Pickle(), Signed(SECRET), Gzip()))),
    ],
)
def test_signed_anywhere_but_last_is_a_configuration_error(build: Any) -> None:
    with pytest.raises(ConfigurationError, match="Signed must be the last stage"):
        build()


def test_a_codec_layer_below_a_signed_one_is_a_configuration_error() -> None:
    # Two Codec layers are one chain: the lower one would inflate before the check.
    with pytest.raises(ConfigurationError, match="before the signature is checked"):
        Storage(Codec(Pickle() | Signed(SECRET)), Codec(Gzip()), Memory())
    with pytest.raises(ConfigurationError, match="before the signature is checked"):
        Storage(Codec(Pickle() | Signed(SECRET)), Storage(Codec("gzip"), Memory()))
    # Above it is fine: the signature is checked first on a read.
    storage = Storage(Codec(Gzip()), Codec(Pickle() | Signed(SECRET)), Memory())
    storage["k"] = b"zipped, then signed"
    assert storage["k"] == b"zipped, then signed"


def test_no_codec_name_puts_signed_anywhere_but_last(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Signing has no name: a name that spells it says how to sign.
    for name in ("gzip-signed-pickle", "signed-pickle"):
        with pytest.raises(ConfigurationError, match="pass secret="):
            resolve(name)
    # secret= always signs last, after the named stages.
    preset = StorageProvider().create(
        StorageProvider.STORAGE_PICKLE, path=tmp_path, codec="zstd-pickle", secret=SECRET
    )
    assert preset.layers[0].codec.label == "signed-zstd-pickle"  # type: ignore[attr-defined]
    opened = pystorage.open(f"file://{tmp_path}?codec=gzip-pickle&secret={quote(SECRET)}")
    assert opened.layers[0].codec.label == "signed-gzip-pickle"  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="last stage"):  # signed twice
        StorageProvider().create(
            StorageProvider.STORAGE_PICKLE,
            path=tmp_path,
            codec=Pickle() | Signed(SECRET),
            secret=SECRET,
        )
    # Even a registered name for Signed cannot put it before another stage.
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    register("signed", lambda: Signed(SECRET))
    assert resolve("signed-gzip-pickle") == Pickle() | Gzip() | Signed(SECRET)
    with pytest.raises(ConfigurationError, match="last stage"):
        resolve("gzip-signed-pickle")


def test_a_secret_of_16_bytes_is_enough_and_15_are_not() -> None:
    storage = Storage(Codec(Pickle() | Signed("s" * 16)), Memory())
    storage["k"] = 1
    assert storage["k"] == 1
    Signed(b"\x00" * 16)
    for short in ("s" * 15, b"\x00" * 15):
        with pytest.raises(ConfigurationError) as caught:
            Signed(short)
        assert str(caught.value) == "a signing secret needs at least 16 bytes"


def test_signed_before_another_stage_says_where_it_belongs() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Pickle() | Signed(SECRET) | Gzip()
    assert str(caught.value) == (
        "Signed must be the last stage of a chain, so that a read checks it before anything "
        "else decodes, e.g. Pickle() | Gzip() | Signed(secret)"
    )


def test_a_refused_signature_says_why() -> None:
    backend = Memory()
    storage = Storage(Codec(Pickle() | Signed(SECRET)), backend)
    backend.set("k", pickle.dumps("unsigned"))
    with pytest.raises(CodecError) as caught:
        storage["k"]
    assert str(caught.value) == (
        "the stored value of key 'k' cannot be decoded as signed-pickle: "
        "ValueError: the signature is missing or wrong, or was made for another key or "
        "codec: refusing to decode"
    )


# -- format 1: bound to the key, the codec chain and the format version (issue 22, item 3) --

OLD_SECRET = "the secret of last year, 16+ bytes"


def _exploit_text(marker: Path) -> str:
    """A pickle, as text a user could type into a form: protocol 0 is ASCII."""
    return pickle.dumps(Exploit(str(marker)), protocol=0).decode("ascii")


def test_a_text_value_copied_into_a_signed_pickle_store_is_never_unpickled(
    tmp_path: Path,
) -> None:
    # One secret for the app; a user's comment is stored as text, and someone who can write
    # the folders copies its file into the pickle store (same key, then another key).
    marker = tmp_path / "exploited"
    secret = quote(SECRET)
    comments = pystorage.open(f"file://{tmp_path}/comments?codec=text&secret={secret}")
    cache = pystorage.open(f"file://{tmp_path}/cache?codec=pickle&secret={secret}")
    comments["k"] = comments["c1"] = _exploit_text(marker)
    assert comments["k"] == _exploit_text(marker)
    for source in ("k", "c1"):
        cache.layers[-1].set("k", comments.layers[-1].get(source))
        with pytest.raises(CodecError, match=r"'k'.*another key or codec"):
            cache["k"]
        assert not marker.exists()


def test_a_signed_value_copied_to_another_key_is_refused_on_every_read_path() -> None:
    backend = Memory()
    storage = Storage(Codec(Pickle() | Signed(SECRET)), backend)
    storage["admin"] = True
    storage["guest"] = False
    backend.set("guest", backend.get("admin"))
    reads: list[Callable[[], Any]] = [
        lambda: storage["guest"],
        lambda: storage.get("guest"),
        lambda: storage.get_with_ttl("guest"),
        lambda: storage.get_many(["guest"]),
        lambda: storage.get_many_with_ttl(["guest"]),
        lambda: storage.top.peek_many(["guest"]),
        lambda: storage.incr("guest"),
    ]
    for read in reads:
        with pytest.raises(CodecError, match=r"'guest'.*another key or codec"):
            read()
    assert storage["admin"] is True


@pytest.mark.parametrize("write", ["set", "set_many", "add", "incr", "setdefault"])
def test_every_write_path_binds_the_value_to_its_key(write: str) -> None:
    backend = Memory()
    storage = Storage(Codec(Pickle() | Signed(SECRET)), backend)
    if write == "set":
        storage.set("k", 7)
    elif write == "set_many":
        storage.set_many({"k": 7, "other": 8})
    elif write == "add":
        assert storage.add("k", 7)
    elif write == "incr":
        assert storage.incr("k", 7) == 7
    else:
        assert storage.setdefault("k", 7) == 7
    assert storage["k"] == 7
    backend.set("copy", backend.get("k"))
    with pytest.raises(CodecError, match="another key or codec"):
        storage["copy"]


def test_the_signature_binds_the_codec_chain_not_only_the_serializer() -> None:
    backend = Memory()
    Storage(Codec(Pickle() | Gzip() | Signed(SECRET)), backend)["k"] = [1, 2]
    # Same secret and key, a chain of other stages: refused before anything is inflated.
    for other in (Pickle() | Zstd(), Pickle(), Gzip()):
        reader = Storage(Codec(other | Signed(SECRET)), Storage(backend))
        with pytest.raises(CodecError, match="another key or codec"):
            reader["k"]
    assert Storage(Codec(Pickle() | Gzip() | Signed(SECRET)), Storage(backend))["k"] == [1, 2]


def test_the_stored_bytes_are_format_1_as_documented() -> None:
    backend = Memory()
    storage = Storage(Codec(Pickle() | Gzip() | Signed(SECRET)), backend)
    storage["clé"] = "v"
    stored = backend.get("clé")
    payload = (Pickle() | Gzip()).encode("v")
    subkey = hmac.digest(b"pystorage.signed.v1", SECRET.encode(), "sha256")
    message = (
        b"\x01"
        + len(b"gzip-pickle").to_bytes(4, "big")
        + b"gzip-pickle"
        + len("clé".encode()).to_bytes(4, "big")
        + "clé".encode()
    )
    tag = hmac.digest(subkey, message + payload, "sha256")
    assert stored[:1] == b"\x01"
    assert stored[1:33] == tag
    assert stored[33:] == payload
    # Another version byte with the same tag is refused: the version is signed too.
    backend.set("clé", b"\x02" + stored[1:])
    with pytest.raises(CodecError, match="signature"):
        storage["clé"]
    # encode/decode without a key sign for no key, which no stored key matches.
    keyless = (Pickle() | Signed(SECRET)).encode("v")
    assert (Pickle() | Signed(SECRET)).decode(keyless) == "v"
    backend.set("k", keyless)
    with pytest.raises(CodecError, match="another key or codec"):
        Storage(Codec(Pickle() | Signed(SECRET)), Storage(backend))["k"]


def test_rotation_reads_with_any_secret_and_writes_with_the_newest(tmp_path: Path) -> None:
    backend = Memory()
    Storage(Codec(Pickle() | Signed(OLD_SECRET)), backend)["k"] = "old"
    rotated = Storage(Codec(Pickle() | Signed([SECRET, OLD_SECRET])), Storage(backend))
    assert rotated["k"] == "old"
    rotated["k"] = "new"
    assert Storage(Codec(Pickle() | Signed(SECRET)), Storage(backend))["k"] == "new"
    with pytest.raises(CodecError):
        Storage(Codec(Pickle() | Signed(OLD_SECRET)), Storage(backend))["k"]
    # The same through a URL (secret= repeated, newest first) and a preset.
    url = f"file://{tmp_path}?codec=json&secret={quote(OLD_SECRET)}"
    pystorage.open(url)["u"] = 1
    newer = f"file://{tmp_path}?codec=json&secret={quote(SECRET)}&secret={quote(OLD_SECRET)}"
    assert pystorage.open(newer)["u"] == 1
    newest = pystorage.open(newer)
    newest["u"] = 2
    with pytest.raises(CodecError):
        pystorage.open(url)["u"]
    create = StorageProvider().create
    create(StorageProvider.STORAGE_JSON, path=tmp_path / "p", secret=OLD_SECRET)["u"] = 1
    preset = create(StorageProvider.STORAGE_JSON, path=tmp_path / "p", secret=[SECRET, OLD_SECRET])
    assert preset["u"] == 1
    for bad in ([], [SECRET, "short"], [SECRET, 5]):
        with pytest.raises(ConfigurationError):
            Signed(bad)
    with pytest.raises(ConfigurationError) as caught:  # every secret= stays out of messages
        pystorage.open(f"{newer}&secret=short")
    assert quote(SECRET) not in str(caught.value) and "short" not in str(caught.value)
    assert str(caught.value).count("secret=***") == 3


def _format_0(secret: str, payload: bytes) -> bytes:
    """What Signed stored before format 1: a tag over the value alone."""
    return hmac.digest(secret.encode(), payload, "sha256") + payload


def test_a_value_signed_in_format_0_is_refused_with_how_to_migrate(tmp_path: Path) -> None:
    backend = Memory()
    backend.set("k", _format_0(SECRET, pickle.dumps({"rows": 3})))
    storage = Storage(Codec(Pickle() | Signed(SECRET)), Storage(backend))
    with pytest.raises(CodecError, match=r"format 0.*legacy=True.*write it back"):
        storage["k"]
    # Migration: read with legacy=True, write back (format 1), then read without it.
    migrating = Storage(Codec(Pickle() | Signed(SECRET, legacy=True)), Storage(backend))
    for key in list(migrating):
        migrating[key] = migrating[key]
    assert backend.get("k")[:1] == b"\x01"
    assert storage["k"] == {"rows": 3}
    # An old tag over another secret is still wrong, legacy or not.
    backend.set("x", _format_0(OLD_SECRET, pickle.dumps(1)))
    with pytest.raises(CodecError, match="missing or wrong"):
        migrating["x"]


def test_tags_of_format_0_cannot_forge_format_1(tmp_path: Path) -> None:
    # An old text store signed user-chosen text with the secret itself. The user chose text
    # that is exactly a format-1 message for key k of a pickle store: its old tag must not
    # be a valid format-1 tag (format 1 signs with a subkey, not the secret).
    marker = tmp_path / "exploited"
    exploit = pickle.dumps(Exploit(str(marker)), protocol=0)
    message = b"\x01" + (6).to_bytes(4, "big") + b"pickle" + (1).to_bytes(4, "big") + b"k"
    old_tag = _format_0(SECRET, message + exploit)[:32]
    for legacy in (False, True):
        backend = Memory()
        backend.set("k", b"\x01" + old_tag + exploit)
        storage = Storage(Codec(Pickle() | Signed(SECRET, legacy=legacy)), backend)
        with pytest.raises(CodecError, match="signature"):
            storage["k"]
    assert not marker.exists()


def test_async_stacks_bind_keys_and_codecs_too(tmp_path: Path) -> None:
    marker = tmp_path / "exploited"

    async def scenario() -> None:
        backend = Memory()
        storage = AsyncStorage(Codec(Pickle() | Signed([SECRET, OLD_SECRET])), backend)
        assert type(storage.layers[0]).__name__ == "AsyncSignedCodec"
        await storage.set("admin", True)
        await storage.set_many({"a": 1, "b": 2})
        assert await storage.add("c", 3)
        assert await storage.incr("n", 5) == 5
        assert await storage.get_many(["a", "b", "c", "n"]) == {"a": 1, "b": 2, "c": 3, "n": 5}
        backend.set("guest", backend.get("admin"))
        reads = [
            storage.get("guest"),
            storage.get_with_ttl("guest"),
            storage.get_many(["guest"]),
            storage.get_many_with_ttl(["guest"]),
            storage.incr("guest"),
        ]
        for read in reads:
            with pytest.raises(CodecError, match="another key or codec"):
                await read
        text = AsyncStorage(Codec(Text() | Signed(SECRET)), Memory())
        await text.set("k", _exploit_text(marker))
        backend.set("k", text.layers[-1].backend.get("k"))  # type: ignore[attr-defined]
        with pytest.raises(CodecError, match="another key or codec"):
            await storage.get("k")
        # Rotation: a value of the older secret reads.
        backend.set("old", _signed_for("old", OLD_SECRET))
        assert await storage.get("old") == "old value"

    asyncio.run(scenario())
    assert not marker.exists()


def _signed_for(key: str, secret: str) -> bytes:
    backend = Memory()
    Storage(Codec(Pickle() | Signed(secret)), backend)[key] = "old value"
    data: bytes = backend.get(key)
    return data


def test_a_codec_layer_that_cannot_hand_keys_refuses_a_signing_chain() -> None:
    class Plain(Codec):
        pass

    with pytest.raises(ConfigurationError, match="cannot sign"):
        Plain(Pickle() | Signed(SECRET))
    assert type(Codec(Pickle() | Signed(SECRET))) is SignedCodec
    assert type(Codec(codec="pickle")) is Codec


def test_the_command_line_refuses_a_value_copied_between_signed_stores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "exploited"
    secret = quote(SECRET)
    comments = f"file://{tmp_path}/comments?codec=text&secret={secret}"
    cache = f"file://{tmp_path}/cache?codec=pickle&secret={secret}"
    assert cli.main(["put", comments, "k", _exploit_text(marker)]) == 0
    pystorage.open(cache).close()
    (tmp_path / "cache" / "k").write_bytes((tmp_path / "comments" / "k").read_bytes())
    assert cli.main(["get", cache, "k"]) == 1
    assert cli.main(["copy", cache, f"file://{tmp_path}/dst?codec=json", "-q"]) != 0
    assert "another key or codec" in capsys.readouterr().err
    assert not marker.exists()
    # Rotation through the command line: secret= repeated, newest first.
    pystorage.open(cache)["j"] = "written with the old secret"
    rotated = f"file://{tmp_path}/cache?codec=pickle&secret={quote(OLD_SECRET)}&secret={secret}"
    assert cli.main(["get", rotated, "j"]) == 0
    assert "written with the old secret" in capsys.readouterr().out

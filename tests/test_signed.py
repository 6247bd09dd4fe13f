"""Signed values: nothing is unpickled unless it carries the right HMAC tag."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import pytest

import pystorage
from pystorage import Storage, StorageProvider
from pystorage.codecs import BaseCodec, Chain, Gzip, Pickle, Signed, Zstd, base, register, resolve
from pystorage.errors import CodecError, ConfigurationError
from pystorage.layers import Codec, Memory

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
        "ValueError: the signature is missing or wrong: refusing to decode"
    )

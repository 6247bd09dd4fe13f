"""Signed values: nothing is unpickled unless it carries the right HMAC tag."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage, StorageProvider
from pystorage.codecs import Gzip, Pickle, Signed
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

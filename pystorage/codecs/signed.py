"""Signed: an HMAC-SHA256 tag in front of the bytes, bound to the key and the codec chain,
checked before anything is decoded.

Format 1, the one written (all integers big-endian)::

    stored  = 0x01 | tag (32 bytes) | payload
    tag     = HMAC-SHA256(subkey, message)
    subkey  = HMAC-SHA256(key=b"pystorage.signed.v1", msg=secret)
    message = 0x01 | len(codec) (4 bytes) | codec
                   | len(key) (4 bytes) | key      (UTF-8; no key: 0xFFFFFFFF, nothing)
                   | payload

``codec`` is the label of the stages before ``Signed`` (``"zstd-pickle"``); ``payload``
is what they made. The subkey is derived from the secret with the secret as the *message*
(HKDF's extract step): a tag of format 0 (``HMAC-SHA256(secret, payload)``, written before
format 1, over bytes an attacker may have chosen) can never serve as a subkey or a tag of
format 1.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import attrs

from pystorage.codecs.base import BaseCodec
from pystorage.errors import ConfigurationError

_TAG = hashlib.sha256().digest_size
#: The format written: its byte opens every stored value and is part of the signed message.
VERSION = 1
_VERSION_BYTE = bytes((VERSION,))
_SALT = b"pystorage.signed.v1"
_NO_KEY = b"\xff\xff\xff\xff"
#: A stored value shorter than this cannot be of format 1.
_HEAD = 1 + _TAG


def _as_key(secret: object) -> bytes:
    if not isinstance(secret, (str, bytes, bytearray, memoryview)):
        raise ConfigurationError(f"a signing secret is a str or bytes, not {type(secret).__name__}")
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < 16:
        raise ConfigurationError("a signing secret needs at least 16 bytes")
    return key


def _as_keys(secret: str | bytes | Sequence[str | bytes]) -> tuple[bytes, ...]:
    """One secret, or a list of them newest first (rotation)."""
    if isinstance(secret, (str, bytes, bytearray, memoryview)):
        return (_as_key(secret),)
    if not isinstance(secret, Sequence):
        raise ConfigurationError(
            f"a signing secret is a str, bytes or a list of them, not {type(secret).__name__}"
        )
    keys = tuple(_as_key(one) for one in secret)
    if not keys:
        raise ConfigurationError("a list of signing secrets needs at least one")
    return keys


def _length(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big")


def _prefix(codec: str) -> bytes:
    raw = codec.encode("utf-8", "surrogatepass")
    return _VERSION_BYTE + _length(raw) + raw


@attrs.frozen
class Signed(BaseCodec):
    """Authenticates stored bytes with a secret: ``Pickle() | Signed(secret)``.

    It is the last stage of a chain (anywhere else is a ``ConfigurationError``), so that on
    a read the tag is checked first and nothing is unpickled (or decompressed) unless it was
    written by someone holding the secret.

    The tag binds the bytes to the key they are stored under, to the codec chain that made
    them (the names of the stages before ``Signed``) and to the format version: bytes
    copied to another key, or into a store of another codec with the same secret, are
    refused like a wrong tag. A ``Codec`` layer hands the key over on every operation;
    ``encode``/``decode`` called directly sign for *no key*, which no stored key matches.
    Someone who can write the storage can still put back an older value of the same key.

    ``secret`` is a ``str`` or ``bytes`` of at least 16 bytes, or a list of them newest
    first: values are written with the first and read with any (rotation).

    Values signed by PyStorage before format 1 (a tag over the value alone) are refused
    with a ``CodecError`` that says so; ``legacy=True`` reads them too, for a migration
    only (see docs/codecs.md, "Values signed before format 1"): they are not bound to a
    key or codec, so while it is on, the replays above work with them.
    """

    name = "signed"
    kind = "transform"
    authenticates = True
    #: The secrets, newest first (a single secret given is a list of one).
    secret: tuple[bytes, ...] = attrs.field(converter=_as_keys, repr=False)
    #: Also accept tags of format 0 (the value alone), to migrate an old store.
    legacy: bool = attrs.field(default=False, kw_only=True)
    # The message up to the key: the version and the codec ("" until ``bound_to``).
    _prefix: bytes = attrs.field(init=False, eq=False, repr=False)
    # One subkey per secret (format 1), derived once.
    _subkeys: tuple[bytes, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_prefix", _prefix(""))
        subkeys = tuple(hmac.digest(_SALT, secret, "sha256") for secret in self.secret)
        object.__setattr__(self, "_subkeys", subkeys)

    def bound_to(self, codec: str) -> Signed:
        """This stage signing the bytes of the chain whose other stages are labelled
        ``codec`` (e.g. ``"zstd-pickle"``); a chain binds its last stage so."""
        bound = attrs.evolve(self)
        object.__setattr__(bound, "_prefix", _prefix(codec))
        return bound

    def _header(self, key: str | None) -> bytes:
        if key is None:
            return self._prefix + _NO_KEY
        raw = key.encode("utf-8", "surrogatepass")
        return self._prefix + _length(raw) + raw

    def sign(self, key: str | None, data: bytes) -> bytes:
        """``data`` with a tag of format 1 for ``key`` (None: no key), newest secret."""
        # No bytes(data): it would turn an int into that many zero bytes, a list of ints
        # into bytes. hmac takes bytes-like values only and refuses anything else.
        mac = hmac.new(self._subkeys[0], self._header(key), "sha256")
        mac.update(data)
        return _VERSION_BYTE + mac.digest() + data

    def verify(self, key: str | None, data: bytes) -> bytes:
        """The payload of ``data`` if its tag is right for ``key``; ``ValueError`` if not."""
        data = bytes(data)
        if len(data) >= _HEAD and data[0] == VERSION:
            tag, payload = data[1:_HEAD], data[_HEAD:]
            header = self._header(key)
            for subkey in self._subkeys:
                mac = hmac.new(subkey, header, "sha256")
                mac.update(payload)
                if hmac.compare_digest(tag, mac.digest()):
                    return payload
        if self._legacy_tag_is_right(data):
            if self.legacy:
                return data[_TAG:]
            raise ValueError(
                "the value is signed in format 0 (a tag over the value alone, written "
                "before format 1, bound to no key or codec): refusing to decode it; to migrate, "
                "read it with Signed(secret, legacy=True) and write it back (see "
                "docs/codecs.md, 'Values signed before format 1')"
            )
        raise ValueError(
            "the signature is missing or wrong, or was made for another key or codec: "
            "refusing to decode"
        )

    def _legacy_tag_is_right(self, data: bytes) -> bool:
        tag, payload = data[:_TAG], data[_TAG:]
        return len(tag) == _TAG and any(
            hmac.compare_digest(tag, hmac.digest(secret, payload, "sha256"))
            for secret in self.secret
        )

    def encode(self, value: Any) -> bytes:
        return self.sign(None, value)

    def decode(self, data: bytes) -> Any:
        return self.verify(None, data)

    def encode_for(self, key: str, value: Any) -> bytes:
        return self.sign(key, value)

    def decode_for(self, key: str, data: bytes) -> Any:
        return self.verify(key, data)

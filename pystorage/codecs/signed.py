"""Signed: an HMAC-SHA256 tag in front of the bytes, checked before anything is decoded."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import attrs

from pystorage.codecs.base import BaseCodec
from pystorage.errors import ConfigurationError

_TAG = hashlib.sha256().digest_size


def _as_key(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < 16:
        raise ConfigurationError("a signing secret needs at least 16 bytes")
    return key


@attrs.frozen
class Signed(BaseCodec):
    """Authenticates stored bytes with a secret: ``Pickle() | Signed(secret)``.

    It is the last stage of a chain (anywhere else is a ``ConfigurationError``), so that on
    a read the tag is checked first and nothing is unpickled (or decompressed) unless it was
    written by someone holding the secret.
    Bytes with a missing or wrong tag fail to decode (``CodecError`` through a Codec
    layer). The tag covers the value, not the key: someone who can write the storage
    can still copy one signed value over another key, or put back an older value.
    """

    name = "signed"
    kind = "transform"
    authenticates = True
    secret: bytes = attrs.field(converter=_as_key, repr=False)

    def encode(self, value: Any) -> bytes:
        # No bytes(value): it would turn an int into that many zero bytes, a list of ints
        # into bytes. hmac and + take bytes-like values only and refuse anything else.
        data: bytes = hmac.new(self.secret, value, hashlib.sha256).digest() + value
        return data

    def decode(self, data: bytes) -> Any:
        data = bytes(data)
        tag, payload = data[:_TAG], data[_TAG:]
        expected = hmac.new(self.secret, payload, hashlib.sha256).digest()
        if len(tag) != _TAG or not hmac.compare_digest(tag, expected):
            raise ValueError("the signature is missing or wrong: refusing to decode")
        return payload

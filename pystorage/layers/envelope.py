"""The envelope of every value below a ``Tags`` layer: the value and its tags' tokens.

Above a codec the envelope is an object of a private type (a user's value, whatever it
is, travels inside one); a ``Codec(..., tagged=True)`` turns it into bytes that begin
with a versioned frame::

    b"\\xffPTG\\x01"  4 bytes: length of the header  header  the encoded value

The header is empty for a value without tags, else the JSON of ``[[tag, token], ...]``.
Every value is framed, tagged or not, so no value can be taken for a frame: readers
that meet bytes without one (a value written without tags support) refuse them with a
``CodecError``, and so do codecs without ``tagged`` that meet a frame (no JSON, pickle,
MessagePack or UTF-8 text begins with byte 0xFF).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

#: The tags of a value: (tag, token) pairs, sorted by tag.
Tokens = tuple[tuple[str, str], ...]

MAGIC = b"\xffPTG\x01"
_LENGTH = struct.Struct(">I")
_START = len(MAGIC) + _LENGTH.size
#: How an untagged value begins: read with one comparison (most values have no tags).
_UNTAGGED = MAGIC + _LENGTH.pack(0)


class Envelope:
    """A value and the tokens its tags had when it was written. The type is private to
    the stack: a ``Tags`` layer wraps every value in one, even a user's own envelope."""

    __slots__ = ("tokens", "value")

    def __init__(self, tokens: Tokens, value: Any) -> None:
        self.tokens = tokens
        self.value = value

    def __repr__(self) -> str:
        return f"Envelope({self.tokens!r}, {self.value!r})"


class TagSnapshot:
    """The tokens of some tags at one moment (``storage.snapshot_tags``). A value stored
    with it (``set(..., tags=snapshot)``) is missing if any of its tags was invalidated
    since the snapshot, not only since the write: for a value computed in between."""

    __slots__ = ("tokens",)

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    def __repr__(self) -> str:
        return f"TagSnapshot({[tag for tag, _ in self.tokens]!r})"


def encoder(encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """``encode`` for envelopes: the frame, then the value encoded by ``encode``."""

    def encode_envelope(envelope: Any) -> bytes:
        if type(envelope) is not Envelope:
            raise TypeError(
                f"a tagged codec stores envelopes (from a Tags layer above), not "
                f"{type(envelope).__name__}"
            )
        data = encode(envelope.value)
        if not envelope.tokens:
            return _UNTAGGED + data
        header = json.dumps(envelope.tokens, separators=(",", ":")).encode("ascii")
        return MAGIC + _LENGTH.pack(len(header)) + header + data

    return encode_envelope


#: Headers read lately, and their tokens: values tagged alike share a header, and parsing
#: one costs more than the rest of a read from memory. Emptied when full.
_HEADERS: dict[bytes, Tokens] = {}
_HEADERS_KEPT = 1024


def _tokens(header: bytes) -> Tokens:
    tokens = _HEADERS.get(header)
    if tokens is None:
        pairs = json.loads(header)
        tokens = tuple((str(tag), str(token)) for tag, token in pairs)
        if len(_HEADERS) >= _HEADERS_KEPT:
            _HEADERS.clear()
        _HEADERS[header] = tokens
    return tokens


def decoder(decode: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``decode`` for envelopes: the frame read, then the value decoded by ``decode``."""

    def decode_envelope(data: bytes) -> Envelope:
        if data[:_START] == _UNTAGGED:
            return Envelope((), decode(data[_START:]))
        if data[: len(MAGIC)] != MAGIC or len(data) < _START:
            raise ValueError(
                "no tags frame: the value was not written through a Tags layer "
                "(a stack with tags reads only what a stack with tags wrote)"
            )
        (length,) = _LENGTH.unpack_from(data, len(MAGIC))
        end = _START + length
        if len(data) < end:
            raise ValueError("the tags frame is cut short")
        return Envelope(_tokens(bytes(data[_START:end])), decode(data[end:]))

    return decode_envelope

"""Serializers: codecs that turn Python objects into bytes."""

from __future__ import annotations

import json
import pickle
from typing import Any

import attrs

from pystorage.codecs.base import BaseCodec

#: What json.loads gives back; a subclass of one of these comes back as the base type.
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})
_JSON_BASES = {
    dict: "a dict",
    list: "a list",
    tuple: "a list",
    str: "a str",
    int: "an int",
    float: "a float",
}
# Built once: json.dumps builds a new encoder on every call made with non-default options.
_json_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def _changed(value: Any, bases: dict[type, str], codec: str) -> TypeError:
    """The error for a value that ``codec`` would not give back as it is."""
    for base, comes_back_as in bases.items():
        if isinstance(value, base):
            return TypeError(
                f"a value of type {type(value).__name__} would come back as {comes_back_as}"
            )
    return TypeError(f"{codec} cannot store a {type(value).__name__}")


def _json_exact(value: Any) -> None:
    """Raise ``TypeError`` if ``value`` would come back from JSON changed (tuples aside).

    The encoder cannot be told to refuse these, so this walks the value once more; it only
    runs on values that the encoder took, so there are no cycles and no unknown types.
    """
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(
                    f"JSON object keys are str: the key {key!r} ({type(key).__name__}) "
                    f"would come back as a str"
                )
            if type(item) not in _JSON_SCALARS:
                _json_exact(item)
    elif kind is list or kind is tuple:  # a tuple comes back as a list: kept, documented
        for item in value:
            if type(item) not in _JSON_SCALARS:
                _json_exact(item)
    elif kind not in _JSON_SCALARS:
        raise _changed(value, _JSON_BASES, "JSON")


@attrs.frozen
class JSON(BaseCodec):
    """Standard JSON text in UTF-8: values come back as written, or are refused.

    Refused (``CodecError`` through a Codec layer): dict keys that are not ``str`` (JSON
    would turn ``1`` into ``"1"``), NaN and infinities (not JSON), subclasses of JSON types
    (an ``IntEnum`` would come back as an ``int``), lone surrogates. The one change kept,
    for compatibility: a tuple comes back as a list.
    """

    name = "json"
    kind = "serializer"

    def encode(self, value: Any) -> bytes:
        text = _json_encode(value)
        _json_exact(value)
        return text.encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


@attrs.frozen
class Pickle(BaseCodec):
    """Any picklable object. Only decode data you trust: unpickling can run code."""

    name = "pickle"
    kind = "serializer"
    protocol: int = pickle.HIGHEST_PROTOCOL

    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, self.protocol)

    def decode(self, data: bytes) -> Any:
        return pickle.loads(data)


_MSGPACK_BASES = {
    tuple: "a list",
    list: "a list",
    dict: "a dict",
    str: "a str",
    bytes: "bytes",
    int: "an int",
    float: "a float",
}


def _msgpack_refuse(value: Any) -> Any:
    """msgpack's ``default`` hook: everything it sends here would not come back as it is."""
    if type(value) is int:
        raise OverflowError(
            f"MessagePack integers are -2**63 to 2**64 - 1, not an int of {value.bit_length()} bits"
        )
    raise _changed(value, _MSGPACK_BASES, "MessagePack")


@attrs.frozen
class MsgPack(BaseCodec):
    """MessagePack (``pip install 'pystorage-layers[msgpack]'``): as written, or refused.

    Refused: tuples (they would come back as lists), subclasses of the types MessagePack
    stores (an ``OrderedDict`` would come back as a ``dict``), integers outside 64 bits,
    and every other type. ``bytearray`` and ``memoryview`` come back as ``bytes``.
    """

    name = "msgpack"
    kind = "serializer"
    _msgpack: Any = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        _require("msgpack", "msgpack")
        import msgpack

        object.__setattr__(self, "_msgpack", msgpack)

    def encode(self, value: Any) -> bytes:
        # strict_types: msgpack packs only exact types itself (a tuple is not a list) and
        # hands every other value to the hook, which refuses it: no second walk.
        data: bytes = self._msgpack.packb(
            value, use_bin_type=True, strict_types=True, default=_msgpack_refuse
        )
        return data

    def decode(self, data: bytes) -> Any:
        # strict_map_key=False: int, float, bytes and None keys come back as written.
        return self._msgpack.unpackb(data, raw=False, strict_map_key=False)


@attrs.frozen
class Text(BaseCodec):
    """``str`` values as UTF-8."""

    name = "text"
    kind = "serializer"

    def encode(self, value: Any) -> bytes:
        if type(value) is not str:  # a str subclass would come back as a plain str
            raise TypeError(f"Text stores str values, not {type(value).__name__}")
        return value.encode()

    def decode(self, data: bytes) -> Any:
        return bytes(data).decode()


@attrs.frozen
class Raw(BaseCodec):
    """``bytes`` values stored as they are (``bytearray``, ``memoryview``: read as ``bytes``)."""

    name = "raw"
    kind = "serializer"

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"Raw stores bytes values, not {type(value).__name__}")
        return bytes(value)

    def decode(self, data: bytes) -> Any:
        return bytes(data)


def _require(module: str, extra: str) -> None:
    """Fail at construction, not at first use, when an optional library is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ImportError(f"this codec needs {module}: pip install 'pystorage-layers[{extra}]'")

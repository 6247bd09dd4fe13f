"""Serializers: codecs that turn Python objects into bytes."""

from __future__ import annotations

import json
import pickle
from typing import Any

import attrs

from pystorage.codecs.base import BaseCodec, register


@attrs.frozen
class JSON(BaseCodec):
    """JSON text in UTF-8, in the standard library's default format (``json.dumps``).

    Non-ASCII text is written as UTF-8, not as ``\\u`` escapes, so a lone surrogate
    cannot be written (it is refused with ``CodecError`` rather than changed).
    """

    name = "json"
    kind = "serializer"

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False).encode()

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


@attrs.frozen
class MsgPack(BaseCodec):
    """MessagePack (``pip install 'pystorage-layers[msgpack]'``). Tuples come back as lists."""

    name = "msgpack"
    kind = "serializer"
    _msgpack: Any = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        _require("msgpack", "msgpack")
        import msgpack

        object.__setattr__(self, "_msgpack", msgpack)

    def encode(self, value: Any) -> bytes:
        data: bytes = self._msgpack.packb(value, use_bin_type=True)
        return data

    def decode(self, data: bytes) -> Any:
        return self._msgpack.unpackb(data, raw=False, strict_map_key=False)


@attrs.frozen
class Text(BaseCodec):
    """``str`` values as UTF-8."""

    name = "text"
    kind = "serializer"

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"Text stores str values, not {type(value).__name__}")
        return value.encode()

    def decode(self, data: bytes) -> Any:
        return bytes(data).decode()


@attrs.frozen
class Raw(BaseCodec):
    """``bytes`` values stored as they are."""

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


for _codec in (JSON, Pickle, MsgPack, Text, Raw):
    register(_codec.name, _codec)

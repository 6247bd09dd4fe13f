"""Codecs: how values become bytes. Chain them with ``|``: ``Pickle() | Zstd()``."""

from pystorage.codecs.base import BaseCodec, Chain, register, resolve
from pystorage.codecs.compress import Gzip, Zstd
from pystorage.codecs.serializers import JSON, MsgPack, Pickle, Raw, Text
from pystorage.codecs.signed import Signed

__all__ = [
    "JSON",
    "BaseCodec",
    "Chain",
    "Gzip",
    "MsgPack",
    "Pickle",
    "Raw",
    "Signed",
    "Text",
    "Zstd",
    "register",
    "resolve",
]

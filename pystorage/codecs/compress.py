"""Transforms that compress bytes."""

from __future__ import annotations

import gzip
import threading
from typing import Any

import attrs

from pystorage.codecs.base import BaseCodec
from pystorage.codecs.serializers import _require


@attrs.frozen
class Gzip(BaseCodec):
    """gzip (DEFLATE) compression from the standard library."""

    name = "gzip"
    kind = "transform"
    compresslevel: int = attrs.field(default=6, validator=attrs.validators.in_(range(10)))

    def encode(self, value: Any) -> bytes:
        # mtime=0 makes equal values encode to equal bytes.
        return gzip.compress(value, self.compresslevel, mtime=0)

    def decode(self, data: bytes) -> Any:
        if not data:  # the standard library reads nothing as an empty value
            raise EOFError("empty gzip data")
        return gzip.decompress(data)


@attrs.frozen
class Zstd(BaseCodec):
    """Zstandard compression (``pip install 'pystorage-layers[zstd]'``): faster than gzip."""

    name = "zstd"
    kind = "transform"
    level: int = 3
    # A compression context is costly to build and not thread-safe: one per thread.
    _contexts: threading.local = attrs.field(
        factory=threading.local, init=False, repr=False, eq=False
    )

    def __attrs_post_init__(self) -> None:
        _require("zstandard", "zstd")

    def _bind(self) -> Any:
        """This thread's compress and decompress methods, made on first use."""
        import zstandard

        contexts = self._contexts
        contexts.compress = zstandard.ZstdCompressor(level=self.level).compress
        contexts.decompress = zstandard.ZstdDecompressor().decompress
        return contexts

    def encode(self, value: Any) -> bytes:
        try:
            compress = self._contexts.compress
        except AttributeError:
            compress = self._bind().compress
        data: bytes = compress(value)
        return data

    def decode(self, data: bytes) -> Any:
        try:
            decompress = self._contexts.decompress
        except AttributeError:
            decompress = self._bind().decompress
        return decompress(data)

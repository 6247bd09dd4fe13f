"""Group 4: every codec through Storage(Codec(c), Memory()) against the library called
directly, storing the bytes in a dict.

One operation is a set and a get of the same key. The anchors are written inline, one
small loop per codec, with the same library calls and options the codec uses, so both
sides produce the same bytes (checked before timing); zstandard's anchor reuses one
compressor and one decompressor, its cheapest use.
"""

from __future__ import annotations

import gzip
import json
import pickle
from collections.abc import Callable
from typing import Any

import msgpack
import zstandard

from benchmarks.harness import Thunk, compare, fixed
from benchmarks.model import GroupResult, Row, Settings, Target, row
from benchmarks.values import document
from pystorage.layers import Codec, Memory
from pystorage.storage import Storage

VS_LIBRARY = Target(1.05)
PROTOCOL = pickle.HIGHEST_PROTOCOL
ZSTD_LEVEL = 3
GZIP_LEVEL = 6

Anchor = Callable[[Any, list[str], dict[str, bytes]], Thunk]
Encoder = Callable[[Any], bytes]


def _json(value: Any, keys: list[str], store: dict[str, bytes]) -> Thunk:
    dumps, loads = json.dumps, json.loads

    def run() -> None:
        for key in keys:
            store[key] = dumps(value, ensure_ascii=False).encode()
            loads(store[key])

    return run


def _pickle(value: Any, keys: list[str], store: dict[str, bytes]) -> Thunk:
    dumps, loads = pickle.dumps, pickle.loads

    def run() -> None:
        for key in keys:
            store[key] = dumps(value, PROTOCOL)
            loads(store[key])

    return run


def _msgpack(value: Any, keys: list[str], store: dict[str, bytes]) -> Thunk:
    packb, unpackb = msgpack.packb, msgpack.unpackb

    def run() -> None:
        for key in keys:
            store[key] = packb(value, use_bin_type=True)
            unpackb(store[key], raw=False, strict_map_key=False)

    return run


def _gzip_pickle(value: Any, keys: list[str], store: dict[str, bytes]) -> Thunk:
    dumps, loads = pickle.dumps, pickle.loads
    compress, decompress = gzip.compress, gzip.decompress

    def run() -> None:
        for key in keys:
            store[key] = compress(dumps(value, PROTOCOL), GZIP_LEVEL, mtime=0)
            loads(decompress(store[key]))

    return run


def _zstd_pickle(value: Any, keys: list[str], store: dict[str, bytes]) -> Thunk:
    dumps, loads = pickle.dumps, pickle.loads
    compress = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress
    decompress = zstandard.ZstdDecompressor().decompress

    def run() -> None:
        for key in keys:
            store[key] = compress(dumps(value, PROTOCOL))
            loads(decompress(store[key]))

    return run


def _zstd_msgpack(value: Any, keys: list[str], store: dict[str, bytes]) -> Thunk:
    packb, unpackb = msgpack.packb, msgpack.unpackb
    compress = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress
    decompress = zstandard.ZstdDecompressor().decompress

    def run() -> None:
        for key in keys:
            store[key] = compress(packb(value, use_bin_type=True))
            unpackb(decompress(store[key]), raw=False, strict_map_key=False)

    return run


def _text(value: Any, keys: list[str], store: dict[str, bytes]) -> Thunk:
    def run() -> None:
        for key in keys:
            store[key] = value.encode()
            store[key].decode()

    return run


def _raw(value: Any, keys: list[str], store: dict[str, bytes]) -> Thunk:
    def run() -> None:
        for key in keys:
            store[key] = value
            store[key]

    return run


def _zstd_of(encode: Encoder) -> Encoder:
    return lambda value: zstandard.compress(encode(value), ZSTD_LEVEL)


def _pickled(value: Any) -> bytes:
    return pickle.dumps(value, PROTOCOL)


def _packed(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


#: codec name -> (anchor label, anchor loop, reference encoder, kind of value)
CODECS: dict[str, tuple[str, Anchor, Encoder, str]] = {
    "json": (
        "json.dumps/loads",
        _json,
        lambda v: json.dumps(v, ensure_ascii=False).encode(),
        "dict",
    ),
    "pickle": ("pickle.dumps/loads", _pickle, _pickled, "dict"),
    "msgpack": ("msgpack.packb/unpackb", _msgpack, _packed, "dict"),
    "gzip-pickle": (
        "pickle + gzip.compress/decompress",
        _gzip_pickle,
        lambda v: gzip.compress(_pickled(v), GZIP_LEVEL, mtime=0),
        "dict",
    ),
    "zstd-pickle": (
        "pickle + ZstdCompressor/Decompressor",
        _zstd_pickle,
        _zstd_of(_pickled),
        "dict",
    ),
    "zstd-msgpack": (
        "msgpack + ZstdCompressor/Decompressor",
        _zstd_msgpack,
        _zstd_of(_packed),
        "dict",
    ),
    "text": ("str.encode/bytes.decode", _text, lambda v: v.encode(), "str"),
    "raw": ("bytes as they are", _raw, bytes, "bytes"),
}


def value_of(kind: str, size: int) -> Any:
    doc = document(size)
    if kind == "dict":
        return doc
    text = json.dumps(doc)
    return text if kind == "str" else text.encode()


def run(settings: Settings, result: GroupResult) -> None:
    rounds = settings.pick(21, 2)
    sizes = {"1 KB": (1_000, settings.pick(300, 20)), "100 KB": (100_000, settings.pick(6, 2))}
    for codec, (label, anchor, reference, kind) in CODECS.items():
        for size_name, (size, ops) in sizes.items():
            value = value_of(kind, size)
            result.rows.append(
                _one(
                    codec,
                    f"{codec} {size_name} {kind}",
                    value,
                    label,
                    anchor,
                    reference,
                    ops,
                    rounds,
                )
            )
    result.notes.append(
        f"{rounds} rounds; an op is storage[key] = value then storage[key] (the anchor: "
        "store[key] = encode(value) then decode(store[key])). The 1 KB dict is a small "
        "document of records; the 100 KB value is the same kind of document, larger; text "
        "and raw values are its JSON as str and bytes."
    )


def _one(
    codec: str,
    operation: str,
    value: Any,
    label: str,
    anchor: Anchor,
    reference: Encoder,
    ops: int,
    rounds: int,
) -> Row:
    memory = Memory()
    storage = Storage(Codec(codec), memory)
    keys = [f"key-{i}" for i in range(ops)]
    storage[keys[0]] = value
    encoded = memory.get(keys[0])
    if encoded != reference(value):
        raise AssertionError(f"{codec}: the anchor does not produce the codec's bytes")
    setitem, getitem = storage.__setitem__, storage.__getitem__

    def mine() -> None:
        for key in keys:
            setitem(key, value)
            getitem(key)

    store: dict[str, bytes] = {}
    timed = compare(
        {"PyStorage": fixed(mine, ops), "anchor": fixed(anchor(value, keys, store), ops)}, rounds
    )
    extra = timed["PyStorage"].median - timed["anchor"].median
    return row(
        operation,
        timed["PyStorage"],
        f"{label} + dict",
        timed["anchor"],
        VS_LIBRARY,
        f"{len(encoded):,} B encoded; {extra:+,.0f} ns/op",
    )

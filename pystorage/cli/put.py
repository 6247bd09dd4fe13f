"""``pystorage put URL KEY [VALUE | -f FILE | -]``: store one value."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pystorage.cli.common import Commands, UsageError, opened, seconds
from pystorage.urls import parse

if TYPE_CHECKING:
    from pystorage.codecs import BaseCodec


def add(commands: Commands, debug: argparse.ArgumentParser) -> None:
    """Add the parser of ``put`` to ``commands``."""
    put = commands.add_parser(
        "put",
        parents=[debug],
        help="store a value",
        description="Store VALUE as a str, or the bytes of FILE (-f) or of stdin (-). "
        "With --json the text is parsed as JSON and the object stored.",
    )
    put.add_argument("url", metavar="URL")
    put.add_argument("key", metavar="KEY")
    put.add_argument("value", metavar="VALUE", nargs="?", help="the value; - reads stdin")
    put.add_argument("-f", "--file", metavar="FILE", help="store the bytes of FILE")
    put.add_argument("--json", action="store_true", help="parse the value as JSON")
    put.add_argument(
        "--ttl", type=seconds, metavar="SECONDS", help="expire the entry (the stack must expire)"
    )
    put.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``pystorage put URL KEY [VALUE | -f FILE | -]``: store one value."""
    url = parse(args.url)
    value = _value_to_put(args, url.codec)
    with opened(url, "write") as storage:
        storage.set(args.key, value, ttl=args.ttl)
    return 0


def _value_to_put(args: argparse.Namespace, codec: BaseCodec | None) -> Any:
    """The value a ``put`` command line describes for a stack with ``codec``: str, bytes
    or (with --json, or a JSON codec given a file) an object."""
    if args.file is not None and args.value is not None:
        raise UsageError("put takes a VALUE or -f FILE, not both")
    if args.file is not None:
        data: bytes | str = Path(args.file).read_bytes()
    elif args.value == "-":
        data = sys.stdin.buffer.read()
    elif args.value is not None:
        data = args.value
    else:
        raise UsageError("put needs a VALUE, -f FILE, or - to read stdin")
    parse_json = args.json
    if isinstance(data, bytes) and not _stores_bytes(codec):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(
                f"the value is not UTF-8 text, and codec={_label(codec)} stores text: "
                "use codec=raw (or msgpack, pickle) for bytes"
            ) from None
        # A file given to a JSON storage is a JSON document, not a string to quote.
        parse_json = parse_json or _serializer(codec) == "json"
    if not parse_json:
        return data
    try:
        return json.loads(data)
    except ValueError as exc:
        raise UsageError(f"the value is not valid JSON: {exc}") from None


def _stores_bytes(codec: BaseCodec | None) -> bool:
    """Whether ``codec`` takes bytes as a value (raw, pickle, msgpack do; text, json don't)."""
    if codec is None:
        return True
    try:
        codec.encode(b"")
    except Exception:  # the codec's own refusal, whatever its type
        return False
    return True


def _serializer(codec: BaseCodec | None) -> str:
    return codec.stages[0].name if codec is not None else ""


def _label(codec: BaseCodec | None) -> str:
    return codec.label if codec is not None else "none"

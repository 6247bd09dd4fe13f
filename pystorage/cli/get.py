"""``pystorage get URL KEY``: a value on stdout or in a file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pystorage.cli.common import Commands, encode_text, opened
from pystorage.urls import parse


def add(commands: Commands, debug: argparse.ArgumentParser) -> None:
    """Add the parser of ``get`` to ``commands``."""
    get = commands.add_parser(
        "get",
        parents=[debug],
        help="print a value",
        description="Write the value of KEY to stdout: bytes as they are, str as UTF-8, "
        "other objects as JSON (one line) if they can be, else as their repr.",
    )
    get.add_argument("url", metavar="URL")
    get.add_argument("key", metavar="KEY")
    get.add_argument("-o", "--output", metavar="FILE", help="write the value to FILE instead")
    get.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``pystorage get URL KEY``: the value on stdout or in a file."""
    with opened(parse(args.url), "read") as storage:
        value = storage[args.key]
    if args.output is None:
        sys.stdout.buffer.write(render(value))
        sys.stdout.buffer.flush()
    else:  # a str exactly as stored, so that put -f and get -o round-trip
        Path(args.output).write_bytes(render(value, line=False))
    return 0


def render(value: Any, line: bool = True) -> bytes:
    """Bytes as they are; str as UTF-8, ending with a newline when ``line``; other
    objects as a JSON line if they can be, else as their repr."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return encode_text(value) + (b"\n" if line else b"")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        text = repr(value)
    return encode_text(text) + b"\n"

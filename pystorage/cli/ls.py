"""``pystorage ls URL``: every key, one a line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from pystorage.cli.common import Commands, encode_text, opened
from pystorage.urls import parse


def add(commands: Commands, debug: argparse.ArgumentParser) -> None:
    """Add the parser of ``ls`` to ``commands``."""
    ls = commands.add_parser(
        "ls", parents=[debug], help="list the keys", description="Print every key, one a line."
    )
    ls.add_argument("url", metavar="URL")
    ls.add_argument("-s", "--sort", action="store_true", help="sort the keys")
    ls.add_argument(
        "-0", "--null", action="store_true", help="end each key with NUL instead of a newline"
    )
    ls.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``pystorage ls URL``: every key, one a line."""
    end = b"\0" if args.null else b"\n"
    out = sys.stdout.buffer
    with opened(parse(args.url), "keys") as storage:
        keys: Iterator[str] | list[str] = iter(storage)
        if args.sort:
            keys = sorted(keys)
        for key in keys:
            out.write(encode_text(key) + end)
    out.flush()
    return 0

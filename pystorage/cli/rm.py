"""``pystorage rm URL KEY...``: remove keys."""

from __future__ import annotations

import argparse

from pystorage.cli.common import Commands, Failure, opened
from pystorage.urls import parse


def add(commands: Commands, debug: argparse.ArgumentParser) -> None:
    """Add the parser of ``rm`` to ``commands``."""
    rm = commands.add_parser(
        "rm", parents=[debug], help="remove keys", description="Remove each KEY."
    )
    rm.add_argument("url", metavar="URL")
    rm.add_argument("keys", metavar="KEY", nargs="+")
    rm.add_argument("-f", "--force", action="store_true", help="ignore missing keys")
    rm.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``pystorage rm URL KEY...``: remove keys; a missing one is an error unless --force."""
    missing = []
    with opened(parse(args.url), "keys") as storage, storage.top.exclusive():
        # In the storage's exclusive section: processes keeping a count of its entries
        # (limit=) learn that it changed.
        for key in args.keys:
            try:
                del storage[key]
            except KeyError:
                missing.append(key)
    if missing and not args.force:
        names = ", ".join(map(repr, missing))
        raise Failure(f"no such key {names}" if len(missing) == 1 else f"no such keys {names}")
    return 0

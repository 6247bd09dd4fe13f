"""``pystorage stats URL``: the number of entries and the stack's counters."""

from __future__ import annotations

import argparse

from pystorage.cli.common import Commands, opened
from pystorage.urls import parse


def add(commands: Commands, debug: argparse.ArgumentParser) -> None:
    """Add the parser of ``stats`` to ``commands``."""
    stats = commands.add_parser(
        "stats",
        parents=[debug],
        help="count entries",
        description="Print the number of entries and the stack's counters, one "
        "'name value' a line (counters count this process's operations only).",
    )
    stats.add_argument("url", metavar="URL")
    stats.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``pystorage stats URL``: ``entries N`` and the stack's counters, one a line."""
    with opened(parse(args.url), "keys") as storage:
        lines = [("entries", len(storage)), *storage.stats().items()]
    for name, value in lines:
        print(name, value)
    return 0

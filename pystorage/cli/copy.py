"""``pystorage copy SRC DST``: every entry of SRC into DST, in concurrent batches
(``batches``), each with the time it has left; with --delete, then removed from SRC.

A batch is ``copy_batch`` or ``delete_batch`` as this module names them (a test stands in
for one here), and SRC and DST are told apart by ``same_storage``, also named here."""

from __future__ import annotations

import argparse
import sys
import time

from pystorage.cli.batches import (
    Plan,
    Tally,
    copy_batch,
    delete_batch,
    run_batches,
)
from pystorage.cli.common import (
    FAILURE,
    PROG,
    Commands,
    UsageError,
    check_codec,
    check_folder,
    one_line,
    opened,
    positive_int,
)
from pystorage.cli.identity import same_storage
from pystorage.cli.progress import Progress, make_progress
from pystorage.urls import ParsedURL, parse

#: How many failed keys a copy names; the others are only counted.
SHOWN_FAILURES = 5


def add(commands: Commands, debug: argparse.ArgumentParser) -> None:
    """Add the parser of ``copy`` to ``commands``."""
    copy = commands.add_parser(
        "copy",
        parents=[debug],
        help="copy every entry to another storage",
        description="Copy every entry of SRC to DST. Values are decoded by SRC's codec and "
        "encoded by DST's, so one copy changes codec or backend. Entries DST cannot "
        "take (e.g. a set into JSON) are counted as failed and named, and make the exit "
        "status 1; the others are copied, each with the time it has left.",
        epilog="Progress goes to stderr: a redrawn bar on a terminal, plain lines "
        "otherwise; a summary line ends every copy.",
    )
    copy.add_argument("src", metavar="SRC", help="the storage to read")
    copy.add_argument("dst", metavar="DST", help="the storage to write")
    copy.add_argument(
        "--batch", type=positive_int, default=100, metavar="N", help="keys per batch (100)"
    )
    copy.add_argument(
        "--workers", type=positive_int, default=4, metavar="N", help="batches in flight (4)"
    )
    copy.add_argument(
        "--resume", action="store_true", help="skip keys DST already has (listed once at start)"
    )
    copy.add_argument(
        "--delete", action="store_true", help="remove each entry from SRC once it is copied"
    )
    copy.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    copy.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``pystorage copy SRC DST``: every entry of SRC into DST, in concurrent batches;
    with --delete, then removes from SRC what DST holds at the end."""
    src_url, dst_url = parse(args.src), parse(args.dst)
    check_folder(src_url)
    check_codec(src_url)
    check_codec(dst_url)
    if src_url.tags and not dst_url.tags:
        raise UsageError(
            "SRC keeps tags (tags=1) and DST does not: its entries would lose their tags, "
            "and invalidate_tag would no longer reach them. Add tags=1 to DST"
        )
    _refuse_one_storage(src_url, dst_url, args.delete)
    with (
        opened(src_url, "read") as src,
        opened(dst_url, "write") as dst,
        opened(src_url, "keys") as src_keys,
    ):
        keys = list(dict.fromkeys(src))  # a Redis SCAN may list a key twice
        present = frozenset(dst).intersection(keys) if args.resume else frozenset()
        plan = Plan(present=present, delete=args.delete)
        tally = Tally(total=len(keys), present=len(present))
        progress = make_progress(sys.stderr, tally, quiet=args.quiet)
        started = time.monotonic()
        try:
            try:
                run_batches(copy_batch, src, dst, keys, args, plan, tally, progress)
            finally:
                progress.finish(tally.done, tally.failures)
            if args.delete:
                # Only now: a later batch may have evicted an earlier one from DST. The
                # deletes go through SRC's keys-only stack: no layer of it decodes a value.
                if not args.quiet:
                    print(f"{PROG}: deleting from SRC what DST holds", file=sys.stderr)
                tally.deleting = True
                silent = Progress(sys.stderr, len(tally.held), time.monotonic)
                run_batches(delete_batch, src_keys, dst, tally.held, args, plan, tally, silent)
        finally:
            # Also when an error stops the copy (main prints it last): the counts then
            # say what was done before it, and what it left undone.
            tally.evicted = dst.stats().get("evictions", 0)
            print(summary(tally, args.delete, time.monotonic() - started), file=sys.stderr)
            status = _report(tally)
    return status


def _refuse_one_storage(src_url: ParsedURL, dst_url: ParsedURL, delete: bool) -> None:
    """A usage error if SRC and DST hold the same entries, however their URLs are spelled,
    or if --delete would move entries into a memory that ends with this command.

    Only their backends are opened: a DST with limit= would evict at its opening.
    """
    from pystorage.layers import LRU, Memory

    with (
        src_url.build(limit=False, values=False) as src,
        dst_url.build(limit=False, values=False) as dst,
    ):
        if same_storage(src.layers[-1], dst.layers[-1]):
            raise UsageError("SRC and DST are the same storage: copy to another place")
        if delete and isinstance(dst.layers[-1], (Memory, LRU)):
            raise UsageError("DST is a memory of this command, gone when it ends: no --delete")


def summary(tally: Tally, delete: bool, elapsed: float) -> str:
    """The last line of a copy: what was copied, skipped, failed, deleted and evicted,
    and how fast."""
    parts = [
        f"copied {tally.copied}",
        f"skipped {tally.skipped}",
        f"failed {tally.failures}",
    ]
    if tally.unwritten:
        parts.append("stopped by the error below")
    if tally.gone:
        parts.append(f"gone from SRC {tally.gone}")
    if delete:
        parts += [f"deleted from SRC {tally.deleted}", f"kept in SRC {len(tally.kept)}"]
    if tally.undeleted:
        parts.append(
            f"deleting stopped by the error below, {tally.undeleted} entries held by DST "
            "perhaps still in SRC"
        )
    if tally.evicted:
        parts.append(f"evicted by DST's limit {tally.evicted}")
    rate = tally.copied / elapsed if elapsed > 0 else 0.0
    return f"{PROG}: {', '.join(parts)} in {elapsed:.2f} s ({rate:,.0f} entries/s)"


def _report(tally: Tally) -> int:
    """Name the first few failed and kept keys on stderr; the exit status of the copy."""
    for what, entries in (("failed", tally.failed), ("kept in SRC", tally.kept)):
        for key, message in entries[:SHOWN_FAILURES]:
            print(f"{PROG}: {what} {key!r}: {one_line(message)}", file=sys.stderr)
        if len(entries) > SHOWN_FAILURES:
            more = len(entries) - SHOWN_FAILURES
            print(f"{PROG}: ... and {more} more {what}", file=sys.stderr)
    return FAILURE if tally.failed or tally.kept else 0

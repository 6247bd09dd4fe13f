"""Tags (issue 19): what a tag costs a read, and what an invalidation costs, per backend.

On each backend one stack with a ``Tags`` layer on top (``Tags(), Codec("raw",
tagged=True), backend``) holds untagged entries and entries with one tag. Rows:

* a read of a tagged entry against a read of an untagged one, same stack, same value
  size (the price of reading the tag's token: one more lookup on the backend);
* a read of an untagged entry against the same read on the stack without ``Tags`` (the
  price of the envelope every value carries);
* ``invalidate_tag`` of a tag that 100,000 entries carry (10,000 on S3, 1,000 in quick
  mode) against ``invalidate_tag`` of a tag that one entry carries, on the same stack: an
  invalidation is one write of a token, whatever the number of entries, so the ratio
  stays near 1 (a scan would make it 100,000 times one entry's work); the note gives
  one overwrite of a 100-byte value, the nearest write a store does.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count

from benchmarks.harness import compare, fixed
from benchmarks.model import GroupResult, Row, Settings, Target, row
from pystorage.layers import Codec, Files, Layer, Memory, Redis, SQLite, Tags
from pystorage.storage import Storage
from pystorage.testing import RedisServer, SeaweedS3Server

VALUE = b"v" * 100
#: A tagged read reads the value, then the tag's token: at most two reads' cost.
TAGGED = Target(2.2, "<= 2.2 (one more lookup)")
#: The envelope of an untagged value: a frame to check, no lookup.
ENVELOPE = Target(1.25)
#: In memory a get is a dict lookup: the token's lookup, the frame and the layer's hop
#: cost as much again, several times over.
TAGGED_MEMORY = Target(5.0, "<= 5 (in-process)")
ENVELOPE_MEMORY = Target(3.0, "<= 3 (in-process)")
#: An invalidation is one write, whatever the number of entries.
INVALIDATE = Target(2.0, "<= 2 (one write, no scan)")
BACKENDS = ("memory", "sqlite", "files", "redis", "s3")


def run(settings: Settings, result: GroupResult) -> None:
    for name in BACKENDS:
        with _backend(name, settings, result) as make:
            if make is not None:
                result.rows += _measure(name, make, settings, result)
    result.notes.append(
        "100-byte values, one tag per tagged entry; stacks: Storage(Tags(), "
        "Codec('raw', tagged=True), backend) against Storage(Codec('raw'), backend). "
        "Invalidations: entries written with set_many(..., tags=[tag]) first."
    )


@contextmanager
def _backend(
    name: str, settings: Settings, result: GroupResult
) -> Iterator[Callable[[], Layer] | None]:
    """A maker of fresh backends on one store (a server started for the group)."""
    prefixes = (f"b{number}:" for number in count())
    if name == "memory":
        yield Memory
    elif name in ("sqlite", "files"):
        folder = tempfile.mkdtemp(prefix="pystorage-bench-tags-", dir=settings.scratch)
        made = count()
        try:
            if name == "sqlite":
                yield lambda: SQLite(f"{folder}/{next(made)}.db")
            else:
                yield lambda: Files(f"{folder}/{next(made)}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    elif name == "redis":
        try:
            server = RedisServer().start()
        except RuntimeError as exc:
            result.notes.append(f"Redis rows skipped: cannot start redis-server: {exc}")
            yield None
            return
        try:
            yield lambda: Redis(url=server.url, prefix=next(prefixes))
        finally:
            server.stop()
    else:
        if settings.quick:
            result.notes.append("S3 rows skipped in quick mode (SeaweedFS takes seconds).")
            yield None
            return
        yield from _s3(result)


def _s3(result: GroupResult) -> Iterator[Callable[[], Layer] | None]:
    from pystorage.layers.s3 import S3

    try:
        server = SeaweedS3Server().start()
    except RuntimeError as exc:
        result.notes.append(f"S3 rows skipped: cannot start SeaweedFS: {exc}")
        yield None
        return
    try:
        options = server.client_kwargs()
        import boto3

        boto3.client("s3", **options).create_bucket(Bucket="pystorage-bench-tags")
        folders = (f"f{number}" for number in count())
        yield lambda: S3(
            "pystorage-bench-tags",
            next(folders),
            endpoint_url=options["endpoint_url"],
            region=options["region_name"],
            aws_access_key_id=options["aws_access_key_id"],
            aws_secret_access_key=options["aws_secret_access_key"],
        )
    finally:
        server.stop()


def _measure(
    name: str, make: Callable[[], Layer], settings: Settings, result: GroupResult
) -> list[Row]:
    remote = name in ("redis", "s3")
    ops = settings.pick(100 if name == "s3" else 300 if remote else 3000, 20)
    rounds = settings.pick(11, 3)
    tagged = Storage(Tags(), Codec("raw", tagged=True), make())
    plain = Storage(Codec("raw"), make())
    keys = [f"k{i}" for i in range(100)]
    tagged.set_many(dict.fromkeys(keys, VALUE))
    tagged.set_many({f"t{i}": VALUE for i in range(100)}, tags=["user:7"])
    plain.set_many(dict.fromkeys(keys, VALUE))
    untagged_picks = (keys * (ops // 100 + 1))[:ops]
    tagged_picks = [f"t{key[1:]}" for key in untagged_picks]
    get_tagged, get_plain = tagged.__getitem__, plain.__getitem__
    timed = compare(
        {
            "tagged": fixed(lambda: deque(map(get_tagged, tagged_picks), 0), ops),
            "untagged": fixed(lambda: deque(map(get_tagged, untagged_picks), 0), ops),
            "plain": fixed(lambda: deque(map(get_plain, untagged_picks), 0), ops),
        },
        rounds,
    )
    rows = [
        row(
            f"{name}: get, tagged",
            timed["tagged"],
            "get, untagged",
            timed["untagged"],
            TAGGED_MEMORY if name == "memory" else TAGGED,
        ),
        row(
            f"{name}: get, untagged, Tags stack",
            timed["untagged"],
            "get, no Tags layer",
            timed["plain"],
            ENVELOPE_MEMORY if name == "memory" else ENVELOPE,
        ),
        _invalidation(name, tagged, settings, result),
    ]
    tagged.close()
    plain.close()
    return rows


def _invalidation(name: str, storage: Storage, settings: Settings, result: GroupResult) -> Row:
    entries = settings.pick(10_000 if name == "s3" else 100_000, 1_000)
    chunk = 1_000
    for start in range(0, entries, chunk):
        storage.set_many({f"e{i}": VALUE for i in range(start, start + chunk)}, tags=["big"])
    storage.set("one", VALUE, tags=["small"])
    storage.set("rewritten", VALUE)
    assert storage.get("e0") == VALUE
    rounds = settings.pick(21, 3)
    timed = compare(
        {
            "big": fixed(lambda: storage.invalidate_tag("big"), 1),
            "small": fixed(lambda: storage.invalidate_tag("small"), 1),
            "set": fixed(lambda: storage.set("rewritten", VALUE), 1),
        },
        rounds,
    )
    assert storage.get("e0") is None and storage.get(f"e{entries - 1}") is None
    return row(
        f"{name}: invalidate_tag, {entries:,} entries",
        timed["big"],
        "invalidate_tag, 1 entry",
        timed["small"],
        INVALIDATE,
        f"one overwrite of a 100 B value: {timed['set'].median / 1000:.1f} µs",
    )

"""What memoize's lock across processes costs a miss, uncontended, on each backend.

A miss of a memoized function reads the entry, takes the key's lock, reads again,
computes (here: nothing), writes and gives the lock back. The same stack is timed with
the backend's lease (``pystorage.layers.leases``) and with the in-process lock that
memoize took on these backends before (and still takes on Memory): the ratio is what
holding the lock across processes adds to a miss. Hits take no lock and pay nothing.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import attrs

from benchmarks.harness import compare, fixed
from benchmarks.model import GroupResult, Settings, row
from pystorage.layers import Codec, Files, Redis, SQLite
from pystorage.layers.base import Layer, Wrapper, key_locks
from pystorage.storage import Storage
from pystorage.testing import RedisServer, SeaweedS3Server


@attrs.define(eq=False)
class _Through(Wrapper):
    """Passes everything down: the lease side's stack has the same depth."""


@attrs.define(eq=False)
class _InProcess(_Through):
    """Locks a key in this process only, as memoize did on these backends before."""

    def key_lock(self, key: str) -> AbstractContextManager[Any]:
        return key_locks()(key)


def run(settings: Settings, result: GroupResult) -> None:
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        backends: dict[str, Callable[[], Layer] | None] = {
            "files": lambda: Files(folder / "files"),
            "sqlite": lambda: SQLite(folder / "cache.db"),
        }
        try:
            redis_server = RedisServer().start()
            stack.callback(redis_server.stop)
            backends["redis"] = lambda: Redis(url=redis_server.url, prefix="bench:")
        except RuntimeError as exc:
            result.notes.append(f"no Redis row: cannot start redis-server: {exc}")
        if settings.quick:
            result.notes.append("no S3 row in quick mode (SeaweedFS takes 3-7 s to start)")
        else:
            backends["s3"] = _s3_backend(stack, result)
        rounds = settings.pick(11, 3)
        for name, make in backends.items():
            if make is None:
                continue
            # A miss on S3 is a few requests of a few ms each: fewer per round.
            calls = settings.pick(30, 5) if name == "s3" else settings.pick(200, 20)
            lease = Storage(_Through(), Codec("pickle"), make())
            local = Storage(_InProcess(), Codec("pickle"), make())
            timed = compare(
                {
                    "lease": fixed(_misses(lease, "lease", calls), calls),
                    "local": fixed(_misses(local, "local", calls), calls),
                },
                rounds,
            )
            lease.close()
            local.close()
            result.rows.append(
                row(
                    f"memoize miss, lease ({name})",
                    timed["lease"],
                    "the same, in-process lock",
                    timed["local"],
                )
            )
        result.notes.append(
            f"200 misses per round (30 on S3; a new argument each), {rounds} rounds, "
            "no contention; stack: Storage(Codec('pickle'), backend), a pass-through layer "
            "on top."
        )


def _misses(storage: Storage, name: str, calls: int) -> Callable[[], None]:
    """A round of ``calls`` misses: each call has an argument never seen before (and the
    two sides, on one store, entries of their own)."""
    numbers: Iterator[int] = itertools.count()

    @storage.memoize(key=name)
    def square(x: int) -> int:
        return x * x

    def round_of_misses() -> None:
        for _ in range(calls):
            square(next(numbers))

    return round_of_misses


def _s3_backend(stack: ExitStack, result: GroupResult) -> Callable[[], Layer] | None:
    from pystorage.layers.s3 import S3

    try:
        server = SeaweedS3Server().start()
    except RuntimeError as exc:
        result.notes.append(f"no S3 row: cannot start SeaweedFS: {exc}")
        return None
    stack.callback(server.stop)
    options = server.client_kwargs()
    import boto3

    boto3.client("s3", **options).create_bucket(Bucket="pystorage-leases")
    return lambda: S3(
        "pystorage-leases",
        endpoint_url=options["endpoint_url"],
        region=options["region_name"],
        aws_access_key_id=options["aws_access_key_id"],
        aws_secret_access_key=options["aws_secret_access_key"],
    )

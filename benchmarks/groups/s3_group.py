"""Group 6: Storage(Codec("raw"), S3(...)) against raw boto3 on a local SeaweedFS.

PyStorage's S3 layer builds its own client; the raw client is built with the same
configuration (standard retries, a pool of ``WORKERS + 8`` connections). Single ops are
compared with get_object/put_object/head_object; batches of 200 are compared as
*speedups* over 200 sequential calls: PyStorage's get_many/set_many/delete_many against
raw boto3's best concurrent form (a ThreadPoolExecutor of the same size for gets and
puts, one DeleteObjects request for deletes). The whole comparison runs twice: as is,
and with 20 ms slept in a ``before-send.s3.*`` hook on both clients (a remote S3).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from benchmarks.harness import Subject, Thunk, compare, fixed
from benchmarks.model import GroupResult, Row, Settings, Target, row
from pystorage.layers import Codec
from pystorage.storage import Storage
from pystorage.testing import SeaweedS3Server

BUCKET = "pystorage-bench"
WORKERS = 16
BATCH = 200
LATENCY = 0.020
VALUE = b"v" * 1024
SINGLE = Target(1.05)
SPEEDUP = Target(round(1 / 0.9, 3), ">= 0.9x boto3's speedup")


@dataclass(frozen=True)
class Pace:
    """How much to measure: network ops are slow, and slower still with latency."""

    label: str
    single_ops: int
    sequential_ops: int
    rounds: int


def run(settings: Settings, result: GroupResult) -> None:
    if settings.quick:
        result.skipped = "skipped in quick mode (SeaweedFS takes 3-7 s to start)"
        return
    try:
        from pystorage.layers.s3 import S3
    except Exception as exc:  # the layer is being written: any failure to import
        result.skipped = f"not available yet ({type(exc).__name__}: {exc})"
        return
    try:
        server = SeaweedS3Server().start()
    except RuntimeError as exc:
        result.skipped = f"cannot start SeaweedFS: {exc}"
        return
    try:
        result.notes.append(f"SeaweedFS started in {server.startup_seconds:.1f} s.")
        options = server.client_kwargs()
        setup = _client(options)
        setup.create_bucket(Bucket=BUCKET)
        raw = _client(options)
        layer = S3(
            BUCKET,
            endpoint_url=options["endpoint_url"],
            region=options["region_name"],
            max_workers=WORKERS,
            aws_access_key_id=options["aws_access_key_id"],
            aws_secret_access_key=options["aws_secret_access_key"],
        )
        storage = Storage(Codec("raw"), layer)
        with ThreadPoolExecutor(WORKERS) as pool:
            bench = Bench(storage, raw, setup, pool)
            result.rows += bench.all(Pace("", 40, 40, 11))
            for client in (raw, layer.client):
                client.meta.events.register("before-send.s3.*", _sleep)
            result.rows += bench.all(Pace(" +20 ms", 8, 12, 7))
        storage.close()
        result.notes.append(
            f"1 KB values; batches of {BATCH}; PyStorage S3(max_workers={WORKERS}) against "
            f"a ThreadPoolExecutor({WORKERS}) of raw calls. Sequential costs are timed per "
            "call (fewer calls per round) and scaled to 200. '+20 ms': every request of "
            "both clients sleeps 20 ms before it is sent."
        )
    finally:
        server.stop()


def _client(options: Mapping[str, str]) -> Any:
    import boto3.session
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=WORKERS + 8,
    )
    session: Any = boto3.session.Session()
    return session.client("s3", config=config, **options)


def _sleep(**_: Any) -> None:
    time.sleep(LATENCY)


class Bench:
    def __init__(self, storage: Storage, raw: Any, setup: Any, pool: ThreadPoolExecutor) -> None:
        self.storage = storage
        self.raw = raw
        self.setup = setup
        self.pool = pool
        self.keys = [f"obj-{i}" for i in range(BATCH)]
        self._fill(self.keys)

    def all(self, pace: Pace) -> list[Row]:
        return self.singles(pace) + self.batches(pace)

    # -- raw boto3 --------------------------------------------------------------------

    def raw_get(self, key: str) -> bytes:
        data: bytes = self.raw.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return data

    def raw_put(self, key: str) -> None:
        self.raw.put_object(Bucket=BUCKET, Key=key, Body=VALUE)

    def raw_head(self, key: str) -> None:
        self.raw.head_object(Bucket=BUCKET, Key=key)

    def raw_delete(self, key: str) -> None:
        self.raw.delete_object(Bucket=BUCKET, Key=key)

    def raw_delete_objects(self, keys: list[str]) -> None:
        objects: Any = [{"Key": key} for key in keys]
        self.raw.delete_objects(Bucket=BUCKET, Delete={"Objects": objects, "Quiet": True})

    def _fill(self, keys: list[str]) -> None:
        """Untimed: make sure ``keys`` exist, with the setup client (never slowed)."""

        def put(key: str) -> None:
            self.setup.put_object(Bucket=BUCKET, Key=key, Body=VALUE)

        deque(self.pool.map(put, keys), 0)

    # -- the comparisons --------------------------------------------------------------

    def singles(self, pace: Pace) -> list[Row]:
        picks = self.keys[: pace.single_ops]
        storage = self.storage

        def each(call: Callable[[str], object]) -> Subject:
            return fixed(lambda: deque(map(call, picks), 0), len(picks))

        timed = compare(
            {
                "get": each(storage.__getitem__),
                "get_object": each(self.raw_get),
                "set": each(lambda key: storage.__setitem__(key, VALUE)),
                "put_object": each(self.raw_put),
                "in": each(storage.__contains__),
                "head_object": each(self.raw_head),
            },
            pace.rounds,
        )
        return [
            row(f"get{pace.label}", timed["get"], "boto3 get_object", timed["get_object"], SINGLE),
            row(f"set{pace.label}", timed["set"], "boto3 put_object", timed["put_object"], SINGLE),
            row(f"in{pace.label}", timed["in"], "boto3 head_object", timed["head_object"], SINGLE),
        ]

    def batches(self, pace: Pace) -> list[Row]:
        storage, keys, pool = self.storage, self.keys, self.pool
        few = keys[: pace.sequential_ops]
        items = dict.fromkeys(keys, VALUE)
        rows = self._speedup(
            "set_many",
            pace,
            fixed(lambda: storage.set_many(items)),
            fixed(lambda: deque(map(storage.__setitem__, few, repeat(VALUE)), 0), len(few)),
            fixed(lambda: deque(pool.map(self.raw_put, keys), 0)),
            fixed(lambda: deque(map(self.raw_put, few), 0), len(few)),
            "pool put_object",
        )
        rows += self._speedup(
            "get_many",
            pace,
            fixed(lambda: storage.get_many(keys)),
            fixed(lambda: deque(map(storage.__getitem__, few), 0), len(few)),
            fixed(lambda: deque(pool.map(self.raw_get, keys), 0)),
            fixed(lambda: deque(map(self.raw_get, few), 0), len(few)),
            "pool get_object",
        )
        rows += self._speedup(
            "delete_many",
            pace,
            self._refilled("a", BATCH, storage.delete_many, ops=1),
            self._refilled("b", len(few), lambda names: deque(map(storage.__delitem__, names), 0)),
            self._refilled("c", BATCH, self.raw_delete_objects, ops=1),
            self._refilled("d", len(few), lambda names: deque(map(self.raw_delete, names), 0)),
            "DeleteObjects",
        )
        return rows

    def _refilled(
        self, tag: str, count: int, delete: Callable[[list[str]], object], ops: int = 0
    ) -> Subject:
        """Deletes of ``count`` objects that are put back, untimed, before each round;
        ``ops`` calls (default: one per object)."""
        names = [f"del-{tag}-{i}" for i in range(count)]

        def prepare() -> Thunk:
            self._fill(names)
            return lambda: delete(names)

        return Subject(prepare, ops or count)

    def _speedup(
        self,
        batch: str,
        pace: Pace,
        mine: Subject,
        mine_one_by_one: Subject,
        theirs: Subject,
        theirs_one_by_one: Subject,
        their_tool: str,
    ) -> list[Row]:
        timed = compare(
            {
                "mine": mine,
                "mine seq": mine_one_by_one,
                "raw": theirs,
                "raw seq": theirs_one_by_one,
            },
            pace.rounds,
        )
        my_speedup = BATCH * timed["mine seq"].median / timed["mine"].median
        their_speedup = BATCH * timed["raw seq"].median / timed["raw"].median
        operation = f"{batch}({BATCH}){pace.label}"
        return [
            row(operation, timed["mine"], f"boto3 {their_tool}", timed["raw"]),
            Row(
                f"{operation} speedup over {BATCH} one by one",
                timed["mine"].median,
                f"boto3 {their_tool} (ratio: boto3's speedup / PyStorage's)",
                timed["raw"].median,
                their_speedup / my_speedup,
                SPEEDUP,
                f"PyStorage {my_speedup:.1f}x, boto3 {their_speedup:.1f}x",
            ),
        ]

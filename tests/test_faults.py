"""Server faults: real servers crashed under a steady load, brought back, and checked.

Each test starts servers of its own (the session's fixtures are shared by other tests and
must not be killed). A background thread runs a steady loop of ``set`` and ``get`` (and
now and then ``set_many``/``get_many``) on numbered keys with self-describing values
(``{"key": k, "seq": n}``) and records every call: when it began, how long it took, its
keys, and what it returned or raised. A server is then crashed with SIGKILL (sent to its
own PID: no shutdown, no last flush) while the load goes on against the same ``Storage``
object, and brought back: restarted on the same port with the same data directory, or,
in a cluster, replaced by its replica. The test then checks properties, not counts:

- during the outage every failure is a ``BackendError`` with the client's exception
  chained, and no call hangs longer than the client's timeouts allow;
- once the server is back, the same storage serves again, without being rebuilt: a run
  of calls with no failure at all;
- no acknowledged write is lost: each key reads back with its last acknowledged value,
  during the load and at the end. A write that failed may or may not have reached the
  server, so after it either value is accepted (the one before, or the failed one).

Keys live in three generations, switched at the kill and at the recovery, so writes made
after the recovery never overwrite (and so never hide) those made before the crash; reads
pick any key of any generation so far. One summary line per server is printed
(``pytest -s``); the counts vary from run to run and are not asserted, except that the
outage was seen at all (some call failed).

Servers: a standalone redis-server with an fsynced AOF; a Redis Cluster of three masters
with a replica each, built here because ``RedisClusterServer`` has none, losing one master
(another one, or the node the client was given); the same cluster without replicas,
with AOF, crashed and restarted whole; SeaweedFS.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pystorage
from pystorage import Storage
from pystorage.errors import BackendError
from pystorage.layers import Codec, Redis
from pystorage.testing import (
    RedisServer,
    SeaweedS3Server,
    free_port,
    redis_cli_binary,
    redis_server_binary,
)

#: How long a restarted server stays down (a replica is promoted as soon as it can).
REDIS_DOWN_SECONDS = 1.5
S3_DOWN_SECONDS = 1.0
#: The slowest a call may be: the clients' timeouts are 1 s (Redis), 1 s + 2 s (S3).
REDIS_MAX_OP_SECONDS = 3.0
S3_MAX_OP_SECONDS = 5.0
#: Calls after the recovery that must all succeed (N consecutive successes).
REDIS_OPS_AFTER = 500
S3_OPS_AFTER = 100
#: Redis Cluster replicates asynchronously: a write acknowledged by a master in the
#: moment before it dies may never reach the replica that takes over (the Redis Cluster
#: specification says so). Writes acknowledged longer ago than this must survive.
REPLICATION_WINDOW = 0.5


# -- the load ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One operation of the load."""

    kind: str  # "set", "get", "set_many" or "get_many" (one Op per key of a batch)
    key: str
    #: set: the sequence number written; get: the one read (None for a KeyError).
    seq: int | None
    began: float
    seconds: float
    error: Exception | None = None
    #: get only: what was read, when it is not a well-formed value of this key.
    malformed: Any = None
    #: The number of the storage call: the keys of one batch share it.
    call: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ended(self) -> float:
        return self.began + self.seconds


class Load:
    """A thread looping ``set(key, {"key": key, "seq": n})`` and ``get`` of a random key.

    Write ``n`` goes to key ``n % keys`` of the current generation; the read picks any key
    of any generation so far. Every eighth round also writes three more keys with
    ``set_many`` and reads three with ``get_many``. ``ops`` is appended by the thread alone.
    """

    def __init__(self, storage: Storage, name: str, keys: int, pause: float = 0.0) -> None:
        self.storage = storage
        self.name = name
        self.keys = keys
        self.pause = pause
        self.generation = 0  # bumped by the test: at the kill, and once the server is back
        self.ops: list[Op] = []
        self.calls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{name}", daemon=True)
        self._crashed: BaseException | None = None

    def key(self, generation: int, n: int) -> str:
        return f"{self.name}{generation}-{n}"

    def all_keys(self) -> list[str]:
        return [
            self.key(generation, n)
            for generation in range(self.generation + 1)
            for n in range(self.keys)
        ]

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> list[Op]:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the load thread hangs"
        if self._crashed is not None:
            raise self._crashed
        return self.ops

    def wait_for(self, count: int, since: float, timeout: float) -> None:
        """Until ``count`` calls that began at or after ``since`` are recorded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            # Only the tail of the list grows: a copy of it is a consistent snapshot.
            recent = []
            for op in reversed(self.ops[:]):
                if op.began < since:
                    break
                recent.append(op)
            if calls(recent) >= count:
                return
            time.sleep(0.02)

    def _run(self) -> None:
        try:
            rng = random.Random(self.name)
            seq = 0
            while not self._stop.is_set():
                generation = self.generation
                self._set(self.key(generation, seq % self.keys), seq)
                self._get(self._any_key(rng, generation))
                if seq % 8 == 7:
                    batch = [self.key(generation, (seq + 7 * j) % self.keys) for j in (1, 2, 3)]
                    self._set_many(batch, seq)
                    self._get_many([self._any_key(rng, generation) for _ in range(3)])
                seq += 1
                if self.pause:
                    time.sleep(self.pause)
        except BaseException as exc:  # a bug of the harness, raised again by stop()
            self._crashed = exc

    def _any_key(self, rng: random.Random, generation: int) -> str:
        return self.key(rng.randrange(generation + 1), rng.randrange(self.keys))

    def _set(self, key: str, seq: int) -> None:
        self.calls += 1
        began = time.monotonic()
        try:
            self.storage[key] = {"key": key, "seq": seq}
        except Exception as exc:
            self.ops.append(
                Op("set", key, seq, began, time.monotonic() - began, exc, None, self.calls)
            )
        else:
            self.ops.append(Op("set", key, seq, began, time.monotonic() - began, call=self.calls))

    def _get(self, key: str) -> None:
        self.calls += 1
        began = time.monotonic()
        try:
            value = self.storage[key]
        except KeyError:
            self.ops.append(self._read("get", key, None, began))
        except Exception as exc:
            self.ops.append(self._read("get", key, None, began, exc))
        else:
            self.ops.append(self._read("get", key, value, began))

    def _set_many(self, keys: list[str], seq: int) -> None:
        self.calls += 1
        began = time.monotonic()
        error: Exception | None = None
        try:
            self.storage.set_many({key: {"key": key, "seq": seq} for key in keys})
        except Exception as exc:
            error = exc
        seconds = time.monotonic() - began
        self.ops.extend(
            Op("set_many", key, seq, began, seconds, error, None, self.calls) for key in keys
        )

    def _get_many(self, keys: list[str]) -> None:
        self.calls += 1
        began = time.monotonic()
        try:
            found = self.storage.get_many(keys)
        except Exception as exc:
            self.ops.extend(self._read("get_many", key, None, began, exc) for key in keys)
        else:
            self.ops.extend(self._read("get_many", key, found.get(key), began) for key in keys)

    def _read(
        self, kind: str, key: str, value: Any, began: float, error: Exception | None = None
    ) -> Op:
        seconds = time.monotonic() - began
        if value is None or error is not None:
            return Op(kind, key, None, began, seconds, error, None, self.calls)
        if isinstance(value, dict) and value.get("key") == key and "seq" in value:
            return Op(kind, key, value["seq"], began, seconds, call=self.calls)
        return Op(kind, key, None, began, seconds, malformed=value, call=self.calls)


# -- the checks --------------------------------------------------------------------------


@dataclass
class Outcome:
    """Counts of one run, for its summary line."""

    before: list[Op]
    during: list[Op]
    after: list[Op]
    reads_checked: int
    keys_checked: int
    acked_keys: int
    lost_in_window: int = 0

    def summary(self, server: str, how: str) -> str:
        failed = [op for op in self.during if not op.ok]
        slowest = max((op.seconds for op in failed), default=0.0)
        kinds = "/".join(sorted({type(op.error).__name__ for op in failed})) or "-"
        lost = f", {self.lost_in_window} excused" if self.lost_in_window else ""
        return (
            f"[faults] {server} ({how}): calls before={calls(self.before)} "
            f"during={calls(self.during)} (failed={calls(failed)} {kinds}, max failed-call "
            f"latency={slowest:.3f}s) after={calls(self.after)} (failed="
            f"{calls([op for op in self.after if not op.ok])}); acknowledged writes checked: "
            f"{self.reads_checked} key reads during the load, {self.acked_keys} acked keys "
            f"of {self.keys_checked} read back at the end{lost}"
        )


def calls(ops: list[Op]) -> int:
    """How many storage calls ``ops`` come from (a batch is one call)."""
    return len({op.call for op in ops})


def replay(
    ops: list[Op], may_be_lost: Callable[[Op], bool] = lambda op: False
) -> tuple[dict[str, set[int | None]], list[tuple[Op, set[int | None]]], int]:
    """What each key may hold after ``ops``, the reads that broke that, and reads checked.

    An acknowledged write leaves only itself possible (unless ``may_be_lost``: then it
    adds itself to what was possible); a failed write adds itself to what was possible.
    """
    allowed: dict[str, set[int | None]] = {}
    bad: list[tuple[Op, set[int | None]]] = []
    reads = 0
    for op in ops:
        possible = allowed.setdefault(op.key, {None})
        if op.kind.startswith("set"):
            if op.ok and not may_be_lost(op):
                allowed[op.key] = {op.seq}
            else:
                possible.add(op.seq)
        elif op.ok:
            reads += 1
            if op.seq not in possible:
                bad.append((op, set(possible)))
    return allowed, bad, reads


def check(
    load: Load,
    ops: list[Op],
    killed: float,
    back: float,
    *,
    max_seconds: float,
    min_after: int,
    may_be_lost: Callable[[Op], bool] = lambda op: False,
) -> Outcome:
    """Assert the properties of a run; return its counts."""
    before = [op for op in ops if op.ended < killed]
    after = [op for op in ops if op.began >= back]
    during = [op for op in ops if op.ended >= killed and op.began < back]

    malformed = [op for op in ops if op.malformed is not None]
    assert not malformed, f"values that are not their key's: {malformed[:5]}"
    assert all(op.ok for op in before), [op for op in before if not op.ok][:5]
    failed = [op for op in during if not op.ok]
    assert failed, "no operation failed: the outage was not seen at all"
    strangers = [op for op in failed if not isinstance(op.error, BackendError)]
    assert not strangers, f"failures that are not BackendError: {strangers[:5]}"
    unchained = [op for op in failed if op.error is not None and op.error.__cause__ is None]
    assert not unchained, f"BackendErrors without the client's exception: {unchained[:5]}"
    slow = [op for op in ops if op.seconds > max_seconds]
    assert not slow, f"operations slower than {max_seconds}s: {slow[:5]}"

    assert calls(after) >= min_after, f"only {calls(after)} calls after the recovery"
    assert all(op.ok for op in after), (
        f"{calls([op for op in after if not op.ok])} of {calls(after)} calls failed after "
        f"the recovery: {[op for op in after if not op.ok][:5]}"
    )

    allowed, bad_reads, reads = replay(ops, may_be_lost)
    assert not bad_reads, f"reads that lost an acknowledged write: {bad_reads[:5]}"

    # At the end: every key of every generation, through the same storage.
    keys = load.all_keys()
    final = load.storage.get_many(keys)
    lost = []
    for key in keys:
        value = final.get(key)
        assert value is None or value["key"] == key, (key, value)
        seq = None if value is None else value["seq"]
        if seq not in allowed.get(key, {None}):
            lost.append((key, seq, allowed.get(key, {None})))
    assert not lost, f"acknowledged writes lost at the end: {lost[:5]}"

    # Losses the replication window excused, counted for the summary.
    strict, _, _ = replay(ops)
    excused = sum(
        1
        for key in keys
        if (None if key not in final else final[key]["seq"]) not in strict.get(key, {None})
    )
    acked = {op.key for op in ops if op.kind.startswith("set") and op.ok}
    return Outcome(before, during, after, reads, len(keys), len(acked), excused)


def crash(pid: int) -> None:
    """SIGKILL one server process of ours, by its PID: no shutdown, no last flush."""
    os.kill(pid, signal.SIGKILL)


# -- Redis -------------------------------------------------------------------------------


def test_redis_crash_under_load() -> None:
    # AOF with an fsync per write: an acknowledged write is on disk before its reply.
    # RedisServer.down() keeps the data directory, so the new server replays the file.
    persistence = ["--appendonly", "yes", "--appendfsync", "always"]
    with RedisServer(extra_args=persistence) as server:
        url = f"{server.url}?socket_timeout=1&socket_connect_timeout=1&prefix=faults:"
        storage = pystorage.open(url)
        backend = storage.layers[-1]
        assert isinstance(backend, Redis)
        config = backend.client.config_get("append*")
        assert (config["appendonly"], config["appendfsync"]) == ("yes", "always")
        try:
            load = Load(storage, "r", keys=100, pause=0.0005).start()
            time.sleep(0.5)
            killed = time.monotonic()
            crash(server.pid)
            load.generation = 1
            with server.down():  # reaps the killed process; starts a new one at the end
                time.sleep(REDIS_DOWN_SECONDS)
            back = time.monotonic()  # the new server answers PING: its AOF is loaded
            load.generation = 2
            load.wait_for(REDIS_OPS_AFTER, back, timeout=10)
            ops = load.stop()
            outcome = check(
                load,
                ops,
                killed,
                back,
                max_seconds=REDIS_MAX_OP_SECONDS,
                min_after=REDIS_OPS_AFTER,
            )
        finally:
            storage.close()
    print("\n" + outcome.summary("redis", "SIGKILL, AOF appendfsync always"))


# -- Redis Cluster -----------------------------------------------------------------------


@dataclass
class ClusterNode:
    """One redis-server of a cluster built here; ``launch`` (re)starts it on its port."""

    port: int
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def crash(self) -> None:
        assert self.process is not None
        crash(self.process.pid)
        self.process.wait(5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextmanager
def cluster(
    masters: int = 3, replicas: int = 1, extra_args: Sequence[str] = ()
) -> Iterator[list[ClusterNode]]:
    """A Redis Cluster on 127.0.0.1: ``masters`` masters, each with ``replicas`` replicas.

    ``RedisClusterServer`` has no replicas and cannot restart its nodes, so this one is
    built here. A node is deemed failed after 1 s without an answer
    (``cluster-node-timeout``). The first ``masters`` nodes are the masters. Every node is
    stopped by its own PID at the end.
    """
    folder = Path(tempfile.mkdtemp(prefix="pystorage-faults-cluster-"))
    nodes: list[ClusterNode] = []
    try:
        for _ in range(masters * (1 + replicas)):
            port = free_port()
            data = folder / str(port)
            data.mkdir()
            argv = [
                redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                "--dir", str(data), "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "1000", *extra_args,
            ]  # fmt: skip
            nodes.append(ClusterNode(port, argv, data / "redis.log"))
            nodes[-1].launch()
        wait_until(lambda: all(_answers(node.port) for node in nodes), 10, "nodes to start")
        create = subprocess.run(
            [
                redis_cli_binary(), "--cluster", "create",
                *(f"127.0.0.1:{node.port}" for node in nodes),
                "--cluster-replicas", str(replicas), "--cluster-yes",
            ],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        assert create.returncode == 0, create.stdout[-2000:] + create.stderr[-2000:]
        wait_until(lambda: cluster_ready(nodes), 20, "the cluster to form, replicas in sync")
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(folder, ignore_errors=True)


def address(node: ClusterNode) -> str:
    return f"127.0.0.1:{node.port}"


def cluster_ready(nodes: Sequence[ClusterNode]) -> bool:
    """Every node sees the whole cluster in state ok; every replica is in sync."""
    import redis

    try:
        for node in nodes:
            with redis.Redis(port=node.port, socket_timeout=1) as client:
                info = client.cluster("info")
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != len(nodes):
                    return False
                replication = client.info("replication")
                if replication["role"] != "master" and (
                    replication.get("master_link_status") != "up"
                ):
                    return False
    except redis.RedisError:
        return False
    return True


def _answers(port: int) -> bool:
    import redis

    try:
        with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize(
    "victim_is_startup_node", [False, True], ids=["other-master", "startup-node"]
)
def test_redis_cluster_failover_under_load(victim_is_startup_node: bool) -> None:
    import redis
    from redis.cluster import RedisCluster

    with cluster() as nodes:
        client = RedisCluster(
            host="127.0.0.1", port=nodes[0].port, socket_timeout=1, socket_connect_timeout=1
        )
        storage = Storage(Codec("pickle"), Redis(client=client, prefix="faults:"))
        try:
            # The victim: the master the client was given to start from, or another one.
            roles: dict[str, dict[str, Any]] = client.cluster_nodes()
            masters = [node for node in nodes if "master" in roles[address(node)]["flags"]]
            assert nodes[0] in masters  # redis-cli makes the first nodes listed the masters
            victim = nodes[0] if victim_is_startup_node else masters[1]
            victim_id = roles[address(victim)]["node_id"]
            replica = next(node for node in nodes if roles[address(node)]["master_id"] == victim_id)
            load = Load(storage, "c", keys=100, pause=0.0005).start()
            time.sleep(0.5)
            killed = time.monotonic()
            victim.crash()
            load.generation = 1

            def promoted() -> bool:
                try:
                    with redis.Redis(port=replica.port, socket_timeout=1) as direct:
                        return bool(
                            direct.info("replication")["role"] == "master"
                            and direct.cluster("info")["cluster_state"] == "ok"
                        )
                except redis.RedisError:
                    return False

            wait_until(promoted, 20, "the replica to take over")
            back = time.monotonic()
            load.generation = 2
            load.wait_for(REDIS_OPS_AFTER, back, timeout=10)
            ops = load.stop()

            def in_window(op: Op) -> bool:
                return op.ended >= killed - REPLICATION_WINDOW and op.began < killed

            outcome = check(
                load,
                ops,
                killed,
                back,
                max_seconds=REDIS_MAX_OP_SECONDS,
                min_after=REDIS_OPS_AFTER,
                may_be_lost=in_window,
            )
        finally:
            client.close()
    which = "the startup node" if victim_is_startup_node else "another master"
    print("\n" + outcome.summary("redis-cluster", f"SIGKILL of {which}, replica promoted"))


def test_redis_cluster_crash_of_every_node_under_load() -> None:
    """The whole cluster crashes (every master, with its AOF) and comes back on its ports.

    Fails today: while no node answers, redis-py's ``RedisCluster`` reports the
    ``ConnectionError`` by raising ``redis.exceptions.RedisClusterException("Redis Cluster
    cannot be connected...")`` from its attempt to reload the slot map, and that class
    derives from ``Exception``, not ``RedisError``: ``Redis._errors`` is only
    ``(redis.RedisError,)``, so the storage raises it as it is. Fix in
    ``pystorage/layers/redis.py``: ``self._errors = (redis.RedisError,
    redis.exceptions.RedisClusterException)``. The rest (recovery of the same storage, no
    acknowledged write lost) already holds: checked by hand with that one change.
    """
    from redis.cluster import RedisCluster

    persistence = ["--appendonly", "yes", "--appendfsync", "always"]
    with cluster(replicas=0, extra_args=persistence) as nodes:
        client = RedisCluster(
            host="127.0.0.1", port=nodes[0].port, socket_timeout=1, socket_connect_timeout=1
        )
        storage = Storage(Codec("pickle"), Redis(client=client, prefix="faults:"))
        try:
            load = Load(storage, "w", keys=100, pause=0.0005).start()
            time.sleep(0.5)
            killed = time.monotonic()
            for node in nodes:
                node.crash()
            load.generation = 1
            time.sleep(REDIS_DOWN_SECONDS)
            for node in nodes:
                node.launch()  # the same port, nodes.conf and AOF
            wait_until(lambda: cluster_ready(nodes), 20, "the cluster to come back")
            back = time.monotonic()
            load.generation = 2
            load.wait_for(REDIS_OPS_AFTER, back, timeout=10)
            ops = load.stop()
            outcome = check(
                load,
                ops,
                killed,
                back,
                max_seconds=REDIS_MAX_OP_SECONDS,
                min_after=REDIS_OPS_AFTER,
            )
        finally:
            client.close()
    print("\n" + outcome.summary("redis-cluster", "SIGKILL of every node, AOF, restarted"))


# -- S3 (SeaweedFS) ----------------------------------------------------------------------


def test_s3_crash_under_load() -> None:
    import boto3
    from botocore.config import Config

    from pystorage.layers.s3 import S3

    with SeaweedS3Server() as server:
        bucket = f"faults-{uuid.uuid4().hex[:12]}"
        boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            region_name=server.region,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
        ).create_bucket(Bucket=bucket)
        quick = Config(
            connect_timeout=1, read_timeout=2, retries={"max_attempts": 1, "mode": "standard"}
        )
        storage = Storage(
            Codec("pickle"),
            S3(
                bucket,
                "faults",
                endpoint_url=server.endpoint_url,
                region=server.region,
                aws_access_key_id=server.access_key,
                aws_secret_access_key=server.secret_key,
                config=quick,
            ),
        )
        try:
            load = Load(storage, "s", keys=40).start()
            time.sleep(1.0)
            killed = time.monotonic()
            crash(server.pid)
            load.generation = 1
            with server.down():  # reaps the killed process; starts a new one at the end
                time.sleep(S3_DOWN_SECONDS)
            back = time.monotonic()  # S3 answers and a bucket can be created
            load.generation = 2
            load.wait_for(S3_OPS_AFTER, back, timeout=20)
            ops = load.stop()
            outcome = check(
                load,
                ops,
                killed,
                back,
                max_seconds=S3_MAX_OP_SECONDS,
                min_after=S3_OPS_AFTER,
            )
        finally:
            storage.close()
    print("\n" + outcome.summary("s3/seaweedfs", "SIGKILL"))

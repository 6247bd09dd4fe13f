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

Nothing here waits a fixed time: on a loaded machine any duration can be too short. Each
step waits, with a deadline, for the state the next one needs: the load has made calls
before the kill; the server stays down until the load has seen it fail; every node of a
cluster agrees on its topology before it is used, and again after a failover before the
recovery is timed; the replica has applied what the master acknowledged before the kill.

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

# Minutes of servers crashed and rebuilt: make test-long runs them (CI does too).
pytestmark = pytest.mark.long

#: Calls before the kill (all must succeed), and failed calls the load must see while
#: the server is down before it is brought back.
CALLS_BEFORE = 200
S3_CALLS_BEFORE = 50
FAILED_CALLS_DOWN = 20
CLUSTER_FAILED_CALLS_DOWN = 3
#: The deadline of every wait for a state: generous, for a loaded 2-core machine.
DEADLINE = 30.0
#: The slowest a call may be: the clients' timeouts are 1 s (Redis), 1 s + 2 s (S3).
REDIS_MAX_OP_SECONDS = 3.0
S3_MAX_OP_SECONDS = 5.0
#: Calls after the recovery that must all succeed (N consecutive successes).
REDIS_OPS_AFTER = 500
S3_OPS_AFTER = 100


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

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # A test that failed half-way must not leave the thread calling a closed client.
        self._stop.set()
        self._thread.join(30)

    def stop(self) -> list[Op]:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the load thread hangs"
        if self._crashed is not None:
            raise self._crashed
        return self.ops

    def wait_for(
        self, count: int, since: float, timeout: float = DEADLINE, *, failed: bool = False
    ) -> None:
        """Until ``count`` calls (only failed ones if ``failed``) that began at or after
        ``since`` are recorded; the test fails at the deadline."""

        def done() -> bool:
            # Only the tail of the list grows: a copy of it is a consistent snapshot.
            recent = []
            for op in reversed(self.ops[:]):
                if op.began < since:
                    break
                if op.ok != failed:
                    recent.append(op)
            return calls(recent) >= count or not self._thread.is_alive()

        what = f"{count} {'failed ' if failed else ''}calls of the load"
        wait_until(done, timeout, what)

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
        stall = max((op.seconds for op in self.during), default=0.0)
        kinds = "/".join(sorted({type(op.error).__name__ for op in failed})) or "-"
        lost = f", {self.lost_in_window} excused" if self.lost_in_window else ""
        return (
            f"[faults] {server} ({how}): calls before={calls(self.before)} "
            f"during={calls(self.during)} (failed={calls(failed)} {kinds}, max failed-call "
            f"latency={slowest:.3f}s, longest call={stall:.3f}s) after={calls(self.after)} (failed="
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
    outage_seen: bool = True,
) -> Outcome:
    """Assert the properties of a run; return its counts.

    ``outage_seen``: some call must have failed while the server was down. A client that
    rides through an outage by retrying (redis-py 8.2's cluster client does, through a
    failover) hides it: then only the stalls, the recovery and the data are checked.
    """
    before = [op for op in ops if op.ended < killed]
    after = [op for op in ops if op.began >= back]
    during = [op for op in ops if op.ended >= killed and op.began < back]

    malformed = [op for op in ops if op.malformed is not None]
    assert not malformed, f"values that are not their key's: {malformed[:5]}"
    assert all(op.ok for op in before), [op for op in before if not op.ok][:5]
    failed = [op for op in during if not op.ok]
    assert failed or not outage_seen, "no operation failed: the outage was not seen at all"
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
            with Load(storage, "r", keys=100, pause=0.0005) as load:
                load.wait_for(CALLS_BEFORE, since=0)
                killed = time.monotonic()
                crash(server.pid)
                load.generation = 1
                with server.down():  # reaps the killed process; starts a new one at the end
                    load.wait_for(FAILED_CALLS_DOWN, killed, failed=True)
                back = time.monotonic()  # the new server answers PING: its AOF is loaded
                load.generation = 2
                load.wait_for(REDIS_OPS_AFTER, back)
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
    (``cluster-node-timeout``). The first ``masters`` nodes are the masters. It is yielded
    once every node agrees on that (``cluster_ready``). Every node is stopped by its own
    PID at the end.
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
        wait_until(lambda: all(_answers(node.port) for node in nodes), DEADLINE, "nodes to start")
        create = subprocess.run(
            [
                redis_cli_binary(), "--cluster", "create",
                *(f"127.0.0.1:{node.port}" for node in nodes),
                "--cluster-replicas", str(replicas), "--cluster-yes",
            ],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=DEADLINE, check=False,
        )  # fmt: skip
        assert create.returncode == 0, create.stdout[-2000:] + create.stderr[-2000:]
        wait_until(
            lambda: cluster_ready(nodes, masters, replicas),
            DEADLINE,
            "every node to agree on the cluster, replicas in sync",
        )
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(folder, ignore_errors=True)


def address(node: ClusterNode) -> str:
    return f"127.0.0.1:{node.port}"


@dataclass(frozen=True)
class Peer:
    """One node as another node sees it (a line of its ``CLUSTER NODES``)."""

    master: str | None  # the address of its master; None for a master
    slots: bool  # serves slots
    failing: bool  # failed or suspected, still joining, or not connected


def view(node: ClusterNode) -> dict[str, Peer] | None:
    """The cluster as ``node`` sees it, by address; None unless it answers in state ok.

    Roles spread by gossip: a node can count every other node and be in state ok while it
    still takes a replica for a master without slots. So every node is asked.
    """
    import redis

    try:
        with redis.Redis(port=node.port, socket_timeout=1, socket_connect_timeout=1) as client:
            if client.cluster("info")["cluster_state"] != "ok":
                return None
            lines: dict[str, dict[str, Any]] = client.cluster("nodes")
    except redis.RedisError:
        return None
    by_id = {line["node_id"]: where for where, line in lines.items()}
    peers = {}
    for where, line in lines.items():
        flags = set(line["flags"].split(","))
        peers[where] = Peer(
            master=by_id.get(line["master_id"], line["master_id"]) if "slave" in flags else None,
            slots=bool(line["slots"]),
            failing=bool(flags & {"fail", "fail?", "handshake", "noaddr"}) or not line["connected"],
        )
    return peers


def cluster_ready(nodes: Sequence[ClusterNode], masters: int, replicas: int) -> bool:
    """Every node sees the same cluster: ``masters`` masters serving slots, each with
    ``replicas`` replicas, nobody failing; and every replica is in sync."""
    import redis

    views = [view(node) for node in nodes]
    first = views[0]
    if first is None or any(other != first for other in views):
        return False
    if set(first) != {address(node) for node in nodes}:
        return False
    if any(peer.failing for peer in first.values()):
        return False
    serving = [where for where, peer in first.items() if peer.master is None and peer.slots]
    if len(serving) != masters:
        return False
    for where in serving:
        if sum(1 for peer in first.values() if peer.master == where) != replicas:
            return False
    try:
        for node in nodes:
            if first[address(node)].master is None:
                continue
            with redis.Redis(port=node.port, socket_timeout=1) as client:
                if client.info("replication").get("master_link_status") != "up":
                    return False
    except redis.RedisError:
        return False
    return True


def taken_over(nodes: Sequence[ClusterNode], victim: ClusterNode, replica: ClusterNode) -> bool:
    """Every node but ``victim`` sees ``replica`` as a master serving slots, and the
    victim as failed: a client that reloads its slot map from any of them finds the
    new master (``CLUSTER SLOTS`` leaves failed nodes out)."""
    for node in nodes:
        if node is victim:
            continue
        peers = view(node)
        if peers is None:
            return False
        promoted = peers.get(address(replica))
        if promoted is None or promoted.master is not None or not promoted.slots:
            return False
        if not peers[address(victim)].failing:
            return False
    return True


def replicated(master: ClusterNode, replica: ClusterNode) -> float:
    """Wait until ``replica`` has applied every write ``master`` had acknowledged when this
    was called; return that moment. Replication is asynchronous (the Redis Cluster
    specification says so): a write acknowledged later may never reach the replica."""
    import redis

    with redis.Redis(port=master.port, socket_timeout=1) as client:
        moment = time.monotonic()  # before the question: every write acked by now is counted
        offset = int(client.info("replication")["master_repl_offset"])

    def caught_up() -> bool:
        try:
            with redis.Redis(port=replica.port, socket_timeout=1) as client:
                return int(client.info("replication")["slave_repl_offset"]) >= offset
        except redis.RedisError:
            return False

    wait_until(caught_up, DEADLINE, "the replica to apply what its master acknowledged")
    return moment


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
    from redis.cluster import RedisCluster

    with cluster() as nodes:
        # Every node agrees on this (cluster_ready); before it did, a node could still take
        # the victim's replica for a master, and the failover could not be staged.
        agreed = view(nodes[0])
        assert agreed is not None
        assert all(agreed[address(node)].master is None for node in nodes[:3])
        # The victim: the master the client was given to start from, or another one.
        victim = nodes[0] if victim_is_startup_node else nodes[1]
        [replica] = [node for node in nodes if agreed[address(node)].master == address(victim)]
        client = RedisCluster(
            host="127.0.0.1", port=nodes[0].port, socket_timeout=1, socket_connect_timeout=1
        )
        storage = Storage(Codec("pickle"), Redis(client=client, prefix="faults:"))
        try:
            with Load(storage, "c", keys=100, pause=0.0005) as load:
                load.wait_for(CALLS_BEFORE, since=0)
                synced = replicated(victim, replica)
                killed = time.monotonic()
                victim.crash()
                load.generation = 1
                wait_until(lambda: taken_over(nodes, victim, replica), DEADLINE, "the failover")
                back = time.monotonic()
                # Whether a call fails meanwhile is the client's choice: redis-py up to 8.1
                # raises through the failover, 8.2 retries until the new master answers.
                # What PyStorage promises holds either way, and is checked below.
                load.generation = 2
                load.wait_for(REDIS_OPS_AFTER, back)
                ops = load.stop()

            def unreplicated(op: Op) -> bool:
                # Acknowledged by the victim after the replica was known to have it all.
                return op.ended >= synced and op.began < killed

            outcome = check(
                load,
                ops,
                killed,
                back,
                # A call that rides through the failover (redis-py 8.2) waits for it: at
                # most the time the cluster took to promote the replica, plus the timeouts.
                max_seconds=REDIS_MAX_OP_SECONDS + (back - killed),
                min_after=REDIS_OPS_AFTER,
                may_be_lost=unreplicated,
                outage_seen=False,
            )
        finally:
            client.close()
    which = "the startup node" if victim_is_startup_node else "another master"
    print("\n" + outcome.summary("redis-cluster", f"SIGKILL of {which}, replica promoted"))


def test_redis_cluster_crash_of_every_node_under_load() -> None:
    """The whole cluster crashes (every master, with its AOF) and comes back on its ports.

    While no node answers, redis-py's ``RedisCluster`` raises ``RedisClusterException``
    (not a ``RedisError``) from its attempt to reload the slot map: the storage must
    report it as a ``BackendError`` too.
    """
    from redis.cluster import RedisCluster

    persistence = ["--appendonly", "yes", "--appendfsync", "always"]
    with cluster(replicas=0, extra_args=persistence) as nodes:
        client = RedisCluster(
            host="127.0.0.1", port=nodes[0].port, socket_timeout=1, socket_connect_timeout=1
        )
        storage = Storage(Codec("pickle"), Redis(client=client, prefix="faults:"))
        try:
            with Load(storage, "w", keys=100, pause=0.0005) as load:
                load.wait_for(CALLS_BEFORE, since=0)
                killed = time.monotonic()
                for node in nodes:
                    node.crash()
                load.generation = 1
                # redis-py 8.2 retries each call for about 1.5 s before it fails (before
                # 8.2: at once), so fewer failed calls are waited for, for longer.
                load.wait_for(CLUSTER_FAILED_CALLS_DOWN, killed, 2 * DEADLINE, failed=True)
                for node in nodes:
                    node.launch()  # the same port, nodes.conf and AOF
                wait_until(lambda: cluster_ready(nodes, 3, 0), DEADLINE, "the cluster to return")
                back = time.monotonic()
                load.generation = 2
                load.wait_for(REDIS_OPS_AFTER, back)
                ops = load.stop()
            outcome = check(
                load,
                ops,
                killed,
                back,
                # A call that retries through the outage (redis-py 8.2) may wait as long as
                # it lasts, plus the timeouts; no longer.
                max_seconds=REDIS_MAX_OP_SECONDS + (back - killed),
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
            with Load(storage, "s", keys=40) as load:
                load.wait_for(S3_CALLS_BEFORE, since=0)
                killed = time.monotonic()
                crash(server.pid)
                load.generation = 1
                with server.down():  # reaps the killed process; starts a new one at the end
                    load.wait_for(FAILED_CALLS_DOWN, killed, failed=True)
                back = time.monotonic()  # S3 answers and a bucket can be created
                load.generation = 2
                load.wait_for(S3_OPS_AFTER, back)
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

"""A three-master Redis Cluster on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pystorage.testing.processes import (
    SERVERS_TMP,
    Process,
    ServerBase,
    free_port,
    start_with_port_retries,
    wait_until,
)
from pystorage.testing.redis_server import redis_argv, redis_call, redis_cli_binary, redis_pings


def _cluster_info(port: int) -> dict[str, str]:
    reply = redis_call(port, b"CLUSTER INFO")
    if reply is None:
        return {}
    info: dict[str, str] = {}
    for line in reply.decode("ascii", "replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


class RedisClusterServer(ServerBase):
    """A three-master Redis Cluster (no replicas) on 127.0.0.1.

    ``.nodes`` lists the ``(host, port)`` pairs; ``.url`` points at the first
    node. Each node also uses port + 10000 for its cluster bus.
    """

    size = 3

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.ports: list[int] = [free_port() for _ in range(self.size)]
        self._dir: Path | None = None
        self._procs: list[Process] = []

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every master."""
        return [(self.host, port) for port in self.ports]

    @property
    def port(self) -> int:
        """Port of the first node."""
        return self.ports[0]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of the first node."""
        return f"redis://{self.host}:{self.ports[0]}/0"

    @property
    def pids(self) -> list[int]:
        """PIDs of the node processes."""
        return [proc.pid for proc in self._procs]

    def start(self) -> RedisClusterServer:
        """Start the nodes, create the cluster, and wait for ``cluster_state:ok``."""
        if self._procs and all(proc.alive() for proc in self._procs):
            return self
        self._dir = Path(tempfile.mkdtemp(prefix="pystorage-redis-cluster-", dir=SERVERS_TMP))
        self._register()
        try:
            start_with_port_retries(self._launch, self._choose_new_ports)
        except BaseException:
            self.stop()
            raise
        return self

    def _choose_new_ports(self) -> None:
        assert self._dir is not None
        for proc in self._procs:
            proc.stop(grace=5.0)
        self._procs = []
        for leftover in self._dir.glob("nodes-*.conf"):
            leftover.unlink()
        self.ports = [free_port() for _ in range(self.size)]

    def _launch(self) -> None:
        assert self._dir is not None
        data_dir = self._dir
        began = time.monotonic()
        deadline = began + self.startup_timeout
        for port in self.ports:
            cluster_args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(data_dir / f"nodes-{port}.conf"),
            ]  # fmt: skip
            proc = Process(
                redis_argv(port, data_dir, cluster_args),
                data_dir / f"redis-{port}.log",
                data_dir,
                f"redis-server (cluster) :{port}",
            )
            self._procs.append(proc)
            proc.start()
        wait_until(
            lambda: all(redis_pings(port) for port in self.ports),
            processes=self._procs,
            timeout=max(deadline - time.monotonic(), 0.1),
            what="cluster nodes to answer PING",
        )
        create = subprocess.run(
            [
                redis_cli_binary(), "--cluster", "create",
                *(f"{self.host}:{port}" for port in self.ports),
                "--cluster-replicas", "0", "--cluster-yes",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=max(deadline - time.monotonic(), 1.0),
            check=False,
        )  # fmt: skip
        if create.returncode != 0:
            output = (create.stdout + create.stderr).decode("utf-8", "replace")
            raise RuntimeError(f"redis-cli --cluster create failed:\n{output[-4000:]}")

        def converged() -> bool:
            # Every node must see all masters and every slot, otherwise a client
            # bootstrapping from that node gets an incomplete slot map.
            for port in self.ports:
                info = _cluster_info(port)
                if (
                    info.get("cluster_state") != "ok"
                    or info.get("cluster_slots_ok") != "16384"
                    or info.get("cluster_known_nodes") != str(self.size)
                ):
                    return False
            return True

        wait_until(
            converged,
            processes=self._procs,
            timeout=max(deadline - time.monotonic(), 0.1),
            what="cluster_state:ok on all nodes",
        )
        self.startup_seconds = time.monotonic() - began

    def log_tail(self, lines: int = 40) -> str:
        """The last *lines* lines of every node's log."""
        return "\n".join(f"--- {p.name}\n{p.log_tail(lines)}" for p in self._procs)

    def stop(self) -> None:
        """Stop every node (by PID) and delete the temporary directory."""
        for proc in self._procs:
            proc.stop(grace=5.0)
        self._procs = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._unregister()

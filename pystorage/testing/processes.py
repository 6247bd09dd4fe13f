"""What every test server shares: free ports, child processes stopped by their own PID
only, waiting for readiness with a deadline, and stopping every server at exit."""

from __future__ import annotations

import atexit
import contextlib
import random
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

HOST = "127.0.0.1"

# Redis cluster buses and SeaweedFS gRPC listeners both live at port + 10000.
COMPANION_OFFSET = 10_000
_MAX_BASE_PORT = 65_535 - COMPANION_OFFSET

_port_lock = threading.Lock()
# Where servers keep their data: the temp folder as it was when this module was imported.
# A server outlives the test that started it, and SeaweedFS listens on Unix sockets in its
# folder, whose paths may not exceed 107 bytes: a test's own temp folder (which a fixture
# may make the default) can be longer than that.
SERVERS_TMP = tempfile.gettempdir()
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
        return not (eph_low <= port <= eph_high or eph_low <= port + COMPANION_OFFSET <= eph_high)

    with _port_lock:
        for attempt in range(2000):
            port = _rng.randrange(low, below)
            if attempt < 1000 and not outside_ephemeral(port):
                continue
            pair = (port, port + COMPANION_OFFSET)
            if any(p in _handed_out for p in pair) or not all(_bindable(p) for p in pair):
                continue
            _handed_out.update(pair)
            return port
    raise RuntimeError(f"no free port pair (p, p+{COMPANION_OFFSET}) found below {below}")


# ------------------------------------------------------------------------- processes


class AddressInUse(RuntimeError):
    """A server exited at startup because its port was taken after we chose it."""


class Process:
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


def wait_until(
    ready: Callable[[], bool],
    *,
    processes: Sequence[Process],
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
                    raise AddressInUse(message)
                raise RuntimeError(message)
        if ready():
            return
        if time.monotonic() >= deadline:
            tails = "\n".join(f"--- {p.name} log tail:\n{p.log_tail()}" for p in processes)
            raise RuntimeError(f"timed out after {timeout:.1f}s waiting for {what}\n{tails}")
        time.sleep(interval)


_S = TypeVar("_S", bound="ServerBase")

_live_lock = threading.Lock()
_live: dict[int, ServerBase] = {}


class ServerBase:
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


def start_with_port_retries(
    start_once: Callable[[], None], choose_new_ports: Callable[[], None] | None
) -> None:
    """Run ``start_once``; when its port was taken, choose new ports and run it again."""
    # Another process can take a port between free_port() and the server's bind;
    # when we chose the ports ourselves, choosing again is a complete fix.
    attempts = 3 if choose_new_ports is not None else 1
    for attempt in range(attempts):
        try:
            start_once()
            return
        except AddressInUse:
            if choose_new_ports is None or attempt == attempts - 1:
                raise
            choose_new_ports()

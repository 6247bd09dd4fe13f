"""Invalidations pushed by a Redis server to a memory front (client-side caching).

A ``Tier`` over a standalone ``Redis`` keeps its front fresh with Redis's own tracking
(``CLIENT TRACKING ... BCAST PREFIX``, Redis 6+): every write to a key under the
storage's prefix, by any client, makes the server push the key's name, and a thread of
this process drops it from the front. Two connections of its own, outside the client's
pool: one subscribed to ``__redis__:invalidate``, and one whose tracking redirects there
(RESP2 delivers invalidations only through such a redirect). While they are down (not
yet connected, or lost), the front is told that the store changed at every read, so
that nothing is served from it until tracking is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pystorage import _fork

#: Seconds between attempts to connect again after the tracking connections failed.
RETRY = 0.5
#: Seconds a blocking read of pushes waits before looking whether it should stop.
POLL = 1.0


class Tracker:
    """Calls ``dropped(keys)`` for the keys that other writers changed (``None``: all),
    from a daemon thread. ``version()`` changes whenever the front may have missed a
    push: after a reconnection, and at every call while disconnected."""

    def __init__(self, client: Any, prefix: str, dropped: Callable[[list[str] | None], None]):
        pool = client.connection_pool
        self._make: Callable[[], Any] = lambda: pool.connection_class(
            **{**pool.connection_kwargs, "protocol": 2}
        )
        self._prefix = prefix.encode("utf-8", "surrogatepass")
        self._dropped = dropped
        self._epoch = -1
        self._connected = False
        self._generation = 0  # bumped at each (re)connection
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: The server's id of the subscribed connection (tests kill it by this id).
        self.listener_id = -1

    def version(self) -> object:
        """The same value while connected without a break; a new one otherwise."""
        if self._epoch != _fork.epoch():  # a forked child has no listening thread
            self._start()
        if self._connected:
            return self._generation
        return object()

    def wait_connected(self, timeout: float) -> bool:
        """Whether tracking is on within ``timeout`` seconds (for tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while not self._connected:
            if time.monotonic() > deadline:
                return False
            self.version()
            time.sleep(0.005)
        return True

    def _start(self) -> None:
        # No lock: two threads starting a listener at once only make two (each drops
        # what it is told), and a lock held at a fork would stay held in the child.
        self._epoch = _fork.epoch()
        self._connected = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._listen, args=(self._stop,), name="pystorage-tracking", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _listen(self, stop: threading.Event) -> None:
        while not stop.is_set():
            listener = tracking = None
            try:
                listener, tracking = self._connect()
                self._generation += 1
                self._dropped(None)  # what was written while not tracking
                self._connected = True
                while not stop.is_set():
                    if listener.can_read(timeout=POLL):
                        self._received(listener.read_response())
            except Exception:  # any failure: drop all, connect again
                pass
            finally:
                self._connected = False
                for connection in (listener, tracking):
                    if connection is not None:
                        connection.disconnect()
            stop.wait(RETRY)

    def _connect(self) -> tuple[Any, Any]:
        listener = self._make()
        listener.connect()
        listener.send_command("CLIENT", "ID")
        listener_id = listener.read_response()
        self.listener_id = int(listener_id)
        listener.send_command("SUBSCRIBE", "__redis__:invalidate")
        listener.read_response()
        tracking = self._make()
        tracking.connect()
        tracking.send_command(
            "CLIENT", "TRACKING", "ON", "REDIRECT", listener_id, "BCAST", "PREFIX", self._prefix
        )
        if tracking.read_response() not in (b"OK", "OK"):
            raise ConnectionError("CLIENT TRACKING was refused")
        return listener, tracking

    def _received(self, message: Any) -> None:
        if (
            not isinstance(message, list)
            or len(message) != 3
            or message[0]
            not in (
                b"message",
                "message",
            )
        ):
            return
        names = message[2]
        if names is None:  # FLUSHDB, FLUSHALL: everything went
            self._dropped(None)
            return
        start = len(self._prefix)
        keys = []
        for name in names:
            raw = name if isinstance(name, bytes) else str(name).encode("utf-8", "surrogatepass")
            if raw.startswith(self._prefix):
                try:
                    keys.append(raw[start:].decode("utf-8", "surrogatepass"))
                except UnicodeDecodeError:
                    continue
        if keys:
            self._dropped(keys)

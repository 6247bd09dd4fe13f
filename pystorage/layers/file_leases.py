"""The leases of a Files folder: a lock file per key, held by ``flock``.

The holder of a key's lease holds an exclusive ``flock`` on its lock file for as long as
it computes, and the file says who it is and until when (token and deadline). The
kernel drops the ``flock`` of a process that dies: the next try finds the file unlocked
and takes it at once, so a killed holder delays nobody. A holder alive past its deadline
(hung) keeps its ``flock``: a taker that finds the file locked and its deadline passed
unlinks the file and takes a new one at the same name. Giving the lease back unlinks the
file if the name still names the holder's own file (by inode): a holder whose file was
taken over leaves the new holder's file alone.

Every try and every release holds the folder's lease guard (an exclusive ``flock`` on
one more file) for its few system calls, so that no unlink falls between another
process's look at a file and its act on it.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: Files.key_lock stays in-process there
    fcntl = None  # type: ignore[assignment]

from pystorage import _fork
from pystorage.errors import BackendError

#: Lock files begin with a dot, which no escaped key has: never an entry.
LOCK_PREFIX = ".key-lock-"
#: The lease guard's name (without the storage's suffix).
GUARD_NAME = ".key-locks"
# What a lock file holds: the holder's token (16 random bytes) and its deadline.
_RECORD = struct.Struct(">16sd")
_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class FileLeases:
    """The leases of one folder; ``file_of(key)`` names a key's lock file."""

    def __init__(self, guard: str) -> None:
        self._guard = guard
        # The descriptors of the leases this process holds, by token.
        self._held: dict[str, int] = {}
        self._mutex = threading.Lock()
        _fork.renew_in_child(self, FileLeases._forget_in_child)

    def _forget_in_child(self) -> None:
        """A child holds none of its parent's leases: close its copies of their
        descriptors, never unlocking them (that would unlock the parent's)."""
        for fd in self._held.values():
            try:
                os.close(fd)
            except OSError:  # pragma: no cover - closed by the program already
                pass
        self._held = {}
        self._mutex = threading.Lock()

    @contextmanager
    def _guarded(self, action: str, key: str) -> Iterator[None]:
        try:
            fd = os.open(self._guard, _FLAGS, 0o600)
        except OSError as exc:
            raise _failed(action, key, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)  # explicitly: a child may share the file
        except OSError as exc:
            raise _failed(action, key, exc) from exc
        finally:
            os.close(fd)

    def take(self, file: str, key: str, token: str, seconds: float) -> str:
        """One try (see ``pystorage.layers.leases``): the holder's token after it."""
        with self._guarded("take", key):
            while True:
                fd = os.open(file, _FLAGS, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder, deadline = _read(fd)
                    os.close(fd)
                    if deadline > time.time():
                        return holder
                    os.unlink(file)  # its holder is hung: a new file, whose flock is free
                    continue
                except BaseException:
                    os.close(fd)
                    raise
                break
            try:
                os.pwrite(fd, _RECORD.pack(bytes.fromhex(token), time.time() + seconds), 0)
            except BaseException:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                raise
        with self._mutex:
            self._held[token] = fd
        return token

    def end(self, file: str, key: str, token: str) -> None:
        """Give the lease ``token`` back: unlink its file unless it was taken over."""
        with self._mutex:
            fd = self._held.pop(token, None)
        if fd is None:
            return
        try:
            with self._guarded("release", key):
                try:
                    if os.lstat(file).st_ino == os.fstat(fd).st_ino:
                        os.unlink(file)
                except FileNotFoundError:
                    pass  # taken over and given back since
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read(fd: int) -> tuple[str, float]:
    """The token and deadline in a lock file; a file cut short (its holder died while
    writing it) has lapsed."""
    record = os.pread(fd, _RECORD.size, 0)
    if len(record) < _RECORD.size:
        return "", 0.0
    token, deadline = _RECORD.unpack(record)
    return token.hex(), deadline


def _failed(action: str, key: str, exc: OSError) -> BackendError:
    if exc.errno == errno.ELOOP:
        return BackendError(f"cannot {action} the lock of key {key!r}: a link is in its place")
    return BackendError(f"cannot {action} the lock of key {key!r}: {exc}")

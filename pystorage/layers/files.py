"""Files: one file per key in a folder, written atomically."""

from __future__ import annotations

import errno
import functools
import itertools
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import attrs

try:
    import fcntl
except ImportError:  # Windows: threads are still excluded, other processes are not
    fcntl = None  # type: ignore[assignment]

from pystorage.errors import BackendError, ConfigurationError, not_a_str
from pystorage.layers import names
from pystorage.layers.base import Backend, ValueKind

_MAX_NAME = 255
_TEMP_PREFIX = ".tmp-"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
# O_NONBLOCK: a FIFO planted under a key's name must not block a reader forever.
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | _BINARY | getattr(os, "O_NONBLOCK", 0)
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY
_temp_ids = itertools.count()
# Names are pure functions of (key, room): remember the recent ones, as reads repeat keys.
_stem = functools.lru_cache(maxsize=4096)(names.stem)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Files(Backend):
    """Stores each key as one file ``<path>/<escaped key><suffix>``.

    Writes go to a temporary file in the same folder, then ``os.replace``: a reader
    sees the old value or the new one, never half of one. Keys too long for a file name
    are stored under a hash of the key, with the key in the file's first line. Only
    regular files are read; symlinks in the folder are never followed. ``fsync=True``
    also makes each write durable across a power loss (the file and the folder are
    flushed), at the cost of two disk flushes per write.

    With an empty ``suffix`` every file in the folder whose name is an escaped key counts
    as an entry, so give each storage sharing a folder its own suffix, and no suffix that
    ends another one (``json`` and ``storage.json`` would see each other's files).
    """

    accepts: ClassVar[ValueKind] = "bytes"

    path: Path = attrs.field(converter=Path)
    suffix: str = attrs.field(default="")
    fsync: bool = False
    _root: str = attrs.field(init=False, repr=False)
    _slash_root: str = attrs.field(init=False, repr=False)  # "<root>/": a path is one concat
    _max_stem: int = attrs.field(init=False, repr=False)
    _ending: str = attrs.field(init=False, repr=False)
    _lock_fd: int | None = attrs.field(init=False, default=None, repr=False)
    _thread_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _generation: int = attrs.field(init=False, default=-1, repr=False)

    def __attrs_post_init__(self) -> None:
        if any(bad in self.suffix for bad in ("/", "\\", "\0")):
            raise ConfigurationError(f"suffix {self.suffix!r} must not contain a separator")
        self._ending = "." + self.suffix.lstrip(".") if self.suffix.strip(".") else ""
        if names.HASHED_LENGTH + len(self._ending.encode()) > _MAX_NAME:
            raise ConfigurationError(f"suffix {self.suffix!r} is too long for a file name")
        if self.path.exists() and not self.path.is_dir():
            raise ConfigurationError(f"{self.path} is not a folder")
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendError(f"cannot create the folder {self.path}: {exc}") from exc
        self._root = str(self.path)
        self._slash_root = os.path.join(self._root, "")
        self._max_stem = _MAX_NAME - len(self._ending.encode())
        self._remove_dead_temp_files()

    # -- names -------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        if type(key) is not str:
            raise not_a_str(key)
        return _stem(key, self._max_stem) + self._ending

    def _key_of(self, entry: os.DirEntry[str]) -> str | None:
        name = entry.name
        if not name.endswith(self._ending) or not entry.is_file(follow_symlinks=False):
            return None
        stem = name[: len(name) - len(self._ending)] if self._ending else name
        if names.is_hashed(stem):
            key = self._long_key(entry.path)
            # The first line of a foreign "~" file is not a key unless it hashes here.
            return key if key is not None and self._name(key) == name else None
        return names.unescape(stem)

    def _long_key(self, file: str) -> str | None:
        try:
            with open(file, "rb", opener=_open_for_reading) as stream:
                header = stream.readline()
        except OSError:
            return None
        return names.key_in_header(header)

    # -- the protocol ------------------------------------------------------------------

    def get(self, key: str) -> Any:
        name = self._name(key)
        try:
            fd = os.open(self._slash_root + name, _READ_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                raise KeyError(key) from None
            raise self._error("read", key, exc) from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise KeyError(key)
            data = _read_all(fd, info.st_size)
        except OSError as exc:
            raise self._error("read", key, exc) from exc
        finally:
            os.close(fd)
        if name[0] == names.HASHED:
            value = names.without_key(key, data)
            if value is None:
                raise KeyError(key)
            return value
        return data

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if ttl is not None:
            self.refuse_ttl(ttl)
        name = self._name(key)
        if names.is_hashed(name):
            value = names.with_key(key, value)
        temp = f"{self._slash_root}{_TEMP_PREFIX}{os.getpid()}-{next(_temp_ids)}"
        try:
            fd = os.open(temp, _WRITE_FLAGS, 0o600)
        except OSError as exc:
            raise self._error("write", key, exc) from exc
        try:
            try:
                _write_all(fd, value)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self._slash_root + name)
            if self.fsync:
                _fsync_folder(self._root)
        except OSError as exc:
            _unlink_quietly(temp)
            raise self._error("write", key, exc) from exc
        except BaseException:
            _unlink_quietly(temp)
            raise

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._file(key))
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None
        except OSError as exc:
            raise self._error("delete", key, exc) from exc

    def contains(self, key: str) -> bool:
        try:
            info = os.lstat(self._file(key))
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise self._error("check", key, exc) from exc
        return stat.S_ISREG(info.st_mode)

    def keys(self) -> Iterator[str]:
        return (key for key, _ in self._entries())

    def touch(self, key: str) -> None:
        # An explicit time: the kernel's own file times are only as fine as its clock tick.
        now = time.time_ns()
        try:
            os.utime(self._file(key), ns=(now, now), follow_symlinks=False)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._error("touch", key, exc) from exc

    def keys_by_age(self) -> list[str]:
        aged = []
        for key, entry in self._entries():
            try:
                aged.append((entry.stat(follow_symlinks=False).st_mtime_ns, key))
            except FileNotFoundError:
                continue
        aged.sort()
        return [key for _, key in aged]

    def _entries(self) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """(key, directory entry) of every file of this storage in the folder."""
        try:
            with os.scandir(self._root) as entries:
                for entry in entries:
                    key = self._key_of(entry)
                    if key is not None:
                        yield key, entry
        except OSError as exc:
            raise BackendError(f"cannot list {self._root}: {exc}") from exc

    @contextmanager
    def exclusive(self) -> Iterator[bool]:
        """Excludes other threads, and other processes through ``flock`` on a lock file.

        The lock file holds a counter bumped by every section, so a section can tell
        whether another process had one since this object's last.
        """
        with self._thread_lock:
            fd = self._open_lock_file()
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                stored = os.pread(fd, 8, 0)
                generation = int.from_bytes(stored, "big") if len(stored) == 8 else 0
                try:
                    yield generation != self._generation
                finally:
                    self._generation = generation + 1
                    os.pwrite(fd, self._generation.to_bytes(8, "big"), 0)
            finally:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._thread_lock:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _open_lock_file(self) -> int:
        if self._lock_fd is None:
            name = os.path.join(self._root, f".lock{self._ending}")
            try:
                self._lock_fd = os.open(name, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
            except OSError as exc:
                raise BackendError(f"cannot open the lock file {name}: {exc}") from exc
        return self._lock_fd

    def _file(self, key: str) -> str:
        return self._slash_root + self._name(key)

    def _error(self, action: str, key: str, exc: OSError) -> BackendError:
        return BackendError(f"cannot {action} key {key!r} in {self._root}: {exc}")

    def _remove_dead_temp_files(self) -> None:
        """Delete temporary files left by writers that died before their ``os.replace``."""
        with os.scandir(self._root) as entries:
            for entry in entries:
                if not entry.name.startswith(_TEMP_PREFIX):
                    continue
                pid = entry.name[len(_TEMP_PREFIX) :].partition("-")[0]
                if pid.isascii() and pid.isdigit() and not _alive(int(pid)):
                    _unlink_quietly(entry.path)


def _fsync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_for_reading(file: str, flags: int) -> int:
    return os.open(file, _READ_FLAGS)


def _read_all(fd: int, size: int) -> bytes:
    data = os.read(fd, size)
    if len(data) == size:
        return data
    # A short read: very large files come back in pieces.
    chunks = [data]
    remaining = size - len(data)
    while remaining and (chunk := os.read(fd, remaining)):
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _unlink_quietly(file: str) -> None:
    try:
        os.unlink(file)
    except OSError:
        pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:
        return True
    return True

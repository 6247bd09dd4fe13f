"""Files: one file per key in a folder, written atomically."""

from __future__ import annotations

import errno
import functools
import itertools
import mmap
import os
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, ClassVar

import attrs

try:
    import fcntl
except ImportError:  # Windows: threads are still excluded, other processes are not
    fcntl = None  # type: ignore[assignment]

from pystorage import _fork
from pystorage.errors import (
    BackendError,
    ConfigurationError,
    InvalidKeyError,
    UnsupportedError,
    not_a_str,
)
from pystorage.layers import names
from pystorage.layers.base import ABSENT, Backend, ValueKind, new_token
from pystorage.layers.file_leases import GUARD_NAME, LOCK_PREFIX, FileLeases
from pystorage.layers.leases import LOCK_TIMEOUT, Lease, checked_lease

_MAX_NAME = 255
_TEMP_PREFIX = ".tmp-"
#: Notes beside the entries (``write_note``): a leading dot, which no escaped key has.
_NOTE_PREFIX = ".note-"
#: Tags' tokens beside the entries (``tag_tokens``), as notes are.
_TAG_PREFIX = ".tag-"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
# O_NONBLOCK: a FIFO planted under a key's name must not block a reader forever.
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | _BINARY | getattr(os, "O_NONBLOCK", 0)
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# The marker and the lock file: never a link followed, never a FIFO waited on (opening one
# for reading blocks until a writer comes), never inherited by a child program.
_LOCK_FLAGS = _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
#: Why opening a file of the folder may fail when it is no entry to judge: gone, a link
#: or folder put in its place, or another user's that this one cannot read.
_NOT_OURS = frozenset({errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EACCES, errno.EPERM})
_temp_ids = itertools.count()
#: A file with a deadline has its owner-execute bit set and begins with this header: the
#: bit, which no value can set, tells a framed file from a plain one.
_FRAMED = stat.S_IXUSR
_FRAME = struct.Struct(">5sd")
_FRAME_MAGIC = b"\xffPST\x01"
#: Marks a folder whose deadlines live outside the values (format 1). Folders of
#: pystorage 0.1 (format 0) kept them inside values, where a value could look like one.
#: The same file is the gate that removals of expired files close to writers (flock).
_FORMAT_FILE = ".pystorage"
_FORMAT = b"1\n"
GIB = 1 << 30
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

    A value without a deadline is the file's whole content. A value written with a
    ``ttl`` gets a 13-byte header holding its deadline, and the file's owner-execute bit
    says so: the bit, not the content, tells the two apart, so no value can pass for a
    header. An expired file is never returned, counted or listed; ``get``, ``delete``,
    ``expire()`` and ``keys_by_age()`` (a ``CountLimit`` rebuilding its index) remove it,
    and only while no write to the folder is in flight, so a removal never takes a value
    written after the expired one was judged.

    ``add`` and ``modify`` (``incr``) read and write holding the folder's gate alone (the
    ``flock`` that removals of expired files take): no write or delete of any thread or
    process lands between their read and their write, which then goes in place by
    ``os.replace`` as any other. They serialize with each other across the whole folder.

    Files owned by another user are refused (``BackendError``), never decoded, unless
    ``trust_others=True``; a file larger than ``max_value_bytes`` (plus its header, and
    the key under a hashed name) is refused before any of it is read, and a key whose
    escaped form is longer, which listing could not read back, is refused.

    With an empty ``suffix`` every file in the folder whose name is an escaped key counts
    as an entry, so give each storage sharing a folder its own suffix, and no suffix that
    ends another one (``json`` and ``storage.json`` would see each other's files).
    """

    accepts: ClassVar[ValueKind] = "bytes"
    supports_ttl: ClassVar[bool] = fcntl is not None

    path: Path = attrs.field(converter=Path)
    suffix: str = attrs.field(default="")
    fsync: bool = False
    max_value_bytes: int = attrs.field(default=GIB, kw_only=True)
    trust_others: bool = attrs.field(default=False, kw_only=True)
    clock: Callable[[], float] = attrs.field(default=time.time, kw_only=True, repr=False)
    #: How long a memoize lock may be held before other callers presume its holder hung
    #: and take it over (a holder that dies frees it at once).
    lock_timeout: float = attrs.field(
        default=LOCK_TIMEOUT, kw_only=True, converter=checked_lease, repr=False
    )
    _root: str = attrs.field(init=False, repr=False)
    _slash_root: str = attrs.field(init=False, repr=False)  # "<root>/": a path is one concat
    _max_stem: int = attrs.field(init=False, repr=False)
    _ending: str = attrs.field(init=False, repr=False)
    _uid: int = attrs.field(init=False, repr=False)
    _trusting: bool = attrs.field(init=False, repr=False)  # read files of any owner
    _max_file: int = attrs.field(init=False, repr=False)  # a value and its header
    _lock_fd: int | None = attrs.field(init=False, default=None, repr=False)
    #: The lock file mapped in memory, to read the version token without a system call.
    _version_map: mmap.mmap | None = attrs.field(init=False, default=None, repr=False)
    _thread_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    # Not _thread_lock: a removal may happen inside exclusive(), which holds that one.
    _count_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _epoch: int = attrs.field(factory=_fork.epoch, init=False, repr=False)
    _generation: int = attrs.field(init=False, default=-1, repr=False)
    # The thread in an exclusive section, and whether that section was told of a change:
    # a section it takes inside it (a limit below another limit) is told the same.
    _holder: int | None = attrs.field(init=False, default=None, repr=False)
    _holder_changed: bool = attrs.field(init=False, default=False, repr=False)
    _gate: _Gate = attrs.field(init=False, repr=False)
    _expirations: int = attrs.field(init=False, default=0, repr=False)
    _leases: FileLeases = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if any(bad in self.suffix for bad in ("/", "\\", "\0")):
            raise ConfigurationError(f"suffix {self.suffix!r} must not contain a separator")
        if isinstance(self.max_value_bytes, bool) or not isinstance(self.max_value_bytes, int):
            raise ConfigurationError("max_value_bytes must be an int")
        if self.max_value_bytes < 1:
            raise ConfigurationError("max_value_bytes must be positive")
        self._ending = "." + self.suffix.lstrip(".") if self.suffix.strip(".") else ""
        if names.HASHED_LENGTH + len(self._ending.encode()) > _MAX_NAME:
            raise ConfigurationError(f"suffix {self.suffix!r} is too long for a file name")
        try:
            if self.path.exists() and not self.path.is_dir():
                raise ConfigurationError(f"{self.path} is not a folder")
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._root = str(self.path)
            self._check_format()
            self._remove_dead_temp_files()
        except OSError as exc:
            raise BackendError(f"cannot open the folder {self.path}: {exc}") from exc
        self._slash_root = os.path.join(self._root, "")
        self._max_stem = _MAX_NAME - len(self._ending.encode())
        self._uid = os.geteuid() if hasattr(os, "geteuid") else -1
        self._trusting = self.trust_others or self._uid == -1
        self._max_file = self.max_value_bytes + _FRAME.size
        self._gate = _Gate(os.path.join(self._root, _FORMAT_FILE))
        self._leases = FileLeases(os.path.join(self._root, GUARD_NAME + self._ending))
        _fork.renew_in_child(self, Files._renew_count_lock)

    def _renew_count_lock(self) -> None:
        """In a forked child: a thread of the parent may have held it at the fork (the
        other lock and the lock file's descriptor are renewed by ``_after_fork``)."""
        self._count_lock = threading.Lock()

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
                if os.fstat(stream.fileno()).st_mode & _FRAMED:
                    stream.seek(_FRAME.size)
                header = stream.readline(self.max_value_bytes)
        except OSError as exc:
            if exc.errno in _NOT_OURS:
                return None
            # Short of descriptors (or an I/O error): the entry exists, say so by failing.
            raise BackendError(f"cannot read the key of {file}: {exc}") from exc
        return names.key_in_header(header)

    # -- the protocol ------------------------------------------------------------------

    def get(self, key: str) -> Any:
        value, deadline = self._read(key)
        if deadline is not None and deadline <= self.clock():
            self._remove_expired([self._name(key)])
            raise KeyError(key)
        return value

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        value, deadline = self._read(key)
        if deadline is None:
            return value, None
        remaining = deadline - self.clock()
        if remaining <= 0:
            self._remove_expired([self._name(key)])
            raise KeyError(key)
        return value, remaining

    def _read(self, key: str) -> tuple[bytes, float | None]:
        """The stored value of ``key`` and its deadline, expired or not."""
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
            if (info.st_uid != self._uid and not self._trusting) or info.st_size > self._max_file:
                self._check_file(key, name, info)
            data = _read_all(fd, info.st_size)
        except OSError as exc:
            raise self._error("read", key, exc) from exc
        finally:
            os.close(fd)
        deadline = None
        if info.st_mode & _FRAMED:
            data, deadline = self._unframe(key, data)
        if name[0] == names.HASHED:
            value = names.without_key(key, data)
            if value is None:
                raise KeyError(key)
            return value, deadline
        return data, deadline

    def _check_file(self, key: str, name: str, info: os.stat_result) -> None:
        """Raise why the file of ``key`` is not read, its owner or its size, if it is not
        (the quick check before this one does not count a hashed name's key line)."""
        if info.st_uid != self._uid and not self._trusting:
            raise BackendError(
                f"the file of key {key!r} in {self._root} belongs to user {info.st_uid}, "
                "not to this one: refusing to read a value another user could have "
                "planted (Files(..., trust_others=True) reads them)"
            )
        # Beside the value: a header, and under a hashed name the escaped key and a newline.
        beside = _FRAME.size + (len(names.escape(key)) + 1 if names.is_hashed(name) else 0)
        if info.st_size > self.max_value_bytes + beside:
            raise BackendError(
                f"the file of key {key!r} in {self._root} holds {info.st_size} bytes, more "
                f"than max_value_bytes={self.max_value_bytes}: refusing to read it"
            )

    def _unframe(self, key: str, data: bytes) -> tuple[bytes, float]:
        try:
            magic, deadline = _FRAME.unpack_from(data)
        except struct.error:
            magic = b""
        if magic != _FRAME_MAGIC:
            raise BackendError(
                f"the file of key {key!r} in {self._root} is marked as holding a deadline "
                "(owner-execute bit) but has no pystorage header: not a value of ours"
            )
        return data[_FRAME.size :], deadline

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if ttl is not None and fcntl is None:
            self.refuse_ttl(ttl)
        self._write(key, value, self._deadline_of(ttl), self._gate.shared)

    def _write(
        self,
        key: str,
        value: Any,
        deadline: float | None,
        gate: Callable[[], AbstractContextManager[None]],
    ) -> None:
        """Write ``value`` to a temporary file, then put it in place inside ``gate()``: the
        gate shared with other writers, or nothing when the caller holds it alone."""
        name = self._name(key)
        if len(value) > self.max_value_bytes:
            raise BackendError(
                f"the value of key {key!r} is {len(value)} bytes, more than "
                f"max_value_bytes={self.max_value_bytes}"
            )
        if names.is_hashed(name):
            if len(names.escape(key)) > self.max_value_bytes:
                # Listing reads at most that much of a file's first line to find its key.
                raise InvalidKeyError(
                    f"key {key[:40]!r}... is too long: escaped, it exceeds max_value_bytes="
                    f"{self.max_value_bytes}, so it could be stored but never listed"
                )
            value = names.with_key(key, value)
        if deadline is not None:
            value = _FRAME.pack(_FRAME_MAGIC, deadline) + bytes(value)
        temp = f"{self._slash_root}{_TEMP_PREFIX}{os.getpid()}-{next(_temp_ids)}"
        try:
            fd = os.open(temp, _WRITE_FLAGS, 0o600)
        except OSError as exc:
            raise self._error("write", key, exc) from exc
        try:
            try:
                if deadline is not None:
                    os.fchmod(fd, 0o600 | _FRAMED)  # explicit: the umask cannot drop the bit
                _write_all(fd, value)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            with gate():
                os.replace(temp, self._slash_root + name)
                self._changed()
            if self.fsync:
                _fsync_folder(self._root)
        except OSError as exc:
            _unlink_quietly(temp)
            raise self._error("write", key, exc) from exc
        except BaseException:
            _unlink_quietly(temp)
            raise

    # -- atomic operations: read and write while no other write is in flight ------------

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        with self._alone("add"):
            if self.contains(key):  # an expired file is not: it is replaced
                return False
            self._write(key, value, self._deadline_of(ttl), nullcontext)
        return True

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        with self._alone("modify (incr, decr)"):
            found: tuple[bytes, float | None] | None
            try:
                found = self._read(key)
            except KeyError:
                found = None
            if found is None or (found[1] is not None and found[1] <= self.clock()):
                value = change(ABSENT)
                deadline = self._deadline_of(ttl)
            else:
                value = change(found[0])
                deadline = found[1]  # it stays
            self._write(key, value, deadline, nullcontext)
        return value

    def _alone(self, operation: str) -> AbstractContextManager[None]:
        """The gate held alone: no write, delete or removal of an expired file of the
        folder, by any thread or process, lands between a read and a write inside it."""
        if fcntl is None:
            raise UnsupportedError(
                f"Files has no atomic {operation} on this system: it needs flock, "
                "which this system lacks"
            )
        return self._gate.alone()

    def _deadline_of(self, ttl: float | None) -> float | None:
        return None if ttl is None else self.clock() + ttl

    def delete(self, key: str) -> None:
        file = self._file(key)
        try:
            info = os.lstat(file)
            if not stat.S_ISREG(info.st_mode):
                raise KeyError(key)
            if self._expired(file, info):
                # Missing, but removed all the same: an eviction of an expired entry
                # (CountLimit) must not leave its file behind for good.
                self._remove_expired([self._name(key)])
                raise KeyError(key)
            with self._gate.shared():
                os.unlink(file)
                self._changed()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyError(key) from None
        except OSError as exc:
            raise self._error("delete", key, exc) from exc

    def contains(self, key: str) -> bool:
        file = self._file(key)
        try:
            info = os.lstat(file)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise self._error("check", key, exc) from exc
        return stat.S_ISREG(info.st_mode) and not self._expired(file, info)

    def keys(self) -> Iterator[str]:
        return (key for key, _, _ in self._entries())

    def count(self) -> int:
        return sum(1 for _ in self._entries())

    def expire(self) -> int:
        """Remove every expired file of this storage now; returns how many went."""
        now = self.clock()
        expired = [
            entry.name
            for _, entry, info in self._entries(live=False)
            if info.st_mode & _FRAMED and self._deadline(entry.path) <= now
        ]
        return self._remove_expired(expired)

    def counters(self) -> dict[str, int]:
        # Named once there is something to count: an ``Expiry`` above names it always.
        return {"expirations": self._expirations} if self._expirations else {}

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
        return [key for key, _ in self.sizes_by_age()]

    def sizes_by_age(self) -> list[tuple[str, int]]:
        # The expired files met on the way are removed: an index of use built from this
        # list (CountLimit) would never evict them, and they would pile up.
        now = self.clock()
        aged, expired = [], []
        for key, entry, info in self._entries(live=False):
            size = info.st_size
            if info.st_mode & _FRAMED:
                if self._deadline(entry.path) <= now:
                    expired.append(entry.name)
                    continue
                size -= _FRAME.size
            if names.is_hashed(entry.name[: len(entry.name) - len(self._ending)]):
                size -= len(names.escape(key)) + 1  # the key line before the value
            aged.append((info.st_mtime_ns, key, size))
        self._remove_expired(expired)
        aged.sort()
        return [(key, size) for _, key, size in aged]

    def _entries(self, live: bool = True) -> Iterator[tuple[str, os.DirEntry[str], os.stat_result]]:
        """(key, directory entry, lstat) of every file of this storage in the folder (with
        ``live``, those not expired). Files of other users are entries too: only their
        values are refused."""
        now = self.clock()
        try:
            with os.scandir(self._root) as entries:
                for entry in entries:
                    key = self._key_of(entry)
                    if key is None:
                        continue
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if live and info.st_mode & _FRAMED and self._deadline(entry.path) <= now:
                        continue
                    yield key, entry, info
        except OSError as exc:
            raise BackendError(f"cannot list {self._root}: {exc}") from exc

    def _expired(self, file: str, info: os.stat_result) -> bool:
        return bool(info.st_mode & _FRAMED) and self._deadline(file) <= self.clock()

    def _deadline(self, file: str) -> float:
        """The deadline in a framed file's header: -inf, long past, if the file is gone,
        not ours to read or has no header of ours. A failure to read it (no descriptor
        left, an I/O error) raises: a live value must not be judged expired by it."""
        try:
            fd = os.open(file, _READ_FLAGS)
        except OSError as exc:
            if exc.errno in _NOT_OURS:
                return float("-inf")
            raise BackendError(f"cannot read the deadline of {file}: {exc}") from exc
        try:
            magic, deadline = _FRAME.unpack(os.pread(fd, _FRAME.size, 0))
        except struct.error:
            return float("-inf")
        except OSError as exc:
            raise BackendError(f"cannot read the deadline of {file}: {exc}") from exc
        finally:
            os.close(fd)
        return float(deadline) if magic == _FRAME_MAGIC else float("-inf")

    def _remove_expired(self, names_: list[str]) -> int:
        """Remove those files that are expired, judged again while no write is in flight:
        a value written after the caller looked is never the one removed."""
        if not names_:
            return 0
        removed = 0
        with self._gate.alone():
            for name in names_:
                file = self._slash_root + name
                try:
                    info = os.lstat(file)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(info.st_mode) and self._expired(file, info):
                    _unlink_quietly(file)
                    removed += 1
        with self._count_lock:
            self._expirations += removed
        return removed

    @contextmanager
    def exclusive(self) -> Iterator[bool]:
        """Excludes other threads, and other processes through ``flock`` on a lock file.

        The lock file holds a counter bumped by every section, so a section can tell
        whether another process had one since this object's last. A section that a thread
        takes inside its own (a limit below another limit) is part of it, and is told the
        same.
        """
        self._after_fork()
        if self._holder == threading.get_ident():  # already exclusive: not a deadlock
            yield self._holder_changed
            return
        with self._thread_lock:
            fd = self._open_lock_file()
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                try:  # the counter is bumped before the section: a full disk fails it here
                    stored = os.pread(fd, 8, 0)
                    generation = int.from_bytes(stored, "big") if len(stored) == 8 else 0
                    os.pwrite(fd, (generation + 1).to_bytes(8, "big"), 0)
                except OSError as exc:
                    raise BackendError(f"cannot lock {self._root}: {exc}") from exc
                changed = generation != self._generation
                self._generation = generation + 1
                self._holder, self._holder_changed = threading.get_ident(), changed
                try:
                    yield changed
                finally:
                    self._holder = None
            finally:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def key_lock(self, key: str) -> AbstractContextManager[Any]:
        """A lease across processes: a lock file per key (see ``file_leases``); without
        ``flock`` (Windows), a lock of this process."""
        if fcntl is None:
            return super().key_lock(key)
        self._name(key)  # a key that is no str fails here, as in every operation
        return Lease(self, key)

    def take_lease(self, key: str, token: str, seconds: float) -> str:
        """One try to take the lease of ``key`` (see ``pystorage.layers.leases``)."""
        return self._leases.take(self._lease_file(key), key, token, seconds)

    def end_lease(self, key: str, token: str) -> None:
        """Give the lease of ``key`` back if ``token`` still holds it."""
        self._leases.end(self._lease_file(key), key, token)

    def _lease_file(self, key: str) -> str:
        room = self._max_stem - len(LOCK_PREFIX)
        return f"{self._slash_root}{LOCK_PREFIX}{_stem(key, room)}{self._ending}"

    def read_note(self, name: str) -> bytes | None:
        """The note ``name`` of this suffix, if it is a regular file of this user (or
        ``trust_others``) no larger than ``max_value_bytes``; None otherwise."""
        return self._read_aside(self._note_file(name), "note")

    def write_note(self, name: str, note: bytes) -> None:
        """Write the note whole to a temporary file, then put it in place."""
        self._write_aside(self._note_file(name), note, "note", replace=True)

    def tag_tokens(self, tags: Sequence[str], create: bool) -> dict[str, str]:
        # One small file per tag, named with a leading dot (which no key's name has),
        # per suffix as notes are. A tag first used gets its file by a link, which
        # fails if another writer made it first: racing writers agree on its token.
        found = {}
        for tag in tags:
            file = self._tag_file(tag)
            token = self._read_aside(file, "tag token")
            if token is None and create:
                self._write_aside(file, new_token().encode(), "tag token", replace=False)
                token = self._read_aside(file, "tag token")
                if token is None:
                    raise BackendError(f"the token of tag {tag!r} ({file}) is not readable")
            if token is not None:
                found[tag] = token.decode("ascii", "replace")
        return found

    def renew_tag(self, tag: str) -> None:
        self._write_aside(self._tag_file(tag), new_token().encode(), "tag token", replace=True)

    def _tag_file(self, tag: str) -> str:
        stem = names.stem(tag, self._max_stem - len(_TAG_PREFIX))
        return f"{self._slash_root}{_TAG_PREFIX}{stem}{self._ending}"

    def _read_aside(self, file: str, what: str) -> bytes | None:
        """A file beside the entries, if it is a regular file of this user (or
        ``trust_others``) no larger than ``max_value_bytes``; None otherwise."""
        try:
            fd = os.open(file, _READ_FLAGS)
        except OSError as exc:
            if exc.errno in _NOT_OURS:
                return None
            raise BackendError(f"cannot read the {what} {file}: {exc}") from exc
        try:
            info = os.fstat(fd)
            mine = info.st_uid == self._uid or self._trusting
            if not stat.S_ISREG(info.st_mode) or not mine or info.st_size > self.max_value_bytes:
                return None
            return _read_all(fd, info.st_size)
        except OSError as exc:
            raise BackendError(f"cannot read the {what} {file}: {exc}") from exc
        finally:
            os.close(fd)

    def _write_aside(self, file: str, data: bytes, what: str, replace: bool) -> None:
        """Write ``data`` whole to a temporary file, then put it in place (``replace``)
        or link it there unless ``file`` exists already."""
        temp = f"{self._slash_root}{_TEMP_PREFIX}{os.getpid()}-{next(_temp_ids)}"
        try:
            fd = os.open(temp, _WRITE_FLAGS, 0o600)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            if replace:
                os.replace(temp, file)
            else:
                with suppress(FileExistsError):
                    os.link(temp, file)
                os.unlink(temp)
        except OSError as exc:
            _unlink_quietly(temp)
            raise BackendError(f"cannot write the {what} {file}: {exc}") from exc

    def _note_file(self, name: str) -> str:
        return f"{self._slash_root}{_NOTE_PREFIX}{names.escape(name)}{self._ending}"

    def close(self) -> None:
        self._after_fork()
        with self._thread_lock:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            view, self._version_map = self._version_map, None
            if view is not None:
                view.close()

    def _after_fork(self) -> None:
        """In a child process, drop what it shares with its parent: the lock file's
        descriptor (whose ``flock`` the parent holds too) and a thread lock that some
        thread of the parent may have held at the fork."""
        if self._epoch == _fork.epoch():
            return
        self._epoch = _fork.epoch()
        self._thread_lock = threading.Lock()
        self._holder = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # never unlocked here: that would unlock the parent's
            self._lock_fd = None
        self._generation = -1

    def _changed(self) -> None:
        """Mark the folder as changed, for the memory fronts of every process (see
        ``version``): a random token, so no read-modify-write and no lock is needed.
        Until a front or a limit has made the lock file, nobody reads a token: none."""
        self._after_fork()
        if self._lock_fd is None and not os.path.exists(self._lock_file()):
            return
        try:
            os.pwrite(self._open_lock_file(), os.urandom(8), _VERSION_AT)
        except OSError as exc:
            raise BackendError(f"cannot mark {self._root} as changed: {exc}") from exc

    def version(self) -> bytes:
        """A token that every write or delete of this folder, by any process, replaces
        after it lands: a ``Tier`` whose front has seen one token drops its front when it
        reads another. The lock file is mapped in memory (shared with every writer's
        ``pwrite`` through the page cache): a read costs no system call."""
        view = self._version_map
        try:
            if view is not None:
                return view[_VERSION_AT : _VERSION_AT + 8]
        except ValueError:  # closed by close() in another thread: map it again
            pass
        return self._map_version()[_VERSION_AT : _VERSION_AT + 8]

    def _map_version(self) -> mmap.mmap:
        self._after_fork()
        try:
            fd = self._open_lock_file()
            if os.fstat(fd).st_size < _VERSION_AT + 8:  # extends only: keeps what is there
                os.ftruncate(fd, _VERSION_AT + 8)
            view = mmap.mmap(fd, _VERSION_AT + 8, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read the version of {self._root}: {exc}") from exc
        self._version_map = view
        return view

    def _open_lock_file(self) -> int:
        if self._lock_fd is None:
            self._lock_fd = _open_lock(self._lock_file(), os.O_RDWR, 0o600)
        return self._lock_fd

    def _lock_file(self) -> str:
        return os.path.join(self._root, f".lock{self._ending}")

    def _file(self, key: str) -> str:
        return self._slash_root + self._name(key)

    def _error(self, action: str, key: str, exc: OSError) -> BackendError:
        return BackendError(f"cannot {action} key {key!r} in {self._root}: {exc}")

    def _check_format(self) -> None:
        """Refuse a folder of pystorage 0.1, whose deadlines lived inside the values, and
        a marker or lock file that is no regular file (a FIFO would hang every write)."""
        marker = os.path.join(self._root, _FORMAT_FILE)
        for file in (self._lock_file(), marker):
            try:
                info = os.lstat(file)
            except FileNotFoundError:
                continue
            _refuse_unless_regular(file, info)
        if os.path.lexists(marker):
            return
        with os.scandir(self._root) as entries:
            legacy = any(self._key_of(entry) is not None for entry in entries)
        # Look again: another process may have made the marker, then its first entry,
        # since we looked (the marker always comes first).
        if legacy and not os.path.lexists(marker):
            raise ConfigurationError(
                f"{self._root} holds entries of pystorage 0.1 (storage format 0), which kept "
                "deadlines inside values; this release cannot tell those from values. Clear "
                f"the folder (they are cache entries), or create {marker} to read them as "
                "plain values"
            )
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
        except FileExistsError:
            return
        try:
            _write_all(fd, _FORMAT)
        finally:
            os.close(fd)

    def _remove_dead_temp_files(self) -> None:
        """Delete temporary files left by writers that died before their ``os.replace``."""
        with os.scandir(self._root) as entries:
            for entry in entries:
                if not entry.name.startswith(_TEMP_PREFIX):
                    continue
                pid = entry.name[len(_TEMP_PREFIX) :].partition("-")[0]
                if pid.isascii() and pid.isdigit() and not _alive(int(pid)):
                    _unlink_quietly(entry.path)


#: Where the lock file keeps the folder's version token (its first 8 bytes count sections).
_VERSION_AT = 8


class _Gate:
    """Writers hold it shared; the removal of an expired file holds it alone, so that it
    never races a write. Each holder opens the lock file for itself: a ``flock`` belongs
    to an open file, so threads sharing a descriptor would release each other's, and a
    descriptor kept per thread would stay open after ``close()`` in every thread of a
    pool. Opening costs about a microsecond, a write a hundred.
    """

    def __init__(self, file: str) -> None:
        self._file = file

    @contextmanager
    def _held(self, operation: int) -> Iterator[None]:
        # O_CREAT: a cleaner of old temp files removes the marker, never written
        # after it is made; the next write puts it back, so that the folder is not
        # taken for format 0 at the next open, and all holders lock one file again.
        fd = _open_lock(self._file, os.O_RDONLY, 0o644)
        try:
            fcntl.flock(fd, operation)
            try:
                yield
            finally:
                # Explicitly: a child forked meanwhile shares the open file, and closing
                # our descriptor alone would leave the lock held by its copy.
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextmanager
    def shared(self) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        with self._held(fcntl.LOCK_SH):
            yield

    @contextmanager
    def alone(self) -> Iterator[None]:
        if fcntl is None:
            raise UnsupportedError("expiring files needs flock, which this system lacks")
        with self._held(fcntl.LOCK_EX):
            yield


def _open_lock(file: str, access: int, mode: int) -> int:
    """The marker or lock file ``file``, created if missing; ``BackendError`` naming it if
    it is a link, a FIFO, a folder or anything but a regular file (never waited on)."""
    try:
        fd = os.open(file, access | os.O_CREAT | _LOCK_FLAGS, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR):  # a link O_NOFOLLOW met, a folder
            with suppress(OSError):  # gone meanwhile: the error below
                _refuse_unless_regular(file, os.lstat(file))
        raise BackendError(f"cannot open the lock file {file}: {exc}") from exc
    try:
        _refuse_unless_regular(file, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refuse_unless_regular(file: str, info: os.stat_result) -> None:
    if stat.S_ISREG(info.st_mode):
        return
    kind = (
        "a symbolic link" if stat.S_ISLNK(info.st_mode)
        else "a FIFO" if stat.S_ISFIFO(info.st_mode)
        else "a folder" if stat.S_ISDIR(info.st_mode)
        else "a socket" if stat.S_ISSOCK(info.st_mode)
        else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
        else "no regular file"
    )  # fmt: skip
    raise BackendError(
        f"the lock file {file} is {kind}, not a regular file: PyStorage refuses to use it "
        "(someone who can write the folder may have planted it); remove it"
    )


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

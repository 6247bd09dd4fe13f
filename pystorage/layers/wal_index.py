"""Whether anyone committed to an SQLite database in WAL mode, without asking SQLite.

``PRAGMA data_version`` answers it, but costs a read transaction (3-4 µs here, as much as
a read of an entry), which a memory front over SQLite would pay on every hit. Every commit
rewrites the header of the WAL index, the ``-shm`` file that all connections to the
database share in memory (https://sqlite.org/walformat.html, "The WAL-Index Header"): its
change counter, frame count and salts. The first 48 bytes of that file, read through a
read-only shared mapping, are then a change token that costs no system call: equal
tokens mean that no connection of any process committed between the two reads.

Two facts of POSIX and SQLite shape this module. Closing any descriptor of a file drops
every POSIX lock the process holds on it, and SQLite's connections hold their locks of
the shared memory on this very file: a descriptor opened here is therefore never closed.
And SQLite unlinks the ``-shm`` file when the last connection of the last process closes,
and makes a new one at the next open: a mapping is only trusted while a connection of
this process is open (the file cannot go away meanwhile), and is looked up again, by
inode, whenever a connection opens. Once a file is unlinked no connection uses it any
more (SQLite removes it only as the last user, of every process), so its descriptor can
then be closed: each new mapping first closes those of removed files, and a process that
opens many databases in turn keeps one descriptor per database still in use.
"""

from __future__ import annotations

import mmap
import os
import stat
import threading
from collections.abc import Callable

#: The WAL-index header: two copies of 48 bytes; a writer updates both.
HEADER = 48

# Descriptors and mappings by (device, inode) of the -shm file, kept while it exists.
_MAPPED: dict[tuple[int, int], tuple[int, mmap.mmap]] = {}
_LOCK = threading.Lock()


def header_reader(shm: str, *, trust_others: bool) -> Callable[[], bytes] | None:
    """A function returning the current WAL-index header of the ``-shm`` file ``shm``;
    ``None`` where it cannot be mapped (no such file, not a regular file, another user's
    unless ``trust_others``, too short): the caller then asks SQLite instead."""
    try:
        info = os.lstat(shm)
    except OSError:
        return None
    key = (info.st_dev, info.st_ino)
    with _LOCK:
        mapped = _MAPPED.get(key)
        if mapped is None:
            _close_removed()
            mapped = _map(shm, key, trust_others=trust_others)
            if mapped is None:
                return None
    view = mapped[1]
    return lambda: view[:HEADER]


def _close_removed() -> None:
    """Close the mappings of files that SQLite removed (with the lock held)."""
    for key, (fd, view) in list(_MAPPED.items()):
        if os.fstat(fd).st_nlink == 0:
            del _MAPPED[key]
            view.close()
            os.close(fd)


def _map(shm: str, key: tuple[int, int], *, trust_others: bool) -> tuple[int, mmap.mmap] | None:
    try:
        fd = os.open(shm, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    # From here on the descriptor stays open, even unused: closing it would drop the
    # POSIX locks of this process's SQLite connections on the file.
    info = os.fstat(fd)
    usable = (
        (info.st_dev, info.st_ino) == key
        and stat.S_ISREG(info.st_mode)
        and (trust_others or info.st_uid == os.geteuid())
        and info.st_size >= HEADER
    )
    if not usable:
        _UNUSED.append(fd)
        return None
    mapped = _MAPPED[key] = (fd, mmap.mmap(fd, HEADER, access=mmap.ACCESS_READ))
    return mapped


#: Descriptors opened and found unusable: kept open for the reason above.
_UNUSED: list[int] = []

"""What a child process does first after ``fork()``.

A counter, the epoch, is bumped in every child: objects holding resources a child
cannot share (file descriptors whose ``flock`` the parent holds, thread pools, sockets)
remember the epoch they were made in and re-create them when it changes: comparing two
ints costs less than ``os.getpid()``, a system call, on every operation.

Locks cannot wait for a check: the child has only the thread that forked, so a lock
another thread held at that instant would stay held forever, and the child's first
write would wait for it. Their owners register with ``renew_in_child``, and the child
renews them before anything else runs there.

Nor can a lock of a C library: SQLite's own mutexes (its allocator's, its file table's)
are held by a thread while it runs a statement, without the GIL. Forked at that instant,
the child hangs at its first use of SQLite. Calls into such a library go through the
gate (``enter``/``leave``, or ``inside()``), and a fork waits at the gate for every
other thread to come out; threads that arrive meanwhile wait for the fork.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

_Owner = TypeVar("_Owner")

_epoch = 0
# Owner -> what renews its locks. Weak: registering keeps nothing alive.
_renewals: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()


def epoch() -> int:
    """The number of ``fork()`` calls between the first process and this one."""
    return _epoch


def renew_in_child(owner: _Owner, renew: Callable[[_Owner], None]) -> None:
    """Have ``renew(owner)`` run first thing in every child forked from now on.

    ``renew`` replaces the locks of ``owner`` (and mends what a write cut short at the
    fork may have left). It must not hold a reference to ``owner``: pass a function of
    it, such as an unbound method.
    """
    _renewals[owner] = renew


# The gate. One ident per call in progress (a thread may be in twice): appending to and
# removing from a list are atomic under the GIL, so that the way in costs no lock.
_inside: list[int] = []
_forks = 0  # forks waiting at the gate now
_forking: list[int] = []  # the threads that make them
_gate_lock = threading.Lock()
_gate_open = threading.Event()
_gate_open.set()
#: Seconds between two looks at the calls in progress, while a fork waits for them.
_LOOK_EVERY = 0.001


def enter() -> int:
    """Before a call into a library that a fork must not cut short (see above); the
    caller's ident, for ``leave``. Waits while a fork is in progress."""
    me = threading.get_ident()
    while True:
        _inside.append(me)
        # Checked after the append: a fork that starts after this check sees the entry
        # and waits for it; one that started before is seen here. A forking thread
        # goes in (the garbage collector may close a connection in its fork hooks).
        if not _forks or me in _forking:
            return me
        _inside.remove(me)
        _gate_open.wait()


def leave(me: int) -> None:
    """After the call: ``me`` is what ``enter`` returned."""
    _inside.remove(me)


@contextmanager
def inside() -> Iterator[None]:
    """``enter`` and ``leave`` around a block."""
    me = enter()
    try:
        yield
    finally:
        _inside.remove(me)


def _close_gate() -> None:
    """Before a fork: wait for the other threads' calls to end. The forking thread's own
    are no risk (it is in none of them now: it is forking)."""
    global _forks
    me = threading.get_ident()
    with _gate_lock:
        _forks += 1
        _forking.append(me)
        _gate_open.clear()
    while any(ident != me for ident in _inside):
        time.sleep(_LOOK_EVERY)


def _open_gate() -> None:
    global _forks
    with _gate_lock:
        _forks -= 1
        _forking.remove(threading.get_ident())
        if not _forks:
            _gate_open.set()


def _bump() -> None:
    global _epoch, _forks, _gate_lock, _gate_open, _inside
    _epoch += 1
    me = threading.get_ident()
    _inside = [ident for ident in _inside if ident == me]
    _forks = 0
    _forking.clear()
    _gate_lock, _gate_open = threading.Lock(), threading.Event()
    _gate_open.set()
    for owner, renew in list(_renewals.items()):
        renew(owner)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    # "before" hooks run last registered first: this one runs before those registered
    # earlier (logging's takes its lock, which a thread at the gate might want).
    os.register_at_fork(before=_close_gate, after_in_parent=_open_gate, after_in_child=_bump)

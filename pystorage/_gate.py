"""The fork gate: no fork while another thread is inside SQLite.

A C library's own locks are beyond ``_fork.renew_in_child``. SQLite holds its mutexes
(its allocator's, its table of open files) while it runs a call, and the ``sqlite3``
module runs it without the GIL, so other threads go on meanwhile. A thread that forks at
that instant gives the child those mutexes held, by a thread the child does not have:
the child hangs at its first use of SQLite.

So pystorage's calls into SQLite go through this gate: ``enter`` before, ``leave``
after (``inside()`` around a block). A fork waits at the gate until no other thread is
inside, and a thread that arrives meanwhile waits until the fork is over.

- The gate holds only pystorage's own code, never the caller's (``outside()``): a fork
  must never wait for code that may be waiting for it.
- A thread already inside goes in again at once: the fork waits for it anyway.
- ``try_enter`` never waits. The garbage collector closes a dead store's connections in
  whichever thread it runs, at any allocation, that thread holding any lock (the forking
  thread, within its fork, too); waiting there could wait forever.
- The way in costs no lock: appending to and removing from a list are atomic under the
  GIL, and each thread appends its entry before it checks for a fork, which appends
  nothing to the list before its last look at it.

Other code of the process that uses ``sqlite3`` does not go through the gate.
"""

from __future__ import annotations

import _thread
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

# One ident per call in progress: a thread inside twice appears twice.
_inside: list[int] = []
_forks = 0  # forks waiting at the gate now, or in their hooks
_lock = threading.Lock()  # only for the forks' book-keeping
_open = threading.Event()
_open.set()
_interrupted = False  # a KeyboardInterrupt arrived while a fork waited
#: Seconds between two looks at the calls in progress, while a fork waits for them.
LOOK_EVERY = 0.001


def _went_in(me: int) -> bool:
    try:
        _inside.append(me)
        # Checked after the append: a fork that starts after this check sees the entry
        # and waits for it; one that started before is seen here.
        if not _forks or _inside.count(me) > 1:
            return True
        _inside.remove(me)
        return False
    except BaseException:
        # An exception of a signal handler, raised between the append and the return:
        # an entry left behind would hold up every fork for good.
        with suppress(ValueError):
            _inside.remove(me)
        raise


def enter() -> int:
    """Before a call into SQLite: waits while a fork is in progress. Returns the
    caller's ident, for ``leave``."""
    me = threading.get_ident()
    while not _went_in(me):
        _open.wait()
    return me


def try_enter() -> int | None:
    """``enter`` without waiting: None while a fork is in progress."""
    me = threading.get_ident()
    return me if _went_in(me) else None


#: After the call: ``leave(me)``, ``me`` being what ``enter`` returned. The list's own
#: method, not a function: a signal handler's exception can be raised as a Python
#: function begins, before it removed the entry, and an entry left behind would hold up
#: every fork for good.
leave = _inside.remove


@contextmanager
def inside() -> Iterator[None]:
    """``enter`` and ``leave`` around a block."""
    me = enter()
    try:
        yield
    finally:
        _inside.remove(me)


@contextmanager
def outside() -> Iterator[None]:
    """Within the gate, out of it for a block: the caller's code (``modify``'s function)."""
    me = threading.get_ident()
    entries = _inside.count(me)
    for _ in range(entries):
        _inside.remove(me)
    try:
        yield
    finally:
        if entries:  # back in as many times as before (waiting for a fork, if one is on)
            enter()
            _inside.extend([me] * (entries - 1))


def _close() -> None:
    """Before a fork: wait until no other thread is inside. The forking thread itself
    is inside only if the fork began in a block of the gate: then it is no risk (it is
    forking, in no call into SQLite)."""
    global _forks, _interrupted
    me = threading.get_ident()
    with _lock:
        _forks += 1
        _open.clear()
    raised: BaseException | None = None
    while any(ident != me for ident in _inside):
        try:
            time.sleep(LOOK_EVERY)
        except BaseException as exc:  # a signal handler's
            # Forking now would copy SQLite's mutexes held (CPython reports an exception
            # of this hook and forks anyway): wait on, and raise it once the wait is
            # over; a KeyboardInterrupt is raised again in the parent after the fork.
            if isinstance(exc, KeyboardInterrupt):
                _interrupted = True
            elif raised is None:
                raised = exc
    if raised is not None:
        raise raised


def _reopen() -> None:
    """After a fork, in the parent."""
    global _forks, _interrupted
    with _lock:
        _forks -= 1
        if not _forks:
            _open.set()
        interrupted, _interrupted = _interrupted, False
    if interrupted:
        _thread.interrupt_main()


def _reset() -> None:
    """After a fork, in the child: it has only the forking thread, and no fork waits."""
    global _forks, _lock, _open, _interrupted
    me = threading.get_ident()
    _inside[:] = [ident for ident in _inside if ident == me]  # in place: see ``leave``
    _forks, _interrupted = 0, False
    _lock, _open = threading.Lock(), threading.Event()
    _open.set()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(before=_close, after_in_parent=_reopen, after_in_child=_reset)

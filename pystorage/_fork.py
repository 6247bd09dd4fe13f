"""What a child process does first after ``fork()``.

A counter, the epoch, is bumped in every child: objects holding resources a child
cannot share (file descriptors whose ``flock`` the parent holds, thread pools, sockets)
remember the epoch they were made in and re-create them when it changes: comparing two
ints costs less than ``os.getpid()``, a system call, on every operation.

Locks cannot wait for a check: the child has only the thread that forked, so a lock
another thread held at that instant would stay held forever, and the child's first
write would wait for it. Their owners register with ``renew_in_child``, and the child
renews them before anything else runs there.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
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


def _bump() -> None:
    global _epoch
    _epoch += 1
    for owner, renew in list(_renewals.items()):
        renew(owner)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_bump)

"""A counter bumped in every child process after ``fork()``.

Objects holding resources a child cannot share (locks held by other threads, file
descriptors whose ``flock`` the parent holds, thread pools, sockets) remember the epoch
they were made in and re-create them when it changes: comparing two ints costs less than
``os.getpid()``, a system call, on every operation.
"""

from __future__ import annotations

import os

_epoch = 0


def epoch() -> int:
    """The number of ``fork()`` calls between the first process and this one."""
    return _epoch


def _bump() -> None:
    global _epoch
    _epoch += 1


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_bump)

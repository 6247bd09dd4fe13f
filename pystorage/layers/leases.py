"""Leases: the memoize lock of a persistent backend, held across processes.

A lease is a lock with a token and a deadline, kept by the store itself (a file, a row,
an object, a Redis key), so every process that shares the store sees it. Its holder
gives it back by token: a holder that outlived its lease finds another's token there and
leaves it alone. A holder that dies gives nothing back; its lease lapses at its
deadline, and the next caller's try takes it over.

A backend that keeps leases has two methods (``Leasing``):

* ``take_lease(key, token, seconds)`` tries once, without waiting, and returns the token
  of the holder after the try: ``token`` if it took the lease (free, or lapsed), another
  if someone else holds it, ``""`` if it was freed between two steps of the try.
* ``end_lease(key, token)`` gives the lease back if ``token`` still holds it.

``Lease`` drives them: one waiting rule (``Waiting``) for every backend, run by
``time.sleep`` in ``with`` and by ``asyncio.sleep`` in ``async with``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Protocol

from pystorage import _fork
from pystorage.errors import BackendError, ConfigurationError
from pystorage.layers.base import new_token

#: The default lease: how long a holder may compute before others presume it hung (the
#: ``lock_timeout`` of Redis, the same on every backend).
LOCK_TIMEOUT = 60.0
#: The first pause between two tries, and the longest: a waiter learns of a release at
#: most this late, and each waiter costs the store at most 1/CAP tries a second.
FIRST_PAUSE = 0.002
PAUSE_CAP = 0.05


def checked_lease(value: object) -> float:
    """``value`` if it is a lease length: a finite number of seconds above 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"lock_timeout must be a number of seconds, not {value!r}")
    if not 0 < value < float("inf"):
        raise ConfigurationError(f"lock_timeout must be above 0 and finite, not {value!r}")
    return float(value)


class Leasing(Protocol):
    """A backend that keeps leases (see the module's docstring)."""

    lock_timeout: float

    def take_lease(self, key: str, token: str, seconds: float) -> Any: ...
    def end_lease(self, key: str, token: str) -> Any: ...


def pauses(seconds: float, jitter: Callable[[], float] = random.random) -> Iterator[float]:
    """The pauses between tries while one holder keeps the lease: doubling from
    ``FIRST_PAUSE`` up to ``PAUSE_CAP``, each a random 50-100 % of that (waiters that
    started together drift apart instead of trying in step), ending when ``seconds``
    have passed since the first."""
    end = time.monotonic() + seconds
    step = FIRST_PAUSE
    while (left := end - time.monotonic()) > 0:
        yield min(left, step * (0.5 + jitter() / 2))
        step = min(step * 2, PAUSE_CAP)


class Waiting:
    """The waiting rule of every lease, sync and async: tell it the holder after each
    try; it answers the pause before the next one, or None once the lease is taken.

    A waiter waits for each holder at most one lease, counted from when it first saw
    that holder: by then that holder's lease has lapsed, so the next try takes it over
    (or finds that another waiter did: a new holder, waited for in turn). The same
    holder still there after a whole lease is a store whose clock disagrees with this
    machine's: ``BackendError``.
    """

    def __init__(self, key: str, token: str, seconds: float) -> None:
        self.key, self.token, self.seconds = key, token, seconds
        self._holder: str | None = None
        self._pauses: Iterator[float] = iter(())

    def after(self, holder: str) -> float | None:
        """The pause before the next try, given the ``holder`` the last try found."""
        if holder == self.token:
            return None
        if holder != self._holder or not holder:  # a new holder: a lease of its own
            self._holder, self._pauses = holder, pauses(self.seconds)
        pause = next(self._pauses, None)
        if pause is None:
            raise BackendError(
                f"cannot take the lock of key {self.key!r}: one holder kept it past its "
                f"lease of {self.seconds:g} s (lock_timeout), which the store should have "
                "ended: do its clock and this machine's agree?"
            )
        return pause


class Lease(AbstractContextManager["Lease"], AbstractAsyncContextManager["Lease"]):
    """The lease of one key, taken on entry and given back on exit: ``with`` over a
    sync backend, ``async with`` over one whose ``take_lease`` and ``end_lease`` are
    awaited (an async twin, or a sync backend run off the event loop).

    In ``with``, threads of one process first take a lock of the process for the key
    (waiting for it at most one lease too), so that one of them at a time asks the
    store. A forked child that inherited a held lease does not hold it: leaving it
    there gives nothing back (the parent still holds it).
    """

    def __init__(self, backend: Leasing, key: str) -> None:
        self._backend = backend
        self._key = key
        self._token = ""
        self._epoch = -1
        self._local: threading.Lock | None = None

    def __enter__(self) -> Lease:
        from pystorage.layers.base import key_locks

        seconds = self._backend.lock_timeout
        local = key_locks().borrow(self._key)
        if local.acquire(timeout=seconds):
            self._local = local
        else:  # its holder in this process outlived its lease: the store tells the rest
            key_locks().give_back(self._key, local)
        try:
            token = new_token()
            waiting = Waiting(self._key, token, seconds)
            take = self._backend.take_lease
            while (pause := waiting.after(take(self._key, token, seconds))) is not None:
                time.sleep(pause)
        except BaseException:
            self._leave_locally()
            raise
        self._token, self._epoch = token, _fork.epoch()
        return self

    def __exit__(self, *details: object) -> None:
        try:
            if self._epoch == _fork.epoch():  # else a forked child: the lease is its parent's
                self._backend.end_lease(self._key, self._token)
        finally:
            self._leave_locally()

    def _leave_locally(self) -> None:
        from pystorage.layers.base import key_locks

        local, self._local = self._local, None
        if local is not None:
            local.release()
            key_locks().give_back(self._key, local)

    async def __aenter__(self) -> Lease:
        import asyncio  # here: a sync program never imports it

        seconds = self._backend.lock_timeout
        token = new_token()
        waiting = Waiting(self._key, token, seconds)
        while True:
            taking = asyncio.ensure_future(self._backend.take_lease(self._key, token, seconds))
            try:
                # Shielded: a try that a cancelled task left running may take the lease.
                holder = await asyncio.shield(taking)
            except asyncio.CancelledError:
                taking.add_done_callback(lambda done: self._give_back_if_taken(done, token))
                raise
            if (pause := waiting.after(holder)) is None:
                break
            await asyncio.sleep(pause)
        self._token, self._epoch = token, _fork.epoch()
        return self

    async def __aexit__(self, *details: object) -> None:
        import asyncio

        if self._epoch == _fork.epoch():
            # Shielded: a task cancelled here still gives the lease back.
            await asyncio.shield(self._backend.end_lease(self._key, self._token))

    def _give_back_if_taken(self, taking: Any, token: str) -> None:
        """Give back a lease that the try of a cancelled task took after all."""
        import asyncio

        if not taking.cancelled() and taking.exception() is None and taking.result() == token:
            _GIVING_BACK.add(
                giving := asyncio.ensure_future(self._backend.end_lease(self._key, token))
            )
            giving.add_done_callback(_GIVING_BACK.discard)


#: Releases run for cancelled tasks, kept until done (a task no one holds may vanish).
_GIVING_BACK: set[Any] = set()

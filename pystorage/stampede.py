"""Stampede control for ``memoize``: refresh before expiry, serve stale while one caller
refreshes, serve stale when the function fails.

``Refresh`` holds the options; ``Refresher`` judges a cached record and keeps the claims,
counters and error reports that the sync and the async paths of ``memoize`` share (each
path only does the I/O its kind needs).

A refreshable entry is a record ``[value, fresh_until, compute_seconds]`` written by
``memoize`` alone, under keys of their own (a ``~refresh`` mark in the prefix), so no
plain entry is ever read as a record. The storage keeps it ``ttl`` plus the longest
grace, so a stale value is still there to serve.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

import attrs

from pystorage import _fork
from pystorage.errors import ConfigurationError

_log = logging.getLogger("pystorage.memoize")

#: What ``Refresher.judge`` says of a record: serve it; serve it and recompute now
#: (early, or stale while others are served); or recompute as on a miss, serving the
#: stale value only if the function fails within ``stale_if_error``.
Verdict = Literal["fresh", "early", "stale", "expired", "missing"]


def _seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigurationError(f"{attribute.name} must be seconds >= 0, not {value!r}")
    if math.isinf(value):
        raise ConfigurationError(f"{attribute.name} must be finite, not {value!r}")


def _beta(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 100:
        raise ConfigurationError(f"early must be a factor in [0, 100) (1: XFetch), not {value!r}")


def _callable(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # Checked here: a hook that is not callable failed only when a refresh failed, in the
    # refresh thread (a traceback on stderr) or as a TypeError instead of the stale value.
    if not callable(value) and not (value is None and attribute.name == "on_error"):
        raise ConfigurationError(f"{attribute.name} must be callable, not {value!r}")


@attrs.frozen(kw_only=True)
class Refresh:
    """How ``memoize(ttl, refresh=Refresh(...))`` keeps a hot key from sending every
    caller to the function at once.

    - ``early``: probabilistic early recomputation (XFetch, Vattani, Chierichetti and
      Lowenstein, VLDB 2015): a caller recomputes before expiry with a probability that
      rises as expiry nears, scaled by how long the function took; ``1.0`` is the paper's
      choice, larger refreshes sooner, ``0`` (the default) never.
    - ``stale``: for this many seconds after expiry, callers get the old value at once
      while one caller in this process recomputes (in a background thread or task with
      ``background=True``, else itself).
    - ``stale_if_error``: for this many seconds after expiry, a call whose function
      raises gets the old value instead; the error goes to ``on_error(key, error)`` (a
      warning in the ``pystorage.memoize`` log without one) and is counted in the
      memoized function's ``stats()``, never dropped silently.
    """

    early: float = attrs.field(default=0.0, validator=_beta)
    stale: float = attrs.field(default=0.0, validator=_seconds)
    stale_if_error: float = attrs.field(default=0.0, validator=_seconds)
    background: bool = False
    on_error: Callable[[str, BaseException], None] | None = attrs.field(
        default=None, validator=_callable
    )
    #: The clock of the deadlines in records: the storage's (an ``Expiry``'s) if not
    #: ``time.time``.
    clock: Callable[[], float] = attrs.field(default=time.time, repr=False, validator=_callable)

    @property
    def grace(self) -> float:
        """How long after expiry a record is kept, to be served stale."""
        return max(self.stale, self.stale_if_error)


@attrs.define(eq=False)  # hashable by identity: _fork keeps it in a weak dict
class Refresher:
    """One memoized function's stampede control: judge records, claim refreshes, count."""

    options: Refresh
    ttl: float
    random: Callable[[], float] = random.random
    counts: Counter[str] = attrs.field(factory=Counter)
    _claims: set[str] = attrs.field(factory=set)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        _fork.renew_in_child(self, Refresher._renew)

    def _renew(self) -> None:
        """In a forked child: the claims were held by the parent's threads, which the
        child has not (kept, no caller there would refresh those keys again while stale),
        and one of them may have held the lock at the fork."""
        self._lock = threading.Lock()
        self._claims = set()

    def record(self, value: Any, began: float) -> list[Any]:
        """The record of a value computed from ``began`` (a ``time.perf_counter()``)."""
        computed = time.perf_counter() - began
        return [value, self.options.clock() + self.ttl, computed]

    def judge(self, record: Any) -> tuple[Verdict, Any]:
        """What to do with what was read (the value it holds, where it holds one)."""
        if not (
            isinstance(record, (list, tuple))
            and len(record) == 3
            and isinstance(record[1], (int, float))
            and isinstance(record[2], (int, float))
        ):
            return "missing", None
        value, fresh_until, computed = record
        now = self.options.clock()
        if now < fresh_until:
            beta = self.options.early
            # XFetch: recompute when now - computed * beta * ln(u) passes the expiry.
            if beta and now - computed * beta * math.log(1.0 - self.random()) >= fresh_until:
                return "early", value
            return "fresh", value
        if now < fresh_until + self.options.stale:
            return "stale", value
        if now < fresh_until + self.options.stale_if_error:
            return "expired", value
        return "missing", None

    def past_grace(self, record: Any) -> bool:
        """Whether a record judged servable when a call began is now too old to serve
        (the call took long, or waited for another's): its error is then the caller's."""
        return self.judge(record)[0] == "missing"

    def begin(self, key: str, verdict: Verdict) -> bool:
        """Whether this caller refreshes an ``early`` or ``stale`` key: it claims it (no
        other caller of this process does), and the refresh is counted."""
        if not self.claim(key):
            return False
        self.count("early_refreshes" if verdict == "early" else "stale_served")
        return True

    def serves_instead(
        self, key: str, error: BaseException, record: Any, *, waiting: bool, stale: bool = False
    ) -> bool:
        """After a refresh of ``record`` raised ``error``: whether the caller gets the
        cached value instead (the error reported), or the error, when a ``waiting``
        caller would get a value past its grace. ``stale``: a value past its expiry."""
        if waiting and self.past_grace(record):
            return False
        self.failed(key, error, served_stale=stale)
        return True

    def claim(self, key: str) -> bool:
        """Whether this caller refreshes ``key`` (no other caller of this process is)."""
        with self._lock:
            if key in self._claims:
                return False
            self._claims.add(key)
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._claims.discard(key)

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def failed(self, key: str, error: BaseException, served_stale: bool) -> None:
        """Report a refresh that raised: counted, and told to the hook or the log."""
        self.count("stale_on_error" if served_stale else "refresh_errors")
        hook = self.options.on_error
        if hook is not None:
            hook(key, error)
        else:
            _log.warning(
                "memoize: computing %s raised %r%s",
                key,
                error,
                "; serving the stale value" if served_stale else "",
            )

    def stats(self) -> dict[str, int]:
        """``early_refreshes``, ``stale_served``, ``stale_on_error``, ``refresh_errors``."""
        with self._lock:
            names = ("early_refreshes", "stale_served", "stale_on_error", "refresh_errors")
            return {name: self.counts[name] for name in names}

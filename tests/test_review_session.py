"""Review of the session's new code: each test shows a defect found in review (it failed
before the fix committed with it)."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest

import pystorage.memoize as memoize_module
from pystorage import AsyncStorage, Refresh, Storage
from pystorage.errors import ConfigurationError
from pystorage.layers import Expiry, Memory
from tests.helpers import CHILD_DEADLINE, HUNG, FakeClock, run_in_child

DEADLINE = 60.0


@pytest.mark.parametrize("awaited", [False, True])
def test_stale_if_error_serves_no_value_older_than_its_grace(awaited: bool) -> None:
    """The function failed after the grace had ended (it took long, or waited for the
    key's lock): the value judged servable when the call began was served anyway, older
    than ``stale_if_error`` allows (and already gone from the storage)."""
    clock = FakeClock()
    storage = Storage(Expiry(clock=clock), Memory())
    failing = [False]

    def body() -> int:
        if failing[0]:
            clock.now += 20  # the grace (5 s after expiry) ends while it runs
            raise ConnectionError("upstream down")
        return 7

    refresh = Refresh(stale_if_error=5, clock=clock)
    if awaited:
        astorage = AsyncStorage(storage)

        @astorage.memoize(ttl=10, key="a", refresh=refresh)
        async def arate() -> int:
            return body()

        async def run() -> int:
            return await arate()

        assert asyncio.run(run()) == 7
        failing[0] = True
        clock.now += 12  # expired 2 s ago: within the grace when the call begins
        with pytest.raises(ConnectionError):
            asyncio.run(run())
    else:

        @storage.memoize(ttl=10, key="s", refresh=refresh)
        def rate() -> int:
            return body()

        assert rate() == 7
        failing[0] = True
        clock.now += 12
        with pytest.raises(ConnectionError):
            rate()


def test_a_child_forked_during_a_background_refresh_refreshes_the_key() -> None:
    """The claims are the process's: one held by a parent's refresh thread at the fork
    stayed held in the child, where no thread would release it, so the child never
    refreshed that key while stale."""
    clock = FakeClock()
    storage = Storage(Expiry(clock=clock), Memory())
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    @storage.memoize(ttl=10, key="k", refresh=Refresh(stale=1000, background=True, clock=clock))
    def value() -> int:
        calls.append(1)
        if len(calls) == 2:  # the parent's refresh: held until the fork is done
            started.set()
            release.wait(DEADLINE)
        return len(calls)

    assert value() == 1
    clock.now += 11
    assert value() == 1  # a refresh thread claims the key and blocks
    assert started.wait(DEADLINE)

    def child() -> int:
        value()  # stale: this call claims the key and refreshes in a thread
        give_up = time.monotonic() + CHILD_DEADLINE / 2  # within run_in_child's deadline
        while len(calls) < 3 and time.monotonic() < give_up:
            time.sleep(0.001)
        return len(calls)

    try:
        outcome = run_in_child(child)
    finally:
        release.set()
    assert outcome != HUNG
    assert outcome == 3


@pytest.mark.parametrize("awaited", [False, True])
def test_a_caller_refreshing_a_stale_key_gets_no_value_past_its_grace(awaited: bool) -> None:
    """``stale`` without ``background``: the caller that refreshes got the old value when
    its function raised, even once the function had run past the end of the grace."""
    clock = FakeClock()
    storage = Storage(Expiry(clock=clock), Memory())
    failing = [False]

    def body() -> int:
        if failing[0]:
            clock.now += 20  # the stale grace (5 s after expiry) ends while it runs
            raise ConnectionError("upstream down")
        return 7

    refresh = Refresh(stale=5, clock=clock)
    if awaited:
        astorage = AsyncStorage(storage)

        @astorage.memoize(ttl=10, key="a", refresh=refresh)
        async def arate() -> int:
            return body()

        async def run() -> int:
            return await arate()

        assert asyncio.run(run()) == 7
        failing[0] = True
        clock.now += 12  # expired 2 s ago: stale, and this caller refreshes
        with pytest.raises(ConnectionError):
            asyncio.run(run())
    else:

        @storage.memoize(ttl=10, key="s", refresh=refresh)
        def rate() -> int:
            return body()

        assert rate() == 7
        failing[0] = True
        clock.now += 12
        with pytest.raises(ConnectionError):
            rate()


def test_a_refresh_thread_that_cannot_start_releases_its_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Thread.start`` raising (no thread left, interpreter shutting down) left the key
    claimed for good: no later caller of the process refreshed it while stale."""
    clock = FakeClock()
    storage = Storage(Expiry(clock=clock), Memory())
    calls: list[int] = []

    @storage.memoize(ttl=10, key="k", refresh=Refresh(stale=1000, background=True, clock=clock))
    def value() -> int:
        calls.append(1)
        return len(calls)

    assert value() == 1
    clock.now += 11

    class Unstartable(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    # Only memoize's threads fail: the worker's own threads keep starting meanwhile.
    with monkeypatch.context() as patch:
        patch.setattr(memoize_module, "threading", SimpleNamespace(Thread=Unstartable))
        with pytest.raises(RuntimeError):
            value()
    assert value() == 1  # stale: this caller's thread refreshes
    deadline = time.monotonic() + DEADLINE
    while len(calls) < 2:
        assert time.monotonic() < deadline, "never refreshed"
        time.sleep(0.001)


def test_a_refresh_hook_or_clock_that_cannot_be_called_is_refused_at_once() -> None:
    """``on_error="log"`` was accepted, and failed only when a function first raised: a
    ``TypeError`` (no ``pystorage.errors`` error) instead of the stale value, or a traceback
    from the refresh thread."""
    with pytest.raises(ConfigurationError, match="on_error must be callable"):
        Refresh(stale_if_error=5, on_error="log")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="clock must be callable"):
        Refresh(stale=5, clock=None)  # type: ignore[arg-type]
    assert Refresh(on_error=None).on_error is None

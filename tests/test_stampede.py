"""Stampede control in memoize: early recomputation (XFetch), stale-while-revalidate and
stale-if-error, sync and async, with many callers on one key."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pystorage import AsyncStorage, Refresh, Storage
from pystorage.errors import ConfigurationError
from pystorage.layers import Codec, Expiry, Files, Memory
from pystorage.stampede import Refresher
from tests.helpers import FakeClock

DEADLINE = 60.0


def _stack(clock: FakeClock, tmp_path: Path | None = None) -> Storage:
    below: Any = Memory() if tmp_path is None else Files(tmp_path)
    codec = [] if tmp_path is None else [Codec("json")]
    return Storage(Expiry(clock=clock), *codec, below)


def _wait_for(condition: Any) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "not reached before the deadline"
        time.sleep(0.001)


def test_xfetch_recomputes_early_more_often_as_expiry_nears() -> None:
    clock = FakeClock(0.0)
    refresher = Refresher(Refresh(early=1.0, clock=clock), ttl=100.0, random=lambda: 0.9)
    record = [7, 100.0, 2.0]  # fresh until 100, took 2 s: -2 ln(0.1) = 4.6 s ahead
    clock.now = 90.0
    assert refresher.judge(record) == ("fresh", 7)
    clock.now = 96.0
    assert refresher.judge(record) == ("early", 7)
    off = Refresher(Refresh(clock=clock), ttl=100.0, random=lambda: 0.9999)
    assert off.judge(record) == ("fresh", 7)  # early=0: never
    clock.now = 100.0
    assert off.judge(record) == ("missing", None)  # no grace: gone at its deadline
    assert off.judge("not a record") == ("missing", None)


def test_a_hot_key_is_recomputed_before_it_expires(tmp_path: Path) -> None:
    clock = FakeClock()
    storage = _stack(clock, tmp_path)
    calls: list[int] = []

    @storage.memoize(ttl=60, key="report", refresh=Refresh(early=1.0, clock=clock))
    def report(n: int) -> int:
        calls.append(n)
        time.sleep(0.05)  # what it costs to compute: XFetch scales by it
        return len(calls)

    assert report(1) == 1
    clock.now += 59.99  # 10 ms before expiry, 50 ms to compute: nearly every call refreshes
    answers = {report(1) for _ in range(30)}
    assert len(calls) >= 2 and max(answers) >= 2  # recomputed, and before expiry
    assert report.stats()["early_refreshes"] == len(calls) - 1


@pytest.mark.parametrize("background", [False, True])
def test_after_expiry_callers_get_the_stale_value_while_one_recomputes(
    background: bool,
) -> None:
    clock = FakeClock()
    storage = _stack(clock)
    release = threading.Event()
    calls: list[str] = []

    @storage.memoize(
        ttl=10, key="page", refresh=Refresh(stale=30, background=background, clock=clock)
    )
    def page(name: str) -> str:
        calls.append(name)
        if len(calls) > 1:
            assert release.wait(DEADLINE)
        return f"{name} v{len(calls)}"

    assert page("home") == "home v1"
    clock.now += 11  # expired, within the stale grace
    answers: list[str] = []
    callers = [threading.Thread(target=lambda: answers.append(page("home"))) for _ in range(16)]
    for caller in callers:
        caller.start()
    # Every caller but the one recomputing (none in the background case) answers at once.
    _wait_for(lambda: len(answers) >= (16 if background else 15))
    assert answers.count("home v1") == len(answers)
    release.set()
    for caller in callers:
        caller.join(DEADLINE)
    assert len(calls) == 2  # one computation for the expiry, not 16
    _wait_for(lambda: page("home") == "home v2")
    assert page.stats()["stale_served"] == 1


def test_a_failing_function_is_answered_with_the_stale_value_and_reported() -> None:
    clock = FakeClock()
    storage = _stack(clock)
    reported: list[tuple[str, BaseException]] = []
    failing = [False]

    def hook(key: str, error: BaseException) -> None:
        reported.append((key, error))

    @storage.memoize(ttl=10, refresh=Refresh(stale_if_error=100, on_error=hook, clock=clock))
    def rate(currency: str) -> float:
        if failing[0]:
            raise ConnectionError("upstream down")
        return 1.25

    assert rate("EUR") == 1.25
    failing[0] = True
    clock.now += 50  # expired 40 s ago: within stale_if_error
    assert rate("EUR") == 1.25
    assert [(key, str(error)) for key, error in reported] == [
        (rate.cache_key("EUR"), "upstream down")
    ]
    assert rate.stats()["stale_on_error"] == 1
    clock.now += 100  # past the grace: the error is the caller's
    with pytest.raises(ConnectionError, match="upstream down"):
        rate("EUR")
    failing[0] = False
    assert rate("EUR") == 1.25


def test_without_a_hook_an_error_served_stale_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    storage = _stack(clock)
    results: list[Any] = [1]

    @storage.memoize(ttl=10, key="value", refresh=Refresh(stale_if_error=100, clock=clock))
    def value() -> Any:
        if isinstance(results[-1], Exception):
            raise results[-1]
        return results[-1]

    assert value() == 1
    results.append(ValueError("bad"))
    clock.now += 20
    with caplog.at_level("WARNING", logger="pystorage.memoize"):
        assert value() == 1
    assert "ValueError('bad'); serving the stale value" in caplog.text


def test_async_callers_get_the_stale_value_while_one_task_recomputes() -> None:
    clock = FakeClock()
    storage = AsyncStorage(Expiry(clock=clock), Memory())
    calls: list[int] = []

    async def main() -> None:
        release = asyncio.Event()

        @storage.memoize(
            ttl=10, key="feed", refresh=Refresh(stale=30, background=True, clock=clock)
        )
        async def feed(n: int) -> int:
            calls.append(n)
            if len(calls) > 1:
                await release.wait()
            return len(calls)

        assert await feed(1) == 1
        clock.now += 11
        answers = await asyncio.wait_for(asyncio.gather(*(feed(1) for _ in range(50))), DEADLINE)
        assert answers == [1] * 50  # at once, while one task recomputes
        release.set()

        async def refreshed() -> None:
            while await feed(1) != 2:
                await asyncio.sleep(0)

        await asyncio.wait_for(refreshed(), DEADLINE)
        assert len(calls) == 2
        assert feed.stats()["stale_served"] == 1

    asyncio.run(main())


def test_refresh_options_are_checked_and_need_a_ttl() -> None:
    storage = Storage(Expiry(), Memory())
    with pytest.raises(ConfigurationError, match="give one"):
        storage.memoize(refresh=Refresh(stale=5))
    with pytest.raises(ConfigurationError, match="stale must be seconds >= 0"):
        Refresh(stale=-1)
    with pytest.raises(ConfigurationError, match="early must be a factor"):
        Refresh(early=-0.5)
    with pytest.raises(ConfigurationError, match="must be finite"):
        Refresh(stale_if_error=float("inf"))


def test_records_and_plain_entries_never_share_a_key() -> None:
    storage = Storage(Expiry(), Memory())

    def twice(x: int) -> int:
        return 2 * x

    plain = storage.memoize(ttl=10, key="twice")(twice)
    refreshed = storage.memoize(ttl=10, key="twice", refresh=Refresh(stale=5))(twice)
    assert plain(2) == refreshed(2) == 4
    assert plain.cache_key(2) != refreshed.cache_key(2)
    assert storage[plain.cache_key(2)] == 4  # the plain entry is the value itself
    assert storage[refreshed.cache_key(2)][0] == 4  # the record: value, deadline, cost
    refreshed.cache_clear()
    assert plain.cache_key(2) in storage and refreshed.cache_key(2) not in storage


def test_a_background_refresh_cancelled_before_it_runs_releases_its_claim() -> None:
    clock = FakeClock()
    storage = AsyncStorage(Expiry(clock=clock), Memory())
    calls: list[int] = []

    async def main() -> None:
        @storage.memoize(
            ttl=10, key="cancelled", refresh=Refresh(stale=30, background=True, clock=clock)
        )
        async def value() -> int:
            calls.append(1)
            return len(calls)

        assert await value() == 1
        clock.now += 11
        before = set(asyncio.all_tasks())
        assert await value() == 1  # stale, a refresh task made
        (task,) = set(asyncio.all_tasks()) - before
        task.cancel()  # before its first step
        await asyncio.gather(task, return_exceptions=True)
        assert len(calls) == 1
        assert await value() == 1  # stale again: a new refresh may begin...
        await asyncio.wait_for(_refreshed(value), DEADLINE)  # ...and does

    async def _refreshed(value: Any) -> None:
        while await value() != 2:
            await asyncio.sleep(0)

    asyncio.run(main())

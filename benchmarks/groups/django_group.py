"""Group: pystorage.contrib.django against the Django cache backends one would use instead.

Every subject is a Django cache backend object called through Django's API (so each pays
the key function and validation alike), with 100-byte values and Django's default
timeout: ``PyStorageCache`` over SQLite against diskcache's ``DjangoCache`` (SQLite
too) and Django's own ``FileBasedCache``; over Redis against Django's ``RedisCache``, on
one throwaway redis-server. ``incr`` is atomic on every PyStorage stack; on
``FileBasedCache`` it is Django's get-then-set, which is not.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable
from typing import Any

from benchmarks.harness import Samples, Subject, compare, fixed
from benchmarks.model import GroupResult, Settings, Target, row
from pystorage.testing import RedisServer

LOCAL = Target(1.0)
REDIS = Target(1.10)
VALUE = b"v" * 100


def run(settings: Settings, result: GroupResult) -> None:
    try:
        from diskcache import DjangoCache
        from django.core.cache.backends.filebased import FileBasedCache
        from django.core.cache.backends.redis import RedisCache

        from pystorage.contrib.django import PyStorageCache
    except ImportError as exc:
        result.skipped = f"needs django and diskcache: {exc}"
        return
    ops = settings.pick(300, 20)
    rounds = settings.pick(15, 3)
    keys = [f"key:{i}" for i in range(settings.pick(1_000, 100))]
    picks = (keys * (ops // len(keys) + 1))[:ops]
    folder = tempfile.mkdtemp(prefix="pystorage-bench-django-", dir=settings.scratch)
    local = {
        "PyStorage SQLite": PyStorageCache(f"sqlite://{folder}/pystorage.db", {}),
        "diskcache DjangoCache": DjangoCache(f"{folder}/diskcache", {}),
        # Its default MAX_ENTRIES (300) would cull the keys of the run while it is timed.
        "Django FileBasedCache": FileBasedCache(
            f"{folder}/filebased", {"OPTIONS": {"MAX_ENTRIES": 100_000}}
        ),
    }
    # A tenth of the operations for FileBasedCache, whose writes take milliseconds (a
    # time per operation either way).
    timed = _timed(local, keys, picks, rounds, slow="Django FileBasedCache")
    mine = "PyStorage SQLite"
    for anchor in ("diskcache DjangoCache", "Django FileBasedCache"):
        for operation in ("get", "set", "incr"):
            result.rows.append(
                row(
                    f"{operation} (SQLite)",
                    timed[mine, operation],
                    anchor,
                    timed[anchor, operation],
                    LOCAL if anchor.startswith("diskcache") and operation != "incr" else None,
                )
            )
    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        result.notes.append(f"Redis rows skipped: cannot start redis-server: {exc}")
        return
    try:
        remote = {
            "PyStorage Redis": PyStorageCache(f"{server.url}?prefix=bench:", {}),
            "Django RedisCache": RedisCache(server.url, {}),
        }
        timed = _timed(remote, keys, picks, rounds)
    finally:
        server.stop()
    for operation in ("get", "set", "incr"):
        result.rows.append(
            row(
                f"{operation} (Redis)",
                timed["PyStorage Redis", operation],
                "Django RedisCache",
                timed["Django RedisCache", operation],
                REDIS if operation != "incr" else None,
            )
        )
    result.notes.append(
        f"{ops} operations per round, {rounds} rounds, 100-byte values, {len(keys)} keys. "
        "incr: PyStorage runs an atomic read-modify-write (Redis: WATCH/MULTI, as the "
        "stored bytes are pickles), RedisCache a native INCRBY on its integer encoding."
    )


def _timed(
    caches: dict[str, Any], keys: list[str], picks: list[str], rounds: int, slow: str = ""
) -> dict[tuple[str, str], Samples]:
    """get (hits), set and incr of each cache, timed in the same interleaved rounds."""
    subjects: dict[str, Subject] = {}
    for name, cache in caches.items():
        ops = len(picks) // 10 if name == slow else len(picks)
        cache.set_many(dict.fromkeys(keys, VALUE))
        cache.set("counter", 0, timeout=None)
        subjects[f"{name}|get"] = fixed(_each(cache.get, picks[:ops]), ops)
        subjects[f"{name}|set"] = fixed(_each(cache.set, picks[:ops], [VALUE] * ops), ops)
        subjects[f"{name}|incr"] = fixed(_each(cache.incr, ["counter"] * ops), ops)
    timed = compare(subjects, rounds)
    for cache in caches.values():
        cache.clear()
        cache.close()
    return {tuple(name.split("|")): samples for name, samples in timed.items()}  # type: ignore[misc]


def _each(call: Callable[..., Any], *arguments: list[Any]) -> Callable[[], None]:
    def thunk() -> None:
        deque(map(call, *arguments), 0)

    return thunk

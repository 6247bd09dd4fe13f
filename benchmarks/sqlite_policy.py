"""Hit ratios of SQLite's eviction="tinylfu" (kept in SQL) beside the memory TinyLFU, on
the traces of the hit-ratio group, and what a restart costs it.

    python -m benchmarks.sqlite_policy [TRACE ...]       (names or parts: web07, zipf)

Each cache replays the trace as hit_ratio.py does (a read; on a miss, a write of the key).
The restart rows replay the SQL policy again, closing and opening the database three
times on the way, once as it is (its counters are in the file) and once after wiping
what it learned (counters back to one use, the sketch emptied): the second is what a
policy kept in memory would lose. Not a ``make bench`` group: a pure-Python replay of
every trace through SQLite takes a quarter of an hour.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from itertools import count
from pathlib import Path

from benchmarks.groups import hit_ratio
from benchmarks.model import Settings
from pystorage import Storage
from pystorage.layers import Codec, SQLite, TinyLFU

_NAMES = count()


def replay_sql(
    folder: Path, trace: list[str], size: int, restarts: int = 0, forget: bool = False
) -> float:
    """The hit ratio (%) of the SQL policy, opened again ``restarts`` times on the way."""
    path = folder / f"{next(_NAMES)}.db"

    def opened() -> Storage:
        db = SQLite(path, synchronous="OFF")  # the policy is the same; the replay is faster
        db.take_bound("entries", size, "tinylfu")
        return Storage(Codec("pickle"), db)

    cache, hits = opened(), 0
    every = len(trace) // (restarts + 1)
    for index, key in enumerate(trace):
        if restarts and index and index % every == 0:
            cache.close()
            if forget:
                with sqlite3.connect(path) as db:
                    db.execute("UPDATE frequencies SET count = 1")
                    db.execute("DELETE FROM sketch")
            cache = opened()
        if cache.get(key) is None:
            cache[key] = 1
        else:
            hits += 1
    cache.close()
    return 100 * hits / len(trace)


def main(argv: Sequence[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="pystorage-sqlite-policy-") as root:
        folder = Path(root)
        for name, trace, sizes in hit_ratio._traces(Settings()):
            if argv and not any(part in name for part in argv):
                continue
            for size in sizes:
                memory = hit_ratio._mapping(lambda size: Storage(TinyLFU(size)))(trace, size)
                sql = replay_sql(folder, trace, size)
                kept = replay_sql(folder, trace, size, restarts=3)
                lost = replay_sql(folder, trace, size, restarts=3, forget=True)
                print(
                    f"{name} @ {size:,}: memory TinyLFU {memory:.1f}, SQL {sql:.1f} "
                    f"({sql - memory:+.1f}); 3 restarts {kept:.1f} ({kept - sql:+.1f}), "
                    f"wiping what it learned {lost:.1f} ({lost - sql:+.1f})",
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1:])

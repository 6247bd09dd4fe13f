"""Group 9: what opening each local stack costs at 1,000 and 100,000 entries.

Issue 11 asks for the open cost of every local stack, in a new process, reported (no
target): the stacks whose bound or expiry keeps an index in memory build it from a
listing when they open, and pay for their size there; STORAGE_SQLITE keeps its totals in
the database and diskcache.Cache its size in its settings table. How an open is timed:
:mod:`benchmarks.opening`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.harness import Samples
from benchmarks.model import GroupResult, Row, Settings, median_row
from benchmarks.opening import BUILDERS, STACKS, Open, fastest_ratio, time_opens

ANCHOR = "diskcache"


def run(settings: Settings, result: GroupResult) -> None:
    small, large = settings.pick((1_000, 100_000), (20, 200))
    rounds = settings.pick(5, 1)
    with tempfile.TemporaryDirectory(dir=settings.scratch, prefix="pystorage-bench-open-") as root:
        places: dict[tuple[str, int], Path] = {}
        for kind in ("files", "sqlite", "diskcache"):
            for size in (small, large):
                places[kind, size] = Path(root) / f"{kind}-{size}"
                if kind == "sqlite":
                    places[kind, size] = places[kind, size].with_suffix(".db")
                BUILDERS[kind](places[kind, size], size)
        opens = {
            f"{name} {size}": Open(name, places[stack.kind, size], size)
            for name, stack in STACKS.items()
            for size in (small, large)
        }
        timed = time_opens(opens, rounds)
    result.rows += _rows(timed, small, large)
    result.notes.append(
        f"Each open is a new process: the child imports PyStorage and diskcache first "
        "(untimed), then times the stack's constructor and one get of an existing key, "
        f"nothing subtracted; {rounds} opens per stack and size, interleaved, medians; a "
        "ratio is a ratio of medians. Every entry: a dict of about 100 B, pickled, with a "
        "30-day TTL. The four Files stacks open the same folder (each file holds a deadline "
        "header, as STORAGE_VOLATILE writes it); their bounds, like the SQLite stack's "
        "limit and max_bytes, are what the entries fill, so no open evicts."
    )


def _rows(timed: dict[str, Samples], small: int, large: int) -> list[Row]:
    rows = [
        median_row(
            f"open {stack.label}, {large:,} entries",
            timed[f"{name} {large}"],
            f"the same, {small:,} entries",
            timed[f"{name} {small}"],
            note=fastest_ratio(timed[f"{name} {large}"], timed[f"{name} {small}"]),
        )
        for name, stack in STACKS.items()
    ]
    anchor = STACKS[ANCHOR].label
    for name, stack in STACKS.items():
        if name != ANCHOR:
            rows += [
                median_row(
                    f"open {stack.label}, {size:,} entries",
                    timed[f"{name} {size}"],
                    f"{anchor}, {size:,} entries",
                    timed[f"{ANCHOR} {size}"],
                    note=fastest_ratio(timed[f"{name} {size}"], timed[f"{ANCHOR} {size}"]),
                )
                for size in (small, large)
            ]
    return rows

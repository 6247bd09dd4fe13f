"""Group 12: cold start, what a new process pays before its first answer (issue 20).

Short-lived programs pay it on every run: command-line tools, serverless functions,
``multiprocessing`` spawn workers, every ``pystorage`` command. Each sample is a fresh
``python`` process, the subjects interleaved round by round (their order rotated), the
first round untimed: it writes the bytecode caches (``.pyc``) that an installed package
has, and the children run without ``PYTHONDONTWRITEBYTECODE`` so that they use them.

- An import, and an import + open + first get, are timed inside the child, from just
  before the ``import`` statement: the interpreter's own start is not in them, as in
  ``python -X importtime``.
- A command is timed whole, from the parent, against the interpreter doing nothing
  (``python -c pass``).

The times are CPU times (user + system: ``process_time_ns`` in the child, the child's
``rusage`` for a whole process). Starting Python and importing are CPU work on files the
OS holds in memory, and this machine's 2 CPUs are shared: wall times of one process
measured mostly the other jobs (``python -c pass`` took 25 to 120 ms in one hour). Wall
times are reported beside them, in the notes.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from benchmarks.harness import Samples
from benchmarks.model import GroupResult, Row, Settings, Target, median_row
from benchmarks.opening import EXPIRATION, VALUE_BYTES, build_diskcache, build_sqlite, key

IMPORT = Target(1.5)
OPEN = Target(1.5)
COMMAND = Target(2.0)
ENTRIES = 1_000
ROOT = Path(__file__).resolve().parents[2]

# The child's code: its last line is the CPU and wall nanoseconds it measured.
_TIMED = """\
import time
_cpu, _wall = time.process_time_ns(), time.perf_counter_ns()
{}
print(time.process_time_ns() - _cpu, time.perf_counter_ns() - _wall)"""
_OPEN_PYSTORAGE = """\
import pystorage
storage = pystorage.StorageProvider().create(
    pystorage.StorageProvider.STORAGE_SQLITE,
    path={path!r}, limit={entries}, max_bytes={max_bytes}, expiration={expiration!r},
)
assert storage.get({key!r}) is not None"""
# opening.open_diskcache's bound: room for the database file, so that an open never culls.
_OPEN_DISKCACHE = """\
import diskcache
cache = diskcache.Cache({path!r}, size_limit={size_limit})
assert cache.get({key!r}) is not None"""


def run(settings: Settings, result: GroupResult) -> None:
    rounds = settings.pick(21, 3)
    with tempfile.TemporaryDirectory(dir=settings.scratch, prefix="pystorage-bench-cold-") as root:
        database, folder = Path(root) / "cache.db", Path(root) / "diskcache"
        build_sqlite(database, ENTRIES)
        build_diskcache(folder, ENTRIES)
        wanted = key(ENTRIES // 2)
        inside = {
            "import pystorage": _timed("import pystorage"),
            "import diskcache": _timed("import diskcache"),
            "import cachetools": _timed("import cachetools"),
            "import attrs": _timed("import attrs"),
            "open pystorage": _timed(
                _OPEN_PYSTORAGE.format(
                    path=str(database),
                    entries=ENTRIES,
                    max_bytes=ENTRIES * VALUE_BYTES,
                    expiration=EXPIRATION,
                    key=wanted,
                )
            ),
            "open diskcache": _timed(
                _OPEN_DISKCACHE.format(
                    path=str(folder),
                    size_limit=max(ENTRIES * VALUE_BYTES * 4, 1 << 20),
                    key=wanted,
                )
            ),
        }
        url = f"sqlite://{database}?codec=pickle"
        whole = {
            "pystorage get": [*_command(), "get", url, wanted],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        timed, wall = time_processes(inside, whole, rounds)
    result.rows += _rows(timed)
    result.notes.append(
        "Wall-time ratios of the same runs: "
        + "; ".join(
            f"{row.operation} vs {row.anchor}: {row.ratio:.2f} ({row.pystorage_ns / 1e6:.1f} ms)"
            for row in _rows(wall)
        )
        + "."
    )
    result.notes.append(
        f"Each sample is a new process; {rounds} per subject, interleaved, after one untimed "
        "round that writes the bytecode caches; medians of CPU time (user + system), and a "
        "ratio is a ratio of medians. "
        "Imports and opens are timed inside the child from just before the import (the "
        "interpreter's start excluded); a command is timed whole, process start to exit, "
        f"against `python -c pass`. The stores hold {ENTRIES:,} entries of about 100 B "
        "(pickled, a 30-day TTL), the SQLite one opened with the count and byte limits and "
        f"the TTL it was filled with, diskcache.Cache with a size_limit; {_runner()} runs the "
        "command. `make` installs PyStorage in editable mode: its finder is imported at "
        "every start (`python -c pass` included) and loads `pathlib`, `re` and "
        "`importlib.util` before any subject runs."
    )


def _timed(code: str) -> list[str]:
    return [sys.executable, "-c", _TIMED.format(code)]


def _command() -> list[str]:
    """The ``pystorage`` console script beside this interpreter, else ``-m pystorage``."""
    script = Path(sys.executable).with_name("pystorage")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pystorage"]


def _runner() -> str:
    return "`python -m pystorage`" if _command()[-1] == "pystorage" else "the console script"


def time_processes(
    inside: Mapping[str, Sequence[str]], whole: Mapping[str, Sequence[str]], rounds: int
) -> tuple[dict[str, Samples], dict[str, Samples]]:
    """CPU and wall nanoseconds of each subject, one new process per sample: for
    ``inside`` what the child printed last, for ``whole`` the process from start to exit."""
    commands = {**inside, **whole}
    names = list(commands)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    # Bytecode caches written and read, as an installed package has them.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    for index in range(1 + rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            before, start = _children_cpu(), time.perf_counter_ns()
            done = subprocess.run(
                commands[name], cwd=ROOT, env=env, capture_output=True, text=True, check=True
            )
            elapsed, used = time.perf_counter_ns() - start, _children_cpu() - before
            if index == 0:
                continue
            if name in inside:
                used, elapsed = (int(part) for part in done.stdout.split()[-2:])
            cpu[name].append(float(used))
            wall[name].append(float(elapsed))
    return (
        {name: Samples(tuple(values)) for name, values in cpu.items()},
        {name: Samples(tuple(values)) for name, values in wall.items()},
    )


def _children_cpu() -> int:
    """User + system nanoseconds of every child this process has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round((usage.ru_utime + usage.ru_stime) * 1e9)


def _rows(timed: dict[str, Samples]) -> list[Row]:
    return [
        median_row(
            "import pystorage",
            timed["import pystorage"],
            "import diskcache",
            timed["import diskcache"],
            IMPORT,
        ),
        median_row(
            "import pystorage",
            timed["import pystorage"],
            "import cachetools",
            timed["import cachetools"],
        ),
        median_row(
            "import attrs (PyStorage's one dependency)",
            timed["import attrs"],
            "import diskcache",
            timed["import diskcache"],
        ),
        median_row(
            "import + open STORAGE_SQLITE with limits + first get",
            timed["open pystorage"],
            "the same with diskcache.Cache(size_limit=)",
            timed["open diskcache"],
            OPEN,
        ),
        median_row(
            "`pystorage get` on that SQLite store, whole process",
            timed["pystorage get"],
            "`python -c pass`",
            timed["python -c pass"],
            COMMAND,
        ),
    ]

"""Small things several test modules need."""

from __future__ import annotations

import os
import pickle
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pystorage import Storage, StorageProvider

T = TypeVar("T")


def unique(prefix: str) -> str:
    """A name no other test (or example) uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def quick_and_long(quick: int, long: int) -> pytest.MarkDecorator:
    """Parametrize ``scale``: ``quick`` for ``make test``, and ``long`` (marked ``long``)
    for ``make test-long``, which CI runs too. The same test at two sizes: every push runs
    it, and the long run is there to catch what is rare."""
    return pytest.mark.parametrize(
        "scale",
        [pytest.param(quick, id="quick"), pytest.param(long, id="long", marks=pytest.mark.long)],
    )


class FakeClock:
    """Seconds since the epoch that only move when a test says so."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class DiskStack:
    """A file preset, with the suffix that tells its entry files in the folder."""

    preset: str
    suffix: str
    limit: int = 0  # 0: no limit
    eviction: str = "used"

    def open(self, folder: Path) -> Storage:
        options: dict[str, Any] = {"path": folder}
        if self.limit:
            options["limit"] = self.limit
        if self.eviction != "used":
            options["eviction"] = self.eviction
        storage: Storage = StorageProvider().create(self.preset, **options)
        return storage


def in_child(
    function: Callable[[], Any], *, user: int | None = None, max_file_size: int | None = None
) -> Any:
    """Run ``function`` in a forked child, as ``user`` or with ``RLIMIT_FSIZE``; what it
    returned, or the exception it raised (returned, not raised)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and never return into pytest
        try:
            os.close(reader)
            if max_file_size is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a kill
                hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
                resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, hard))
            if user is not None:
                os.setgid(user)
                os.setuid(user)
            try:
                outcome: Any = function()
            except BaseException as exc:  # reported to the parent
                outcome = exc
            try:
                data = pickle.dumps(outcome)
            except Exception:  # unpicklable
                data = pickle.dumps(RuntimeError(f"{type(outcome).__name__}: {outcome}"))
            with os.fdopen(writer, "wb") as stream:
                stream.write(data)
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as stream:
        data = stream.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)


#: How long a forked child may take to do a few operations on a loaded 2-core machine.
CHILD_DEADLINE = 20.0
#: What ``run_in_child`` returns for a child that did not finish in time.
HUNG = "hung"


def run_in_child(work: Callable[[], Any], deadline: float = CHILD_DEADLINE) -> Any:
    """``work()``'s result computed in a forked child (an exception it raised is
    returned), or ``HUNG`` if it did not finish within ``deadline`` seconds."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        try:
            os.close(reader)
            try:
                outcome: Any = work()
            except BaseException as exc:
                outcome = exc
            try:
                data = pickle.dumps(outcome)
            except Exception:
                data = pickle.dumps(RuntimeError(repr(outcome)))
            with os.fdopen(writer, "wb") as stream:
                stream.write(data)
        finally:
            os._exit(0)
    os.close(writer)
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            with os.fdopen(reader, "rb") as stream:
                return pickle.loads(stream.read())
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    os.close(reader)
    return HUNG


NOBODY = 65534


def other_user() -> int | None:
    """The user for a test of permissions: ``nobody`` when the tests run as root (root
    reads and writes every folder), else None (the current user)."""
    return NOBODY if os.geteuid() == 0 else None


@contextmanager
def shared_folder() -> Iterator[Path]:
    """A folder that ``other_user()`` can traverse (pytest's own are private to root)."""
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        folder.chmod(0o755)
        yield folder
    finally:
        shutil.rmtree(folder)


def hit_ratio(cache: Any, trace: list[str]) -> float:
    """The share of ``trace`` that hit, replayed as an application uses a cache: a read,
    and on a miss a write of the key."""
    hits = 0
    for key in trace:
        if cache.get(key) is not None:
            hits += 1
        else:
            cache[key] = key
    return hits / len(trace)


def sample_while_children_write(
    script: str,
    argvs: list[list[str]],
    database: Path,
    sample: Callable[[sqlite3.Connection], T],
    deadline: float = 120,
) -> list[T]:
    """Run ``script`` in a child per argument list, all writing at once, and ``sample``
    the SQLite ``database`` from outside until every child has exited (each with 0),
    once more after the last. The script prints ``ready`` when it has opened its storage
    and waits for a line on stdin before writing."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    try:
        for child in children:  # every writer has opened the database: they write at once
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.close()
        samples = []
        with closing(sqlite3.connect(database, timeout=30, isolation_level=None)) as db:
            ends = time.monotonic() + deadline
            while any(child.poll() is None for child in children) and time.monotonic() < ends:
                samples.append(sample(db))
                time.sleep(0.001)  # not a wait for a state: it leaves the writers the cores
            for child in children:
                assert child.wait(timeout=max(1.0, ends - time.monotonic())) == 0
            samples.append(sample(db))
    finally:
        for child in children:
            if child.poll() is None:  # a check failed: stop the writers left
                child.kill()
                child.wait()
    return samples

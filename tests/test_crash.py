"""Crash safety of Files: writers SIGKILLed at random moments never leave a torn entry.

Each stack gets one folder and a chain of writer processes. A writer overwrites a few keys
with large self-describing values in a loop until the test kills it after a random delay;
the next writer is already started (and has paid for its interpreter start-up) while the
current one runs, so a kill costs little more than the delay. After every kill the folder
is checked: only the expected keys, every value one complete value written for its key,
the killed writer's temporary files gone once a storage opens the folder, and for
STORAGE_DISKLRU an index that agrees with the folder.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import random
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage, StorageProvider
from tests.helpers import DiskStack, quick_and_long

MIN_SIZE = 200_000
MAX_SIZE = 2_000_000
POOL_SEED = 20_240_601
POOL_SIZE = 5 * 512 * 1024  # 2.5 MiB: room for the largest blob
POOL = random.Random(POOL_SEED).randbytes(POOL_SIZE)
#: A writer's values are numbered from generation * GENERATION: a value names its writer.
GENERATION = 1_000_000
#: The largest set_many a writer makes: a kill mid-eviction leaves at most this many extra.
MAX_BATCH = 2
KILLS_PER_STACK = 70  # 210 kills in all (make test-long); make test kills 10 per stack
DELAY = (0.002, 0.045)  # seconds from a writer's "ready" (storage open) to its SIGKILL
READY_TIMEOUT = 30.0


def blob_for(key: str, n: int) -> bytes:
    """The payload of value ``n`` of ``key``: 200 KB to 2 MB, a function of both."""
    rng = random.Random(f"{key}:{n}")
    size = rng.randrange(MIN_SIZE, MAX_SIZE)
    start = rng.randrange(POOL_SIZE - size)
    return f"{key}:{n}:".encode() + POOL[start : start + size]


def value_for(key: str, n: int) -> dict[str, Any]:
    blob = blob_for(key, n)
    return {"key": key, "n": n, "blob": blob, "sha256": hashlib.sha256(blob).hexdigest()}


# The writer: the helpers above, verbatim, and a loop that ends only with SIGKILL.
WRITER = (
    "import hashlib, random, sys\n"
    "from typing import Any\n"
    "from pystorage import StorageProvider\n"
    f"MIN_SIZE, MAX_SIZE, POOL_SIZE = {MIN_SIZE}, {MAX_SIZE}, {POOL_SIZE}\n"
    f"POOL = random.Random({POOL_SEED}).randbytes(POOL_SIZE)\n"
    + inspect.getsource(blob_for)
    + inspect.getsource(value_for)
    + textwrap.dedent(
        f"""
        preset, folder, keys, limit, generation = sys.argv[1:6]
        keys = keys.split(",")
        sys.stdin.readline()  # "go": the parent is ready to time the kill
        options = {{"path": folder}}
        if int(limit):
            options["limit"] = int(limit)
        storage = StorageProvider().create(preset, **options)
        rng = random.Random(generation)
        n = int(generation) * {GENERATION}
        print("ready", flush=True)
        while True:
            n += 1
            draw = rng.random()
            if draw < 0.2:
                first, second = rng.sample(keys, {MAX_BATCH})
                storage.set_many({{first: value_for(first, n), second: value_for(second, n + 1)}})
                n += 1
            elif draw < 0.3 and int(limit):
                try:
                    storage[rng.choice(keys)]  # a read reorders the LRU index and the files
                except KeyError:
                    pass
            else:
                key = rng.choice(keys)
                storage[key] = value_for(key, n)
        """
    )
)


@dataclass(frozen=True)
class Stack(DiskStack):
    keys: tuple[str, ...] = ()


STACKS = {
    "pickle": Stack(StorageProvider.STORAGE_PICKLE, "storage.pkl", keys=("a", "b", "c", "d")),
    "pickle-gzip": Stack(
        StorageProvider.STORAGE_PICKLE_GZIP, "storage.pkl.gz", keys=("a", "b", "c", "d")
    ),
    # Fewer slots than keys: nearly every write evicts, so kills also land mid-eviction.
    "disklru": Stack(StorageProvider.STORAGE_DISKLRU, "storage.lru", limit=3, keys=tuple("abcdef")),
}


def temp_files(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith(".tmp-")]


def entry_keys(folder: Path, suffix: str) -> set[str]:
    """The keys of the entry files in ``folder``: files with the suffix, no dotfiles."""
    ending = "." + suffix
    return {
        name[: -len(ending)]
        for name in os.listdir(folder)
        if name.endswith(ending) and not name.startswith(".")
    }


class OverLimit(AssertionError):
    """DISKLRU's count went past its limit: the one failure the known bug below causes."""


def check_bound(what: str, count: int, bound: int) -> None:
    if count > bound:
        raise OverLimit(f"{what}: {count} > {bound}")


def keys_of(storage: Storage) -> list[str]:
    """The keys, sorted, from iteration alone: ``sorted(storage)`` also calls ``len()`` (for
    a size hint), and DISKLRU's ``len()`` evicts when the folder is over the limit."""
    return sorted(iter(storage))


def check_value(key: str, value: Any, generations: int) -> None:
    """``value`` is one complete value that a writer of this test wrote for ``key``."""
    assert isinstance(value, dict), f"{key}: {type(value).__name__}"
    assert sorted(value) == ["blob", "key", "n", "sha256"], f"{key}: {sorted(value)}"
    assert value["key"] == key
    n = value["n"]
    assert GENERATION < n < (generations + 1) * GENERATION, f"{key}: no writer wrote n={n}"
    assert hashlib.sha256(value["blob"]).hexdigest() == value["sha256"], f"{key}: checksum"
    assert value["blob"] == blob_for(key, n), f"{key}: not the value {n} of this key"


class Writers:
    """A chain of writer processes; the next one is started while the current one runs."""

    def __init__(self, stack: Stack, folder: Path) -> None:
        self.stack = stack
        self.folder = folder
        self.started = 0
        self.processes: list[subprocess.Popen[bytes]] = []
        self.pending = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.started += 1
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                self.stack.preset,
                str(self.folder),
                ",".join(self.stack.keys),
                str(self.stack.limit),
                str(self.started),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.processes.append(process)
        return process

    def start_next(self) -> subprocess.Popen[bytes]:
        """Let the waiting writer go, once it is writing start another one to wait."""
        current = self.pending
        assert current.stdin is not None and current.stdout is not None
        current.stdin.write(b"go\n")
        current.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(current.stdout, selectors.EVENT_READ)
            ready = selector.select(READY_TIMEOUT)
        line = current.stdout.readline() if ready else b""
        if line != b"ready\n":
            current.kill()
            _, errors = current.communicate()
            pytest.fail(f"writer {self.started} did not start: {errors.decode()[-2000:]}")
        self.pending = self._spawn()
        return current

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate()


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    _, errors = process.communicate(timeout=30)
    # -SIGKILL: the writer was still running when killed, it had not failed on its own.
    assert process.returncode == -signal.SIGKILL, errors.decode()[-2000:]


@dataclass
class Tally:
    kills: int = 0
    temp_files_left: int = 0
    values_checked: int = 0
    over_limit_after_kill: int = 0


def check_folder(
    stack: Stack, folder: Path, early: Storage, tally: Tally, generations: int
) -> None:
    """The state a kill left: ``early`` was opened before the writers started."""
    left = temp_files(folder)
    tally.temp_files_left += len(left)
    on_disk = entry_keys(folder, stack.suffix)
    assert on_disk <= set(stack.keys)
    # Temporary files are never keys, even to a storage that has not cleaned them up.
    assert keys_of(early) == sorted(on_disk)
    if stack.limit:
        # A writer killed between a write and its eviction leaves up to MAX_BATCH more.
        assert len(on_disk) <= stack.limit + MAX_BATCH
        tally.over_limit_after_kill += len(on_disk) > stack.limit
    storage = stack.open(folder)
    assert temp_files(folder) == [], f"not removed at open: {temp_files(folder)}"
    keys = keys_of(storage)
    assert keys == sorted(entry_keys(folder, stack.suffix))
    assert set(keys) <= on_disk  # an open may evict (trimming to the limit), never add
    for key in keys:
        check_value(key, storage[key], generations)
        tally.values_checked += 1
    if stack.limit:
        count = len(storage)
        assert count == len(entry_keys(folder, stack.suffix)) == len(keys)
        assert count <= stack.limit + MAX_BATCH
        again = stack.open(folder)
        assert len(again) == count
        assert keys_of(again) == keys
        again.close()
    storage.close()


@quick_and_long(10, KILLS_PER_STACK)
@pytest.mark.parametrize("name", list(STACKS))
def test_writers_killed_at_random_never_tear_an_entry(
    name: str, scale: int, tmp_path: Path
) -> None:
    stack = STACKS[name]
    folder = tmp_path / name
    folder.mkdir()
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    early = stack.open(folder)
    tally = Tally()
    began = time.monotonic()
    writers = Writers(stack, folder)
    try:
        # At least ``scale`` kills, and more until some value was there to check: on a
        # loaded machine a writer can be killed before its first write, ten times in a row.
        deadline = time.monotonic() + 120
        while tally.kills < scale or (tally.values_checked == 0 and time.monotonic() < deadline):
            writer = writers.start_next()
            time.sleep(rng.uniform(*DELAY))  # a random moment, not a synchronisation
            kill(writer)
            tally.kills += 1
            check_folder(stack, folder, early, tally, writers.started)
    finally:
        writers.close()
    elapsed = time.monotonic() - began
    print(
        f"\ncrash[{name}]: {tally.kills} kills in {elapsed:.1f} s "
        f"({1000 * elapsed / tally.kills:.0f} ms each), {tally.temp_files_left} temporary "
        f"files left by killed writers and removed at open, {tally.values_checked} values "
        f"checked, {tally.over_limit_after_kill} kills left the count over the limit "
        f"(seed {seed})"
    )
    assert tally.kills >= scale
    assert tally.values_checked > 0
    final = stack.open(folder)
    assert keys_of(final) == sorted(entry_keys(folder, stack.suffix))
    if stack.limit:
        # The first write after the crashes brings the count back to the limit.
        final["a"] = value_for("a", GENERATION + 1)
        assert len(final) == len(entry_keys(folder, stack.suffix)) <= stack.limit
    final.close()
    early.close()


# A writer killed between writing its temporary file and renaming it: made certain.
KILLED_BEFORE_RENAME = """
import os, signal, sys
from pystorage import StorageProvider
options = {"path": sys.argv[2]}
if int(sys.argv[3]):
    options["limit"] = int(sys.argv[3])
storage = StorageProvider().create(sys.argv[1], **options)
storage["a"] = "old"
os.replace = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
storage["a"] = "new"
"""


@pytest.mark.parametrize("name", list(STACKS))
def test_a_killed_writers_temporary_file_is_no_key_and_goes_at_open(
    name: str, tmp_path: Path
) -> None:
    stack = STACKS[name]
    early = stack.open(tmp_path)
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_BEFORE_RENAME, stack.preset, str(tmp_path), str(stack.limit)],
        stderr=subprocess.PIPE,
    )
    _, errors = writer.communicate(timeout=60)
    assert writer.returncode == -signal.SIGKILL, errors.decode()
    [left] = temp_files(tmp_path)
    assert left.startswith(f".tmp-{writer.pid}-")  # the dead writer's, complete but unnamed
    assert keys_of(early) == ["a"]
    assert len(early) == 1
    assert early["a"] == "old"
    storage = stack.open(tmp_path)
    assert temp_files(tmp_path) == []
    assert keys_of(storage) == ["a"]
    assert storage["a"] == "old"


# A writer killed after its write and before its eviction: the same state, made certain.
KILLED_MID_EVICTION = """
import os, signal, sys
from pystorage import StorageProvider
from pystorage.layers import Files
storage = StorageProvider().create(StorageProvider.STORAGE_DISKLRU, limit=3, path=sys.argv[1])
for key in "abc":
    storage[key] = key
Files.delete_many = lambda self, keys: os.kill(os.getpid(), signal.SIGKILL)
storage["d"] = "d"
"""


def test_a_fresh_open_trims_what_a_writer_killed_mid_eviction_left(tmp_path: Path) -> None:
    stack = STACKS["disklru"]
    writer = subprocess.run(
        [sys.executable, "-c", KILLED_MID_EVICTION, str(tmp_path)],
        capture_output=True,
        timeout=60,
    )
    assert writer.returncode == -signal.SIGKILL, writer.stderr.decode()
    assert entry_keys(tmp_path, stack.suffix) == set("abcd")  # written, not yet evicted
    storage = stack.open(tmp_path)
    count = len(storage)
    assert count == len(entry_keys(tmp_path, stack.suffix))  # the index agrees with the folder
    check_bound("entries after a fresh open", count, stack.limit)  # 4 under a limit of 3

"""Several processes on one folder: mixed operations, no errors, no corrupt entry, one limit.

Four processes each run 2,000 random operations (set, get, delete, get_many, set_many,
len) on one folder, through STORAGE_PICKLE and through STORAGE_DISKLRU (evicting by use,
and by adaptive W-TinyLFU). Values describe
themselves (key, writer, number, payload, checksum), so any value read can be checked to
be one complete value written for its key. For DISKLRU the parent counts the entry files
while the processes run.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
import traceback
from collections import Counter
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage, StorageProvider
from tests.helpers import DiskStack

WRITERS = 4
OPERATIONS = 2_000
KEYS = tuple(f"k{i}" for i in range(200))
LIMIT = 50
MAX_BATCH = 3  # the largest set_many
# One process at a time writes under the folder's lock, and it adds at most MAX_BATCH
# entries before it evicts: the count never passes LIMIT + MAX_BATCH (< LIMIT + WRITERS).
BOUND = LIMIT + MAX_BATCH
TIMEOUT = 120.0
MIXED = {"set": 30, "get": 25, "delete": 10, "get_many": 12, "set_many": 15, "len": 8}


PICKLE = DiskStack(StorageProvider.STORAGE_PICKLE, "storage.pkl")
DISKLRU = DiskStack(StorageProvider.STORAGE_DISKLRU, "storage.lru", limit=LIMIT)
TINYLFU = DiskStack(StorageProvider.STORAGE_DISKLRU, "storage.lru", LIMIT, "tinylfu")
#: name: (stack, operation weights)
CASES = {
    "pickle": (PICKLE, MIXED),
    "disklru": (DISKLRU, MIXED),
    "disklru-tinylfu": (TINYLFU, MIXED),
}


class OverLimit(AssertionError):
    """DISKLRU's count went past its bound."""


def check_bound(what: str, count: int, bound: int) -> None:
    if count > bound:
        raise OverLimit(f"{what}: {count} > {bound}")


def payload_for(key: str, writer: int, number: int) -> bytes:
    rng = random.Random(f"{key}:{writer}:{number}")
    return rng.randbytes(rng.randrange(64, 4096))


def value_for(key: str, writer: int, number: int) -> dict[str, Any]:
    payload = payload_for(key, writer, number)
    return {
        "key": key,
        "writer": writer,
        "number": number,
        "payload": payload,
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


def keys_of(storage: Storage) -> list[str]:
    """The keys, sorted, from iteration alone: ``sorted(storage)`` also calls ``len()`` (for
    a size hint), and DISKLRU's ``len()`` evicts when the folder is over the limit."""
    return sorted(iter(storage))


def check_value(key: str, value: Any) -> None:
    """``value`` is one complete value that some writer of this test wrote for ``key``."""
    assert isinstance(value, dict), f"{key}: {type(value).__name__}"
    assert sorted(value) == ["key", "number", "payload", "sha256", "writer"], sorted(value)
    assert value["key"] == key, f"{key}: the value of {value['key']}"
    assert 0 <= value["writer"] < WRITERS and 0 <= value["number"] < OPERATIONS, value
    assert hashlib.sha256(value["payload"]).hexdigest() == value["sha256"], f"{key}: checksum"
    assert value["payload"] == payload_for(key, value["writer"], value["number"]), key


def entry_count(folder: Path, suffix: str) -> int:
    """Entry files in ``folder``: names with the suffix, no dotfiles (lock, temporary)."""
    ending = "." + suffix
    return sum(
        1 for name in os.listdir(folder) if name.endswith(ending) and not name.startswith(".")
    )


def _run(
    storage: Storage,
    stack: DiskStack,
    mix: dict[str, int],
    writer: int,
    seed: int,
    stats: Counter[str],
) -> None:
    rng = random.Random(seed)
    operations = list(mix)
    weights = list(mix.values())
    for number, operation in enumerate(rng.choices(operations, weights, k=OPERATIONS)):
        stats[operation] += 1
        key = rng.choice(KEYS)
        if operation == "set":
            storage[key] = value_for(key, writer, number)
        elif operation == "get":
            try:
                value = storage[key]
            except KeyError:
                stats["missed"] += 1
            else:
                check_value(key, value)
                stats["checked"] += 1
        elif operation == "delete":
            try:
                del storage[key]
            except KeyError:
                stats["missed"] += 1
        elif operation == "get_many":
            wanted = rng.sample(KEYS, rng.randint(1, 6))
            found = storage.get_many(wanted)
            assert set(found) <= set(wanted)
            for found_key, value in found.items():
                check_value(found_key, value)
                stats["checked"] += 1
        elif operation == "set_many":
            batch = rng.sample(KEYS, rng.randint(1, MAX_BATCH))
            storage.set_many({each: value_for(each, writer, number) for each in batch})
        else:
            count = len(storage)
            assert count <= len(KEYS)  # never a temporary or foreign file counted
            stats["max_len"] = max(stats["max_len"], count)
    # After its last write: the count this process sees (checked against BOUND by the parent).
    stats["max_len"] = max(stats["max_len"], len(storage))


def _worker(name: str, folder: str, writer: int, seed: int, start: Barrier, result: str) -> None:
    """One process: open, wait for the others, run, write a result file (a traceback on error)."""
    stats: Counter[str] = Counter()
    error = None
    try:
        stack, mix = CASES[name]
        storage = stack.open(Path(folder))
        start.wait(TIMEOUT)
        _run(storage, stack, mix, writer, seed, stats)
        storage.close()
    except BaseException:
        error = traceback.format_exc()
    Path(result).write_text(json.dumps({"stats": stats, "error": error}))
    if error is not None:
        raise SystemExit(1)


@pytest.mark.parametrize(
    "name",
    [
        "pickle",
        "disklru",
        "disklru-tinylfu",
    ],
)
def test_four_processes_of_mixed_operations_share_one_folder(name: str, tmp_path: Path) -> None:
    stack, mix = CASES[name]
    folder = tmp_path / "store"
    folder.mkdir()
    seed = int.from_bytes(os.urandom(4), "big")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WRITERS)
    results = [tmp_path / f"result-{writer}.json" for writer in range(WRITERS)]
    processes = [
        context.Process(
            target=_worker,
            args=(name, str(folder), writer, seed + writer, start, str(results[writer])),
        )
        for writer in range(WRITERS)
    ]
    began = time.monotonic()
    for process in processes:
        process.start()
    peak = samples = 0
    try:
        deadline = time.monotonic() + TIMEOUT
        if stack.limit:
            # Count the entry files as often as possible while the writers run.
            while any(process.is_alive() for process in processes):
                assert time.monotonic() < deadline, "the processes did not finish in time"
                peak = max(peak, entry_count(folder, stack.suffix))
                samples += 1
        for process in processes:
            process.join(max(deadline - time.monotonic(), 0))
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    elapsed = time.monotonic() - began

    reports = [json.loads(result.read_text()) for result in results]
    errors = [report["error"] for report in reports if report["error"] is not None]
    assert errors == [], f"seed {seed}:\n" + "\n".join(errors)
    assert [process.exitcode for process in processes] == [0] * WRITERS
    totals: Counter[str] = Counter()
    for report in reports:
        stats = Counter(report["stats"])
        assert sum(stats[operation] for operation in mix) == OPERATIONS
        totals.update({key: value for key, value in stats.items() if key != "max_len"})
    assert totals["checked"] > 0  # values were read back and verified, not only missed
    max_len = max(report["stats"]["max_len"] for report in reports)
    assert max_len <= len(KEYS)
    print(
        f"\nprocesses[{name}]: {WRITERS} x {OPERATIONS} operations in {elapsed:.1f} s, "
        f"{totals['checked']} values checked, largest len() in a process {max_len}"
        + (
            f", entry files at most {peak} in {samples} samples, limit {LIMIT}"
            if stack.limit
            else ""
        )
        + f" (seed {seed})"
    )

    # Every remaining entry decodes to a value written for it, and a fresh open agrees.
    storage = stack.open(folder)
    keys = keys_of(storage)
    assert set(keys) <= set(KEYS)
    for key in keys:
        check_value(key, storage[key])
    assert len(storage) == len(keys) == entry_count(folder, stack.suffix)
    again = stack.open(folder)
    assert keys_of(again) == keys
    assert len(again) == len(keys)
    if stack.limit:
        # Last, so that an over-limit failure skips no other check.
        assert samples > 0
        check_bound("entry files while the processes ran", peak, BOUND)
        check_bound("len() in a process", max_len, BOUND)
        check_bound("entries after they all exited", len(keys), LIMIT)


# Another process fills the folder to the limit and exits.
FILL = """
import sys
from pystorage import StorageProvider
storage = StorageProvider().create(StorageProvider.STORAGE_DISKLRU, limit=3, path=sys.argv[1])
for key in ("x1", "x2", "x3"):
    storage[key] = key
"""


def test_a_delete_does_not_hide_another_processes_writes_from_the_index(tmp_path: Path) -> None:
    storage = DiskStack(DISKLRU.preset, DISKLRU.suffix, limit=3).open(tmp_path)
    other = subprocess.run([sys.executable, "-c", FILL, str(tmp_path)], capture_output=True)
    assert other.returncode == 0, other.stderr.decode()
    with pytest.raises(KeyError):
        del storage["missing"]  # any delete: its exclusive section swallows "x1-x3 appeared"
    for key in ("a1", "a2", "a3"):
        storage[key] = key
    check_bound("entry files", entry_count(tmp_path, DISKLRU.suffix), 3)  # 6: x1-x3 stay


def test_a_count_limited_folder_opened_before_fork_keeps_its_bound(tmp_path: Path) -> None:
    """gunicorn --preload: the storage is opened (and its lock file too) in the parent,
    then used by forked children. Each child must lock on its own descriptor: a shared
    one makes ``flock`` exclude no one (62-82 files with limit 20 before the fix)."""
    limit, writers = 20, 4
    storage = StorageProvider().create(
        StorageProvider.STORAGE_DISKLRU, path=tmp_path, limit=limit, codec="json"
    )
    storage["warm"] = 0  # the parent takes the lock once: its descriptor now exists
    context = multiprocessing.get_context("fork")
    start = context.Barrier(writers + 1)
    children = [
        context.Process(target=_write_after_fork, args=(storage, start, number))
        for number in range(writers)
    ]
    for child in children:
        child.start()
    start.wait(timeout=60)
    peak = 0
    deadline = time.monotonic() + 120
    while any(child.is_alive() for child in children):
        peak = max(peak, entry_count(tmp_path, "storage.lru"))
        assert time.monotonic() < deadline, "the writers did not finish"
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    # One write at a time: at most one entry over the limit, between a write and its eviction.
    assert peak <= limit + 1
    assert entry_count(tmp_path, "storage.lru") <= limit


def _write_after_fork(storage: Storage, start: Barrier, number: int) -> None:
    start.wait(timeout=60)
    for index in range(300):
        storage[f"w{number}-{index}"] = index

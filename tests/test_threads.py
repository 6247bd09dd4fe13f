"""Every stack shared by 8 threads doing mixed operations: 10,000 each on local stacks,
1,000 each over Redis, 300 each over S3 (make test-long); make test does a fifth of it."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from pystorage import Storage, StorageProvider
from tests.conformance.stacks import REMOTE_STACKS, STACKS, Place, StackFactory
from tests.helpers import quick_and_long

THREADS, OPERATIONS, KEYS = 8, 10_000, 40
# Stacks on servers: each operation is a round trip (several on S3), so fewer of them.
ON_REDIS, ON_S3 = 1_000, 300
provider = StorageProvider()

BOUNDED: dict[str, tuple[StackFactory, int]] = {
    "lru-20": (lambda place: provider.create(StorageProvider.STORAGE_LRU, maxsize=20), 20),
    "disklru-20": (
        lambda place: provider.create(StorageProvider.STORAGE_DISKLRU, limit=20, path=place.folder),
        20,
    ),
}
CASES = {name: (factory, None) for name, factory in (STACKS | REMOTE_STACKS).items()} | BOUNDED


def hammer(
    storage: Storage, seed: int, limit: int | None, operations: int, errors: list[BaseException]
) -> None:
    chance = random.Random(seed)
    try:
        for i in range(operations):
            key = f"k{chance.randrange(KEYS)}"
            roll = chance.random()
            if roll < 0.4:
                storage[key] = f"{key}|{seed}|{i}"
            elif roll < 0.8:
                value = storage.get(key)
                assert value is None or value.startswith(f"{key}|"), (key, value)
            elif roll < 0.9:
                storage.pop(key, None)
            elif roll < 0.95:
                found = storage.get_many([key, "k0"])
                assert all(value.startswith(f"{k}|") for k, value in found.items())
            else:
                size = len(storage)
                assert limit is None or size <= limit + THREADS, size
    except BaseException as error:
        errors.append(error)


@quick_and_long(20, 100)  # percent of the operations below
@pytest.mark.parametrize("name", sorted(CASES))
def test_threads_share_a_stack(
    name: str, scale: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    factory, limit = CASES[name]
    storage = factory(Place(tmp_path / "store", request))
    errors: list[BaseException] = []
    if name in REMOTE_STACKS:
        operations = ON_S3 if name.startswith("s3") else ON_REDIS
    else:
        operations = OPERATIONS
    operations = operations * scale // 100
    threads = [
        threading.Thread(target=hammer, args=(storage, seed, limit, operations, errors))
        for seed in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert limit is None or len(storage) <= limit
    for key, value in storage.items():
        assert value.startswith(f"{key}|")

"""Regression tests for silent wrong answers in deadlines, tiers and limits (issue 10).

Deadlines are kept by the backends, outside the values: these tests pin down that no
value can pass for one, that removing an expired entry never removes a newer value,
and that a memory tier never outlives what it copied or keeps an older value.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage, StorageProvider
from pystorage.errors import BackendError, ConfigurationError
from pystorage.layers import LRU, Codec, CountLimit, Expiry, Files, Memory, SQLite, Tier
from tests.helpers import FakeClock

#: Values shaped like the in-band envelopes of pystorage 0.1, and like today's headers.
ENVELOPES: list[Any] = [
    ["pystorage.expires", None, 1],
    ["pystorage.expires", 1795993559.17, "v"],
    ["pystorage.expires", 0.0, "long expired"],
    ("pystorage.expires", 1.0, "a tuple"),
]
BYTES_ENVELOPES = [
    b"\x00pystorage.expires\x00" + struct.pack(">d", 1.0) + b"x",
    b"\x00pystorage.expires\x00",
    b"\xffPST\x01" + struct.pack(">d", 1.0) + b"frame-like",
    b"\xffPST\x01",
]


def _stacks(folder: Path, clock: FakeClock) -> dict[str, Callable[[], Storage]]:
    return {
        # No default TTL: values written without one are stored as they are.
        "memory": lambda: Storage(Expiry(None, clock), Memory()),
        "lru": lambda: Storage(Expiry(None, clock), LRU(100)),
        "pickle-files": lambda: Storage(Expiry(None, clock), Codec("pickle"), Files(folder)),
        "raw-files": lambda: Storage(Codec("raw"), Expiry(None, clock), Files(folder, "raw")),
        "bytes-memory": lambda: Storage(Codec("pickle"), Expiry(None, clock), Memory()),
        # Files has the clock from the start: CountLimit indexes (and sweeps) the folder
        # when it is linked, before Expiry, linked last, hands the clock down.
        "tier-countlimit-files": lambda: Storage(
            Expiry(None, clock),
            CountLimit(100),
            Tier(LRU(2)),
            Codec("pickle"),
            Files(folder, clock=clock),
        ),
    }


@pytest.mark.parametrize(
    "name", ["memory", "lru", "pickle-files", "raw-files", "bytes-memory", "tier-countlimit-files"]
)
def test_values_shaped_like_metadata_come_back_exactly(tmp_path: Path, name: str) -> None:
    clock = FakeClock()
    build = _stacks(tmp_path, clock)[name]
    storage = build()
    values = BYTES_ENVELOPES if name == "raw-files" else [*ENVELOPES, *BYTES_ENVELOPES]
    for number, value in enumerate(values):
        storage[f"plain{number}"] = value
        storage.set(f"ttl{number}", value, ttl=10)
    clock.now += 5
    again = build() if "files" in name else storage  # a new process reads the same files
    for number, value in enumerate(values):
        assert again[f"plain{number}"] == value
        assert again[f"ttl{number}"] == value
    assert len(again) == 2 * len(values)
    clock.now += 10  # the TTL'd ones expire, the others are untouched
    assert sorted(again) == sorted(f"plain{number}" for number in range(len(values)))
    for number, value in enumerate(values):
        assert again[f"plain{number}"] == value


def test_a_stack_without_expiry_honours_deadlines_and_never_shows_them(tmp_path: Path) -> None:
    clock = FakeClock()
    writer = Storage(Expiry(60, clock), Codec("pickle"), Files(tmp_path))
    reader = Storage(Codec("pickle"), Files(tmp_path, clock=clock))  # no Expiry: the CLI's view
    writer["k"] = {"a": 1}
    assert reader["k"] == {"a": 1}
    value, left = reader.get_with_ttl("k")
    assert value == {"a": 1} and left == 60
    clock.now += 61
    assert "k" not in reader
    with pytest.raises(KeyError):
        reader["k"]


def test_a_planted_envelope_cannot_stop_a_storage_from_opening(tmp_path: Path) -> None:
    provider = StorageProvider()
    pickles = provider.create(StorageProvider.STORAGE_PICKLE, path=tmp_path)
    pickles["k"] = ["pystorage.expires", None, 1]
    volatile = provider.create(StorageProvider.STORAGE_VOLATILE, storage=pickles, expiration=5)
    assert volatile["k"] == ["pystorage.expires", None, 1]


def test_a_folder_of_format_0_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "k.storage.pkl").write_bytes(pickle.dumps(("pystorage.expires", 1.0, "v")))
    with pytest.raises(ConfigurationError, match="format 0"):
        Files(tmp_path, "storage.pkl")
    (tmp_path / ".pystorage").write_bytes(b"")  # the user says: read them as plain values
    assert Storage(Codec("pickle"), Files(tmp_path, "storage.pkl"))["k"][0] == "pystorage.expires"


def test_an_executable_file_without_a_header_is_refused(tmp_path: Path) -> None:
    storage = Storage(Codec("raw"), Files(tmp_path))
    storage["k"] = b"plain"
    os.chmod(tmp_path / "k", 0o700)
    with pytest.raises(BackendError, match="no pystorage header"):
        storage["k"]


# -- an expiry removes only the value it judged -------------------------------------------


@pytest.mark.parametrize("name", ["memory", "lru", "files", "sqlite"])
def test_removing_an_expired_entry_never_removes_a_newer_write(tmp_path: Path, name: str) -> None:
    clock = FakeClock()
    backend = {
        "memory": Memory,
        "lru": lambda: LRU(10),
        "files": lambda: Files(tmp_path),
        "sqlite": lambda: SQLite(tmp_path / "c.db"),
    }[name]()
    storage = Storage(Expiry(clock=clock), Codec("pickle"), backend)
    stop = threading.Event()

    def judge() -> None:  # reads, finds the old value expired, and removes it
        while not stop.is_set():
            storage.get("k")

    reader = threading.Thread(target=judge)
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often: races show up in few cycles
    reader.start()
    lost = 0
    try:
        for cycle in range(1500):
            storage.set("k", ("old", cycle), ttl=1)
            clock.now += 2  # expired: the reader may be removing it right now
            storage["k"] = ("new", cycle)  # no TTL
            if storage.get("k") != ("new", cycle):
                lost += 1
    finally:
        stop.set()
        reader.join(timeout=30)
        sys.setswitchinterval(switching)
    assert lost == 0


# -- a memory tier never outlives a TTL, nor keeps an older value -------------------------


def test_a_tier_front_never_outlives_the_ttl_below() -> None:
    clock = FakeClock()
    below = Storage(Codec("json"), Memory(clock=clock))
    tiered = Storage(Tier(LRU(100, clock=clock)), below)
    below.set("session", {"user": 7}, ttl=1)  # written by another program
    assert tiered["session"] == {"user": 7}  # read through: the front keeps a copy
    tiered.set("own", 1, ttl=1)
    assert tiered["own"] == 1
    clock.now += 2
    assert "session" not in below
    for key in ("session", "own"):
        with pytest.raises(KeyError):
            tiered[key]
        with pytest.raises(KeyError):
            tiered.get_with_ttl(key)


class _PausingFiles(Files):
    """Files whose reads, while ``pause`` is set, wait after reading until ``resume``."""

    pause = threading.Event()
    read = threading.Event()
    resume = threading.Event()

    def _hold(self) -> None:
        if self.pause.is_set():
            self.pause.clear()
            self.read.set()
            assert self.resume.wait(timeout=30)

    def get(self, key: str) -> Any:
        value = super().get(key)
        self._hold()
        return value

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        found = super().get_with_ttl(key)
        self._hold()
        return found


def test_a_tier_read_through_never_puts_back_an_older_value(tmp_path: Path) -> None:
    for event in (_PausingFiles.pause, _PausingFiles.read, _PausingFiles.resume):
        event.clear()  # set by an earlier run of this test in the same process
    storage = Storage(Tier(LRU(10)), Codec("pickle"), _PausingFiles(tmp_path))
    Storage(Codec("pickle"), Files(tmp_path))["k"] = "old"  # below only: the front misses
    _PausingFiles.pause.set()
    reader = threading.Thread(target=storage.get, args=("k",))
    reader.start()  # misses in front, reads "old" below, and waits
    assert _PausingFiles.read.wait(timeout=30)
    storage["k"] = "new"  # written below and in front while the reader holds "old"
    _PausingFiles.resume.set()
    reader.join(timeout=30)
    assert storage["k"] == "new"


# -- CountLimit after a batch that failed part way ----------------------------------------


class _FailingAt(Memory):
    """A Memory whose batches fail at one key, after storing (or deleting) those before."""

    fail_at = "none"

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        for key, value in items.items():
            if key == self.fail_at:
                raise BackendError(f"failed at {key}")
            self.set(key, value, ttl)

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key == self.fail_at:
                raise BackendError(f"failed at {key}")
            self._data.pop(key, None)


def test_count_limit_keeps_its_bound_after_a_failed_set_many() -> None:
    backend = _FailingAt()
    storage = Storage(CountLimit(3), backend)
    storage.set_many({"a": 1, "b": 2, "c": 3})
    backend.fail_at = "g"
    with pytest.raises(BackendError):
        storage.set_many({"d": 4, "e": 5, "f": 6, "g": 7, "h": 8})
    assert backend.count() == 3  # the backend itself, not len(), which would trim
    assert sorted(backend.keys()) == ["d", "e", "f"]


def test_count_limit_keeps_its_bound_after_a_failed_delete_many() -> None:
    backend = _FailingAt()
    storage = Storage(CountLimit(3), backend)
    storage.set_many({"a": 1, "b": 2, "c": 3})
    backend.fail_at = "b"
    with pytest.raises(BackendError):
        storage.delete_many(["a", "b", "c"])  # "a" went, "b" and "c" stay
    backend.fail_at = "none"
    for key in "xyz":
        storage[key] = key
    assert backend.count() == 3
    assert sorted(backend.keys()) == ["x", "y", "z"]

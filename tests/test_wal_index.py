"""A memory front over SQLite asks SQLite for changes only when the WAL index says that
someone committed (pystorage/layers/wal_index.py), and still never serves a value that
another connection replaced."""

from __future__ import annotations

import os
from pathlib import Path

from pystorage import Storage
from pystorage.layers import LRU, Codec, SQLite, Tier


def _front_and_writer(path: Path) -> tuple[Storage, SQLite, Storage, SQLite]:
    mine, theirs = SQLite(path), SQLite(path)  # two layers: two sets of connections
    return Storage(Tier(LRU(100)), Codec("raw"), mine), mine, Storage(Codec("raw"), theirs), theirs


def _count_questions(layer: SQLite) -> list[str]:
    """The statements this thread's connection of ``layer`` runs, from now on."""
    statements: list[str] = []
    layer._db().set_trace_callback(statements.append)
    return statements


def test_a_front_asks_sqlite_only_after_a_commit(tmp_path: Path) -> None:
    front, mine, writer, _ = _front_and_writer(tmp_path / "c.db")
    writer["k"] = b"1"
    assert front["k"] == b"1"
    assert mine._header is not None, "the WAL index of a WAL database is mapped"
    asked = _count_questions(mine)
    for _ in range(100):
        assert front["k"] == b"1"
    assert asked == [], "no commit, no statement: every hit was served from the front"
    writer["k"] = b"2"
    assert front["k"] == b"2"
    assert "PRAGMA data_version" in asked


def test_a_front_sees_every_write_of_another_connection_through_checkpoints(
    tmp_path: Path,
) -> None:
    front, _, writer, theirs = _front_and_writer(tmp_path / "c.db")
    for round_ in range(300):
        writer["k"] = str(round_).encode()
        assert front["k"] == str(round_).encode()
        if round_ < 150:
            # The WAL starts again from its first frame: the next write leaves the same
            # frame count in the header as the last one; only its salts tell them apart.
            theirs._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if round_ % 11 == 0:
            writer.set_many({"k": b"many", "other": b"x"})
            assert front["k"] == b"many"


def test_a_front_maps_the_new_shared_memory_after_every_connection_closed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    front, mine, writer, _ = _front_and_writer(path)
    writer["k"] = b"old"
    assert front["k"] == b"old"
    first = mine._header
    front.close()
    writer.close()
    # The last connection of the last process removed the WAL and its index...
    assert not os.path.exists(f"{path}-shm")
    assert front["k"] == b"old"  # ...and the next read opens a new one, with a new index
    assert mine._header is not None and mine._header is not first
    writer["k"] = b"new"
    assert front["k"] == b"new"


def test_opening_many_databases_in_turn_keeps_no_descriptor_of_the_closed_ones(
    tmp_path: Path,
) -> None:
    def descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    def open_read_close(number: int) -> None:
        front, mine, writer, _ = _front_and_writer(tmp_path / f"c{number}.db")
        writer["k"] = b"v"
        assert front["k"] == b"v"
        assert mine._header is not None
        front.close()
        writer.close()

    open_read_close(0)
    before = descriptors()
    for number in range(1, 300):
        open_read_close(number)
    assert descriptors() <= before + 2

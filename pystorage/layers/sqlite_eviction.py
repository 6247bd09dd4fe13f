"""The SQL of each eviction order that an ``SQLite`` database keeps itself.

A ``CountLimit``/``SizeLimit`` over ``SQLite`` hands its bound down (``take_bound``): the
database then keeps books beside its entries, by triggers that every writer of the file
runs, and evicts in the transaction of each write. There are two families of books; a
database holds one of them, and taking a bound of the other family replaces them (one
pass over the entries):

- ``ByRecency`` (``eviction="used"`` and ``"stored"``): a sequence number per entry,
  given by each write and by each read recorded for eviction by use; the least recent
  go first.
- ``ByFrequency`` (``eviction="tinylfu"``): W-TinyLFU approximated in SQL, after Redis's
  approximated LFU: a small counter per entry that decays by halves as the database's
  clock (its reads and writes) moves on, a sketch that remembers how often keys that are
  not stored were asked for, and eviction by sampling. A read writes nothing when its
  counter is full; the reads of a batch are written in one transaction, each key's row
  at most once.

Each family is one class: the tables and triggers it keeps, how noted reads are written,
and which rows go. ``SQLite`` decides when (the write transaction, the batches of reads).
"""

from __future__ import annotations

import random
import sqlite3
import zlib
from collections import Counter
from typing import ClassVar

#: A row of ``frequencies``: id (the entry's rowid), count, tick.
Row = tuple[int, int, int]
#: The most entries and bytes a database keeps (either may be unbounded: inf).
Bounds = tuple[float, float]

#: The entries a sample compares, the least counted of them evicted.
SAMPLE = 16
#: A counter's ceiling: "asked for often" needs no finer degree (TinyLFU's 4 bits).
MOST = 15
#: The share of reads that count as a use (each at random): a quarter writes a quarter
#: as many rows (each a random page of a large database; a read at 1,000,000 entries
#: then loses no more than raw sqlite3 does), and costs hit ratio where the first reads
#: of many keys decide: zipf 0.7 @ 1,000 gets 15.4 % (17.7 counting every read).
COUNTED = 0.25
#: Each entry's place, drawn at random (SQLite's random()) when it is stored: a sample
#: takes the entry at or after each of ``SAMPLE`` random places, by the index on it, in
#: one statement. Ids would not do: they are in the order of insertion, with the gaps of
#: every entry evicted, so a probe by id finds the entries after the widest gaps, and the
#: first entries of a database (no gaps between them) were never found (zipf 0.7 lost 2.7
#: points, orm-busy 1.6); runs of neighbours by id, asked for alike, lost more.
_PROBE = (
    "SELECT * FROM (SELECT id, count, tick FROM frequencies "
    "WHERE place >= ? AND id < ? ORDER BY place LIMIT 1)"
)
_PROBES = " UNION ALL ".join([_PROBE] * SAMPLE)
_LOWEST, _HIGHEST = -(1 << 63), 1 << 63
#: What the guard of the bounds raises (see ``ByFrequency.guards``).
BEYOND = "pystorage: beyond the bounds of this database"
_GUARD = (
    f"SELECT RAISE(ABORT, '{BEYOND}') FROM tallies WHERE trimming = 0 "
    "AND (count > most_entries OR bytes > most_bytes);"
)
#: The most counters in a row of the sketch.
_WIDEST = 1 << 20
#: The share of the entries, most recently inserted, that are never sampled for eviction
#: (the window): a new key has that long to be asked for again before it must win its
#: place against the sampled victim. 5 % measured best on the traces of hit_ratio.py.
WINDOW = 20


class ByRecency:
    """``used``/``stored``: ``uses`` orders the entries (a sequence number given by each
    write, and by each read recorded for eviction by use) beside their sizes, and
    ``totals`` holds their number and bytes, so a bound is checked without a scan. Uses
    live beside the entries, not in them: recording a read rewrites a small row, never
    the value."""

    tables: ClassVar[tuple[str, ...]] = ("uses", "totals")
    triggers: ClassVar[tuple[str, ...]] = ("entries_insert", "entries_update", "entries_delete")
    books = """
    CREATE TABLE IF NOT EXISTS uses (
        key BLOB PRIMARY KEY NOT NULL,
        used INTEGER NOT NULL,
        size INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS uses_by_age ON uses (used);
    CREATE TABLE IF NOT EXISTS totals (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        count INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO uses SELECT key, rowid, length(value) FROM entries;
    INSERT OR IGNORE INTO totals SELECT 0, count(*), ifnull(sum(length(value)), 0) FROM entries;
    CREATE TRIGGER IF NOT EXISTS entries_insert AFTER INSERT ON entries BEGIN
        INSERT OR REPLACE INTO uses
            VALUES (NEW.key, (SELECT ifnull(max(used), 0) + 1 FROM uses), length(NEW.value));
        UPDATE totals SET count = count + 1, bytes = bytes + length(NEW.value);
    END;
    CREATE TRIGGER IF NOT EXISTS entries_update AFTER UPDATE OF value ON entries BEGIN
        UPDATE uses SET used = (SELECT ifnull(max(used), 0) + 1 FROM uses),
            size = length(NEW.value) WHERE key = NEW.key;
        UPDATE totals SET bytes = bytes + length(NEW.value) - length(OLD.value);
    END;
    CREATE TRIGGER IF NOT EXISTS entries_delete AFTER DELETE ON entries BEGIN
        DELETE FROM uses WHERE key = OLD.key;
        UPDATE totals SET count = count - 1, bytes = bytes - length(OLD.value);
    END;
    """
    #: Entries in eviction order, as a SQL expression over ``entries``.
    order = "(SELECT used FROM uses WHERE uses.key = entries.key)"

    def script(self) -> str:
        """The SQL that makes these books (in a transaction, with the entries there)."""
        return self.books

    def __init__(self, eviction: str, capacity: int) -> None:
        #: Whether reads are noted (and written in batches by ``record``).
        self.notes_reads = eviction == "used"

    #: Whether the books' triggers refuse a write beyond the bounds (see ``ByFrequency``).
    guards = False

    def keep(self, db: sqlite3.Connection, bounds: dict[str, int]) -> None:
        """Within a write transaction: settings of this bound (none for this family)."""

    def trimming(self, db: sqlite3.Connection, on: bool) -> None:
        """Within a write transaction: whether it keeps the bound itself (no guard here)."""

    def totals(self, db: sqlite3.Connection) -> tuple[int, int]:
        """The number of entries and their bytes."""
        count, size = db.execute("SELECT count, bytes FROM totals").fetchone()
        return int(count), int(size)

    def record(self, db: sqlite3.Connection, reads: list[bytes]) -> None:
        """Within a write transaction: make the keys read the most recently used, in the
        order of their last read."""
        last_first = dict.fromkeys(reversed(reads))
        db.executemany(
            "UPDATE uses SET used = (SELECT max(used) + 1 FROM uses) WHERE key = ?",
            [(name,) for name in reversed(last_first)],
        )

    def evict(self, db: sqlite3.Connection, count: int, size: int, most: Bounds) -> list[bytes]:
        """Within a write transaction: delete the least recent rows until the entries
        are within ``most`` (entries, bytes); the keys deleted."""
        most_entries, most_bytes = most
        victims = []
        rows = db.execute("SELECT key, size FROM uses ORDER BY used")
        for name, length in rows:
            if count <= most_entries and size <= most_bytes:
                break
            victims.append((name,))
            count -= 1
            size -= length
        rows.close()
        db.executemany("DELETE FROM entries WHERE key = ?", victims)
        return [name for (name,) in victims]


class ByFrequency:
    """``tinylfu``: each entry's row in ``frequencies`` (its ``entries`` rowid, so in the
    order of insertion) holds a use counter (0-15) and the ``tick`` of its last change;
    it loses half of its value every ``period`` ticks since (a decay computed where it
    is read, never written for its own sake). ``tallies`` holds the number of entries,
    their bytes, the clock (``tick``: one per insert and per read; ``period`` is 10 x
    the bound's entries) and the width of ``sketch``: two rows of ``width`` counters (a
    count-min sketch, with the same decay) that remember how often keys not stored were
    asked for, each a miss written back (they are the writes below a cache) or an
    eviction.

    An insert enters the window (the newest 5 % of the entries), never sampled. On
    reaching the edge of the window while the database is full, it is the *candidate*:
    its count (its uses, and what the sketch remembers of its key) is compared to the
    least count among ``SAMPLE`` entries past the window, drawn at random by their random
    ``place`` (the least recently counted among equals); the lesser goes, and its count
    goes to the sketch. Further evictions (a larger value) take the least of a sample
    each."""

    tables: ClassVar[tuple[str, ...]] = ("frequencies", "sketch", "tallies")
    triggers: ClassVar[tuple[str, ...]] = (
        "frequency_insert",
        "frequency_update",
        "frequency_delete",
    )
    # An insert is a use (a miss, written back); an overwrite writes nothing here unless
    # the value's size changed: a bounded overwrite costs what an unbounded one does, but
    # for the transaction. Sizes are the entries' own (length() reads no value).
    books = """
    CREATE TABLE IF NOT EXISTS frequencies (
        id INTEGER PRIMARY KEY,
        count INTEGER NOT NULL,
        tick INTEGER NOT NULL,
        place INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS frequencies_by_place ON frequencies (place);
    CREATE TABLE IF NOT EXISTS sketch (
        slot INTEGER PRIMARY KEY,
        count INTEGER NOT NULL,
        tick INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS tallies (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        count INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        tick INTEGER NOT NULL,
        width INTEGER NOT NULL,
        most_entries INTEGER,
        most_bytes INTEGER,
        trimming INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO frequencies SELECT rowid, 1, 0, random() FROM entries;
    INSERT OR IGNORE INTO tallies
        SELECT 0, count(*), ifnull(sum(length(value)), 0), 0, {width}, NULL, NULL, 0
        FROM entries;
    CREATE TRIGGER IF NOT EXISTS frequency_insert AFTER INSERT ON entries BEGIN
        INSERT OR REPLACE INTO frequencies
            VALUES (NEW.rowid, 1, (SELECT tick FROM tallies), random());
        UPDATE tallies SET count = count + 1, bytes = bytes + length(NEW.value), tick = tick + 1;
        {guard}
    END;
    CREATE TRIGGER IF NOT EXISTS frequency_update AFTER UPDATE OF value ON entries
    WHEN length(NEW.value) != length(OLD.value) BEGIN
        UPDATE tallies SET bytes = bytes + length(NEW.value) - length(OLD.value);
        {guard}
    END;
    CREATE TRIGGER IF NOT EXISTS frequency_delete AFTER DELETE ON entries BEGIN
        DELETE FROM frequencies WHERE id = OLD.rowid;
        UPDATE tallies SET count = count - 1, bytes = bytes - length(OLD.value);
    END;
    """
    order = "rowid"
    notes_reads = True

    def script(self) -> str:
        """The SQL that makes these books: a new sketch has the width for this bound."""
        return self.books.replace("{width}", str(self.width)).replace("{guard}", _GUARD)

    def __init__(self, eviction: str, capacity: int) -> None:
        # TinyLFU's aging: all counts halve every 10 x capacity uses; a sketch of 8 x
        # capacity counters per row kept the estimates apart on the traces (4 x, and one
        # row, let scans in). At most 2^20 per row: a sketch full of rows is then 30 MB.
        self.period = 10 * capacity
        width = 1024
        while width < 8 * capacity and width < _WIDEST:
            width <<= 1
        self.width = width
        self._random = random.Random()

    # A write that stays within the bounds is one statement, as without a limit: the
    # triggers check the bounds (kept in ``tallies`` by ``keep``) after each insert or
    # change of size and refuse a write beyond them (RAISE: the statement is undone), and
    # ``SQLite`` then writes it again in a transaction that evicts (``trimming`` on, for
    # it alone until it commits). A writer without this policy meets the same guard.
    guards = True

    def keep(self, db: sqlite3.Connection, bounds: dict[str, int]) -> None:
        """Within a write transaction: the bounds the triggers guard (this stack's);
        the sketch keeps the width it was made with."""
        db.execute(
            "UPDATE tallies SET most_entries = ?, most_bytes = ?",
            (bounds.get("entries"), bounds.get("bytes")),
        )
        (self.width,) = db.execute("SELECT width FROM tallies").fetchone()

    def trimming(self, db: sqlite3.Connection, on: bool) -> None:
        """Within a write transaction: it keeps the bounds itself (the guard lets its
        writes through), or no longer."""
        db.execute("UPDATE tallies SET trimming = ?", (int(on),))

    def totals(self, db: sqlite3.Connection) -> tuple[int, int]:
        count, size = db.execute("SELECT count, bytes FROM tallies").fetchone()
        return int(count), int(size)

    def record(self, db: sqlite3.Connection, reads: list[bytes]) -> None:
        """Within a write transaction: the clock moves by the reads; a quarter of them,
        drawn at random, count as uses, and a key's row is written only if its counter
        is not full already (once for all its uses in the batch)."""
        now = self._advance(db, len(reads))
        draw = self._random.random
        counted = Counter(key for key in reads if draw() < COUNTED)
        decayed = f"(count >> min(4, (:now - tick) / {self.period}))"
        db.executemany(
            f"UPDATE frequencies SET count = min({MOST}, {decayed} + :uses), tick = :now "
            "WHERE id = (SELECT rowid FROM entries WHERE key = :key) "
            f"AND {decayed} < {MOST}",
            [{"now": now, "uses": uses, "key": key} for key, uses in counted.items()],
        )

    def _advance(self, db: sqlite3.Connection, ticks: int) -> int:
        db.execute("UPDATE tallies SET tick = tick + ?", (ticks,))
        (now,) = db.execute("SELECT tick FROM tallies").fetchone()
        return int(now)

    def evict(self, db: sqlite3.Connection, count: int, size: int, most: Bounds) -> list[bytes]:
        most_entries, most_bytes = most
        (now,) = db.execute("SELECT tick FROM tallies").fetchone()
        (newest,) = db.execute("SELECT max(id) FROM frequencies").fetchone()
        edge = newest - max(1, count // WINDOW)  # beyond it, the window: never sampled
        candidate = db.execute(
            "SELECT id, count, tick FROM frequencies WHERE id = ?", (edge,)
        ).fetchone()
        evicted: list[bytes] = []
        while count > most_entries or size > most_bytes:
            victim = self._sample(db, now, edge)
            remembered = None
            if candidate is not None:
                # The contest of admission: the candidate stays only if asked for more.
                estimate = self._estimate(db, now, candidate)
                if victim is None or estimate <= self._decayed(victim[1], victim[2], now):
                    victim, remembered = candidate, estimate
                else:
                    db.execute(
                        "UPDATE frequencies SET count = ?, tick = ? WHERE id = ?",
                        (estimate, now, candidate[0]),
                    )
                candidate = None
            # Past the window there may be nothing left (a large value, few entries):
            # then the window's oldest, never the newest (it was just written).
            victim = victim or self._sample(db, now, newest) or self._row(db, newest)
            key, length = self._remove(db, now, victim, remembered)
            evicted.append(key)
            count -= 1
            size -= length
        return evicted

    def _row(self, db: sqlite3.Connection, id: int) -> Row:
        found: Row = db.execute(
            "SELECT id, count, tick FROM frequencies WHERE id = ?", (id,)
        ).fetchone()
        return found

    def _decayed(self, count: int, tick: int, now: int) -> int:
        return count >> min(4, (now - tick) // self.period)

    def _sample(self, db: sqlite3.Connection, now: int, end: int) -> Row | None:
        """The least counted of ``SAMPLE`` rows drawn at random among those with ids
        below ``end``, in one statement; None if there is none."""
        draw = self._random.randrange
        places = [bound for _ in range(SAMPLE) for bound in (draw(_LOWEST, _HIGHEST), end)]
        rows: list[Row] = db.execute(_PROBES, places).fetchall()
        if not rows:  # every place drawn was past the last row's
            rows = db.execute(_PROBES, [_LOWEST, end] * SAMPLE).fetchall()
        if not rows:
            return None
        # Among equal counts, the one counted least recently goes (LRU among equals).
        return min(rows, key=lambda row: (self._decayed(row[1], row[2], now), row[2], row[0]))

    def _estimate(self, db: sqlite3.Connection, now: int, candidate: Row) -> int:
        """How often the candidate was asked for: its uses since it was stored, and what
        the sketch remembers of its key before (its misses, its earlier stays)."""
        (key,) = db.execute("SELECT key FROM entries WHERE rowid = ?", (candidate[0],)).fetchone()
        return min(MOST, self._remembered(db, key, now) + self._decayed(*candidate[1:3], now))

    def _slots(self, key: bytes) -> tuple[int, int]:
        # crc32: the same in every process (Python's hash() is salted per process).
        mask = self.width - 1
        return zlib.crc32(key) & mask, self.width + (zlib.crc32(key, 0x9E3779B9) & mask)

    def _remembered(self, db: sqlite3.Connection, key: bytes, now: int) -> int:
        rows = db.execute(
            "SELECT count, tick FROM sketch WHERE slot IN (?, ?)", self._slots(key)
        ).fetchall()
        if len(rows) < 2:
            return 0
        return min(self._decayed(count, tick, now) for count, tick in rows)

    def _remove(
        self, db: sqlite3.Connection, now: int, row: Row, count: int | None
    ) -> tuple[bytes, int]:
        """Delete an entry, and let the sketch remember its count (``count``, else its
        row's), where that is more than the sketch holds. Its key and size."""
        key, size = db.execute(
            "SELECT key, length(value) FROM entries WHERE rowid = ?", (row[0],)
        ).fetchone()
        db.execute("DELETE FROM entries WHERE rowid = ?", (row[0],))
        if count is None:
            count = self._decayed(row[1], row[2], now)
        db.executemany(
            "INSERT INTO sketch VALUES (?, ?, ?) ON CONFLICT (slot) DO UPDATE SET "
            "count = max(excluded.count, "
            f"count >> min(4, (excluded.tick - tick) / {self.period})), tick = excluded.tick",
            [(slot, count, now) for slot in self._slots(key)],
        )
        return bytes(key), int(size)


Policy = ByRecency | ByFrequency


def policy_for(eviction: str, capacity: int) -> Policy:
    """The books that keep ``eviction`` (``used``, ``stored``, ``tinylfu``) for a bound of
    about ``capacity`` entries."""
    if eviction == "tinylfu":
        return ByFrequency(eviction, capacity)
    return ByRecency(eviction, capacity)


def keep_books(db: sqlite3.Connection, policy: Policy) -> None:
    """Make ``policy``'s books in the database if they are not there, in place of the
    other family's (whose tables and triggers go: one pass over the entries fills the
    new ones). A database that has them already reads only its schema."""
    present = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    others = [family for family in (ByRecency, ByFrequency) if family is not type(policy)]
    stale = [name for family in others for name in (*family.triggers, *family.tables)]
    if set(policy.tables + policy.triggers) <= present and present.isdisjoint(stale):
        return
    drops = "".join(
        f"DROP TRIGGER IF EXISTS {name};\n" for family in others for name in family.triggers
    ) + "".join(f"DROP TABLE IF EXISTS {name};\n" for family in others for name in family.tables)
    db.executescript(f"BEGIN IMMEDIATE;\n{drops}{policy.script()}COMMIT;\n")

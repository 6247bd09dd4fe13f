"""SQLite: every entry a row of one database file, on the standard library's sqlite3."""

from __future__ import annotations

import functools
import os
import sqlite3
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs

from pystorage import _fork, _gate
from pystorage.errors import BackendError, ConfigurationError, not_a_str
from pystorage.layers.base import ABSENT, Backend, ValueKind, new_token
from pystorage.layers.leases import LOCK_TIMEOUT, Lease, checked_lease, pauses
from pystorage.layers.limit import too_large
from pystorage.layers.sqlite_eviction import BEYOND, Policy, keep_books, policy_for
from pystorage.layers.wal_index import header_reader

# Format 2: one row per entry, and nothing else on the path of a write.
_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS entries (
    key BLOB PRIMARY KEY NOT NULL,
    value BLOB NOT NULL,
    deadline REAL
);
CREATE INDEX IF NOT EXISTS entries_by_deadline ON entries (deadline) WHERE deadline IS NOT NULL;
PRAGMA user_version = 2;
COMMIT;
"""
_FORMAT = 2
_SELECT = "SELECT value, deadline FROM entries WHERE key = ?"
# An upsert rewrites the row in place; INSERT OR REPLACE deletes and inserts it, which
# made an overwrite 8-13x slower here (100 B and 10 KB values, WAL, synchronous=NORMAL).
_INSERT = (
    "INSERT INTO entries VALUES (?, ?, ?) ON CONFLICT (key) "
    "DO UPDATE SET value = excluded.value, deadline = excluded.deadline"
)
# add: a new row, or one in place of an expired row; a live row stays (no change counted).
_ADD = (
    "INSERT INTO entries VALUES (?, ?, ?) ON CONFLICT (key) "
    "DO UPDATE SET value = excluded.value, deadline = excluded.deadline "
    "WHERE entries.deadline <= ?"
)
# Tags' tokens (``tag_tokens``): a table of their own, beside the entries.
_TAGS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tag_tokens (tag BLOB PRIMARY KEY NOT NULL, token TEXT NOT NULL)"
)
_NEW_TAG = "INSERT INTO tag_tokens VALUES (?, ?) ON CONFLICT (tag) DO NOTHING"
_RENEW_TAG = (
    "INSERT INTO tag_tokens VALUES (?, ?) ON CONFLICT (tag) DO UPDATE SET token = excluded.token"
)
# The memoize locks (see pystorage.layers.leases): a row per held lock, in a table made at
# the first lock, apart from the entries (so no listing, count or clear sees them). A
# taker inserts its row, or replaces a lapsed one; a holder deletes its own row only.
_LEASES = """
CREATE TABLE IF NOT EXISTS leases (
    name BLOB PRIMARY KEY NOT NULL,
    token TEXT NOT NULL,
    deadline REAL NOT NULL
)
"""
_TAKE_LEASE = (
    "INSERT INTO leases VALUES (?, ?, ?) ON CONFLICT (name) "
    "DO UPDATE SET token = excluded.token, deadline = excluded.deadline "
    "WHERE leases.deadline <= ?"
)
_LEASE_HOLDER = "SELECT token FROM leases WHERE name = ?"
_END_LEASE = "DELETE FROM leases WHERE name = ? AND token = ?"
_UNBOUNDED = float("inf")


@functools.lru_cache(maxsize=64)
def _select_tokens(count: int) -> str:
    """The query of the tokens of ``count`` tags (made once per count: reads of one tag
    are most of them)."""
    return f"SELECT tag, token FROM tag_tokens WHERE tag IN ({','.join('?' * count)})"


#: What SQLite keeps beside a database file, and reads when it opens it.
_SIDE_FILES = ("-wal", "-shm", "-journal")
#: Reads whose use is written in one transaction at most (with eviction by use).
_USES_BATCH = 1000
#: Keys whose last read is kept, at most, while another connection holds the write lock
#: and the uses cannot be written: beyond it, the reads longest ago are forgotten (their
#: keys keep the place in the order of use that the database last recorded for them).
_USES_KEPT = 10 * _USES_BATCH
#: Rows a sweep of expired entries removes at most, so a write never pays for many.
_SWEEP_BATCH = 100
#: The entries a frequency policy expects under a byte limit alone (it sizes its sketch).
_GUESSED_ENTRIES = 10_000
#: Writes between two sweeps of expired rows.
_SWEEP_EVERY = 1000
#: Keys per query of a batch read (SQLite allows 32,766 parameters; fewer keep plans short).
_CHUNK = 500
# Connections a forked child inherited: never used, and never closed either (closing one
# in the child could checkpoint or unlock what the parent still uses). Kept alive here.
_ABANDONED: list[sqlite3.Connection] = []
# Connections of dead stores (and of closes during a fork), closed within the fork gate
# by the next connection opened or the next close: see ``_close_all``.
_PARKED: list[sqlite3.Connection] = []


def _encoded(key: str) -> bytes:
    """A key as stored: its UTF-8 bytes (lone surrogates too), so every str round-trips."""
    if type(key) is not str:
        raise not_a_str(key)
    return key.encode("utf-8", "surrogatepass")


def _decoded(stored: bytes) -> str:
    return stored.decode("utf-8", "surrogatepass")


def _close_all(connections: list[sqlite3.Connection]) -> None:
    """Close ``connections`` (and the parked ones) and empty the list, within the fork
    gate (``_gate``); during a fork they are parked instead: a close never waits."""
    me = _gate.try_enter()
    if me is None:
        _PARKED.extend(connections)
        connections.clear()
        return
    try:
        _close_parked()
        while connections:
            connections.pop().close()
    finally:
        _gate.leave(me)


def _close_parked() -> None:
    """Within the gate: close the parked connections (each taken once, whichever thread
    takes it)."""
    while True:
        try:
            parked = _PARKED.pop()
        except IndexError:
            return
        parked.close()


def _abandon_parked() -> None:
    """In a forked child: parked connections are the parent's (see ``_ABANDONED``)."""
    _ABANDONED.extend(_PARKED)
    _PARKED.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_abandon_parked)


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` says that another connection holds a lock (SQLITE_BUSY, or
    SQLITE_LOCKED within a process): nothing wrong, only not now."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+; the message before
    if code is not None:
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED and their extended codes
    return str(exc).startswith(("database is locked", "database table is locked"))


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class SQLite(Backend):
    """Stores every entry as a row of one SQLite database file ``path``, in WAL mode.

    Each thread of each process has its own connection (a child after ``fork()`` opens
    new ones and never touches its parent's). Writers that find the database locked wait
    up to ``timeout`` seconds, then fail with ``BackendError``. Readers never wait: the
    writes a read may do (removing the expired rows it met, recording uses for a limit)
    are tried once without waiting, and left to a later read or write when another
    connection holds the write lock. ``synchronous="NORMAL"``
    (the default) keeps every committed write across a crash of the process, and may
    lose the last ones on a power loss; ``"FULL"`` keeps them across a power loss too.

    A ``ttl`` is the row's ``deadline`` column, outside the value: an expired row is never
    returned, counted or listed. Reads delete the expired rows they meet, and every
    1,000th write removes at most 100 expired rows, so no operation scans the table for
    them; ``expire()`` removes them all. A delete of an expired row names its deadline in
    the statement, so it never removes a newer write.

    ``add`` is one ``INSERT ... ON CONFLICT`` that replaces only an expired row;
    ``modify`` (``incr``) reads and writes in one ``BEGIN IMMEDIATE`` transaction, so
    both are atomic across threads and processes.

    Keys are stored as their UTF-8 bytes (any ``str`` works, NUL and lone surrogates
    included), always as parameters, never as SQL. The file is created with mode 0o600;
    a database owned by another user is refused unless ``trust_others=True``.
    """

    accepts: ClassVar[ValueKind] = "bytes"
    supports_ttl: ClassVar[bool] = True

    path: Path = attrs.field(converter=Path)
    timeout: float = attrs.field(default=30.0, kw_only=True)
    synchronous: str = attrs.field(default="NORMAL", kw_only=True)
    trust_others: bool = attrs.field(default=False, kw_only=True)
    clock: Callable[[], float] = attrs.field(default=time.time, kw_only=True, repr=False)
    #: How long a memoize lock may be held before other callers presume its holder dead
    #: or hung and take it over.
    lock_timeout: float = attrs.field(
        default=LOCK_TIMEOUT, kw_only=True, converter=checked_lease, repr=False
    )
    _local: threading.local = attrs.field(factory=threading.local, init=False, repr=False)
    #: Changes that other connections committed, as this process's connections saw them.
    _changes: int = attrs.field(default=0, init=False, repr=False)
    #: Reads the WAL-index header (``wal_index.py``), or None: then every check asks SQLite.
    _header: Callable[[], bytes] | None = attrs.field(default=None, init=False, repr=False)
    #: The header when some connection of this process last asked SQLite for changes.
    _header_seen: bytes = attrs.field(default=b"", init=False, repr=False)
    _header_due: bool = attrs.field(default=False, init=False, repr=False)
    _mine: list[sqlite3.Connection] = attrs.field(factory=list, init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _writes: int = attrs.field(default=0, init=False, repr=False)
    _expirations: int = attrs.field(default=0, init=False, repr=False)
    # Bounds handed down by CountLimit / SizeLimit ("entries", "bytes"), and their order.
    _bounds: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)
    _eviction: str | None = attrs.field(default=None, init=False, repr=False)
    # The SQL of that order (``sqlite_eviction.py``), and whether it notes reads.
    _policy: Policy | None = attrs.field(default=None, init=False, repr=False)
    _notes_reads: bool = attrs.field(default=False, init=False, repr=False)
    _evictions: int = attrs.field(default=0, init=False, repr=False)
    #: Whether this object made sure the table of tags' tokens exists.
    _tags_made: bool = attrs.field(default=False, init=False, repr=False)
    _uses: list[bytes] = attrs.field(factory=list, init=False, repr=False)
    # The length of ``_uses`` at which a read tries to write them.
    _uses_due: int = attrs.field(factory=lambda: _USES_BATCH, init=False, repr=False)
    # Told the keys that writes of this object evicted (a Tier drops them from its front).
    _eviction_watchers: list[weakref.WeakMethod[Callable[[list[str]], None]]] = attrs.field(
        factory=list, init=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigurationError(
                f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {self.synchronous!r}"
            )
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)):
            raise ConfigurationError("timeout must be a number of seconds")
        if not 0 <= self.timeout < float("inf"):
            raise ConfigurationError("timeout must be a finite number of seconds, at least 0")
        _fork.renew_in_child(self, SQLite._renew_in_child)
        # A dead store's connections are parked, never closed by the collector: it runs
        # in any thread, at any allocation, outside the fork gate (and a function of
        # ours run there would be one more place to get wrong).
        weakref.finalize(self, _PARKED.extend, self._mine).atexit = False
        if self.path.is_dir():
            raise ConfigurationError(f"{self.path} is a folder: SQLite needs a database file")
        self._create_file()
        with self._session("create the tables") as db:
            # One statement, one snapshot: read apart, another process's creation could
            # commit between the two, and a new database looked like one of format 0.
            version, made = db.execute(
                "SELECT user_version, EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'entries')"
                " FROM pragma_user_version"
            ).fetchone()
            if version > _FORMAT or (made and version < _FORMAT):
                raise ConfigurationError(
                    f"{self.path} holds a cache of another format ({version}) than this "
                    f"pystorage's ({_FORMAT}): delete it, or open it with the version "
                    "that wrote it"
                )
            if not (made and version == _FORMAT):
                # Only a new database: the script writes (user_version), and a write at
                # every open made each reader pay a commit and, at its close, a checkpoint.
                db.executescript(_SCHEMA)

    def _create_file(self) -> None:
        """The database file, created private; an existing one must be this user's.

        No descriptor of the database is ever opened here, not even for a moment: closing
        any descriptor of a file drops every POSIX lock this process holds on it, the
        locks of its other SQLite connections included (another storage of the same file
        in this process), and a process that believes itself the file's last user then
        deletes a WAL that still holds their commits. A new database is an empty file
        made under a private name and linked into place, so its only descriptor is closed
        before any connection can see it.
        """
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not os.path.lexists(self.path):
                spare = self.path.with_name(f".{self.path.name}.{os.getpid()}.{id(self)}.new")
                os.close(os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                try:
                    os.link(spare, self.path)
                except FileExistsError:
                    pass  # another opener made it meanwhile: it is checked like any other
                finally:
                    os.unlink(spare)
        except OSError as exc:
            raise BackendError(f"cannot open the database {self.path}: {exc}") from exc
        self._check_files()

    def _check_files(self) -> None:
        """Every file SQLite reads (the database, its WAL, its shared memory, a rollback
        journal) is a regular file of this user, checked before a connection opens: a WAL
        another user planted beside the database would be replayed into it."""
        for path in (self.path, *(Path(f"{self.path}{end}") for end in _SIDE_FILES)):
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                if path == self.path:
                    raise BackendError(f"the database {self.path} was removed") from None
                continue
            except OSError as exc:
                raise BackendError(f"cannot open the database {self.path}: {exc}") from exc
            if not stat.S_ISREG(info.st_mode):
                raise ConfigurationError(f"{path} is not a regular file")
            if info.st_uid != os.geteuid() and not self.trust_others:
                raise BackendError(
                    f"{path} belongs to user {info.st_uid}, not to this one: refusing "
                    "values another user could have planted "
                    "(SQLite(..., trust_others=True) reads it)"
                )

    # -- connections ---------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        try:
            db: sqlite3.Connection = self._local.db
        except AttributeError:
            return self._connect()
        return db

    def _connect(self) -> sqlite3.Connection:
        """This thread's connection, opened now (its first use here, or after a fork)."""
        self._check_files()
        _close_parked()  # within the gate, as every caller of _db() is
        db = None
        try:
            db = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            mode = self._switch_to_wal(db)
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            # A first read makes the WAL index (the -shm file) of a new database.
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            if db is not None:  # closed here, within the gate, not by the collector
                db.close()
            raise BackendError(f"cannot open the database {self.path}: {exc}") from exc
        # Mapped at the first check for changes (only a Tier asks), again after each new
        # connection: the -shm file of the last one may be gone.
        self._header, self._header_due = None, mode == "wal"
        self._local.db = db
        with self._lock:
            self._mine.append(db)
        return db

    def _switch_to_wal(self, db: sqlite3.Connection) -> str:
        """``PRAGMA journal_mode=WAL``, tried again within ``timeout``: while another
        process switches a new database, the switch answers "database is locked" at once,
        without waiting for the busy timeout (6 processes opening a new file together)."""
        for pause in pauses(self.timeout):
            try:
                (mode,) = db.execute("PRAGMA journal_mode=WAL").fetchone()
                return str(mode)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
            time.sleep(pause)
        (mode,) = db.execute("PRAGMA journal_mode=WAL").fetchone()  # the last try's error
        return str(mode)

    def version(self) -> int:
        """A number that grows when another connection (of any process) committed since
        this thread's connection last asked: ``PRAGMA data_version``, which takes no lock
        (a memory ``Tier`` asks it before each read). It is asked only when the WAL-index
        header changed since a connection of this process last asked: while nobody
        commits, a check is one read of shared memory (``wal_index.py``)."""
        header = self._header  # set only while a connection of this layer is open
        if header is not None:
            # Read before asking: a commit after this read changes the header again.
            seen = header()
            if seen == self._header_seen:
                return self._changes
        with _gate.inside():
            db = self._db()
            if header is None and self._header_due:
                self._header_due = False
                header = self._header = header_reader(
                    f"{self.path}-shm", trust_others=self.trust_others
                )
                if header is not None:
                    seen = header()
            try:
                (now,) = db.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error as exc:
                raise self._error("check for changes", exc) from exc
        local = self._local
        if getattr(local, "data_version", None) != now:  # a new connection may be late too
            local.data_version = now
            with self._lock:
                self._changes += 1
        if header is not None:
            self._header_seen = seen
        return self._changes

    def _renew_in_child(self) -> None:
        """First thing in a forked child: leave the parent's connections alone (new ones
        open on first use), and replace a lock some thread of the parent may have held."""
        _ABANDONED.extend(self._mine)
        self._mine.clear()  # in place: the finalizer holds this list
        self._header = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._uses = []
        self._uses_due = _USES_BATCH

    @contextmanager
    def _session(self, action: str) -> Iterator[sqlite3.Connection]:
        """This thread's connection, within the fork gate (``pystorage._gate``): every
        use of SQLite is, so that a fork never copies a mutex of SQLite's held."""
        me = _gate.enter()
        try:
            yield self._db()
        except sqlite3.Error as exc:
            raise self._error(action, exc) from exc
        finally:
            _gate.leave(me)

    def _error(self, action: str, exc: sqlite3.Error) -> BackendError:
        return BackendError(f"SQLite {self.path}: cannot {action}: {exc}")

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is committed, or none of it. Reads noted for
        eviction by use are written first: they came before this write, so they must not
        make its entry the least recently used (and evict it as it is written). Once it
        is committed, the watchers of evictions are told the keys it evicted."""
        with self._session(action) as db:
            db.execute("BEGIN IMMEDIATE")
            evicted: list[bytes] = []
            self._local.evicted = evicted
            try:
                self._write_uses(db)
                if self._policy is not None and self._policy.guards:
                    self._policy.trimming(db, True)  # this transaction keeps the bound
                yield db
                if self._policy is not None and self._policy.guards:
                    self._policy.trimming(db, False)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        if evicted:
            names = [_decoded(stored) for stored in evicted]
            for watching in self._eviction_watchers:
                watcher = watching()
                if watcher is not None:  # else its stack is gone
                    watcher(names)

    @contextmanager
    def _transaction_now(self, action: str) -> Iterator[sqlite3.Connection | None]:
        """A write transaction for the book-keeping of a read: it yields None at once,
        having written nothing, when another connection holds the write lock, so that a
        read never waits for a writer (nor fails because of one)."""
        with self._session(action) as db:
            db.execute("PRAGMA busy_timeout = 0")
            try:
                db.execute("BEGIN IMMEDIATE")
                began = True
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                began = False
            finally:
                db.execute(f"PRAGMA busy_timeout = {round(self.timeout * 1000)}")
            if not began:
                yield None
                return
            try:
                self._write_uses(db)
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- the protocol --------------------------------------------------------------------

    def get(self, key: str) -> Any:
        # The hot path, written out: no context manager, one statement.
        stored = _encoded(key)
        me = _gate.enter()
        try:
            row = self._db().execute(_SELECT, (stored,)).fetchone()
        except sqlite3.Error as exc:
            raise self._error(f"read {key!r}", exc) from exc
        finally:
            _gate.leave(me)
        if row is None:
            raise KeyError(key)
        value = row[0] if row[1] is None else self._live(key, stored, row)[0]
        if self._notes_reads:
            self._record_use([stored])
        return value

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        stored = _encoded(key)
        with self._session(f"read {key!r}") as db:
            row = db.execute(_SELECT, (stored,)).fetchone()
        if row is None:
            raise KeyError(key)
        found = self._live(key, stored, row)
        if self._notes_reads:
            self._record_use([stored])
        return found

    def _live(self, key: str, stored: bytes, row: tuple[Any, Any]) -> tuple[Any, float | None]:
        """The value of a row and the seconds it has left; KeyError if it has expired."""
        value, deadline = row
        if deadline is None:
            return value, None
        left = deadline - self.clock()
        if left <= 0:
            self._remove_expired([(stored, deadline)])
            raise KeyError(key)
        return value, left

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        row = (_encoded(key), value, None if ttl is None else self.clock() + ttl)
        policy = self._policy
        if policy is not None:
            self._check_size(key, value)
            if not policy.guards or not self._written_within(row, key):
                with self._transaction(f"write {key!r}") as db:
                    db.execute(_INSERT, row)
                    self._trim(db)
            self._wrote(1)
            return
        me = _gate.enter()
        try:
            self._db().execute(_INSERT, row)
        except sqlite3.Error as exc:
            raise self._error(f"write {key!r}", exc) from exc
        finally:
            _gate.leave(me)
        self._wrote(1)

    def _written_within(self, row: tuple[bytes, Any, float | None], key: str) -> bool:
        """Write ``row`` in one statement if that keeps the database within its bounds
        (the books' triggers refuse it otherwise: nothing is written); whether it was."""
        me = _gate.enter()
        try:
            self._db().execute(_INSERT, row)
        except sqlite3.IntegrityError as exc:
            if str(exc) == BEYOND:
                return False
            raise self._error(f"write {key!r}", exc) from exc
        except sqlite3.Error as exc:
            raise self._error(f"write {key!r}", exc) from exc
        finally:
            _gate.leave(me)
        return True

    def delete(self, key: str) -> None:
        with self._session(f"delete {key!r}") as db:
            deleted = db.execute(
                "DELETE FROM entries WHERE key = ? AND (deadline IS NULL OR deadline > ?)",
                (_encoded(key), self.clock()),
            ).rowcount
        if not deleted:
            raise KeyError(key)

    def contains(self, key: str) -> bool:
        with self._session(f"check {key!r}") as db:
            row = db.execute(
                "SELECT 1 FROM entries WHERE key = ? AND (deadline IS NULL OR deadline > ?)",
                (_encoded(key), self.clock()),
            ).fetchone()
        return row is not None

    def keys(self) -> Iterator[str]:
        with self._session("list the keys") as db:
            rows = db.execute(
                "SELECT key FROM entries WHERE deadline IS NULL OR deadline > ?",
                (self.clock(),),
            ).fetchall()
        return (_decoded(stored) for (stored,) in rows)

    def count(self) -> int:
        with self._session("count the entries") as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM entries WHERE deadline IS NULL OR deadline > ?",
                (self.clock(),),
            ).fetchone()
        return int(count)

    def clear(self) -> None:
        with self._session("clear") as db:
            db.execute("DELETE FROM entries")

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return {key: value for key, (value, _) in self.get_many_with_ttl(keys).items()}

    def peek_many(self, keys: Iterable[str]) -> dict[str, Any]:
        wanted = {_encoded(key): key for key in keys}
        return {key: value for key, (value, _) in self._read_many(wanted).items()}

    def keys_by_age(self) -> list[str]:
        return [key for key, _ in self.sizes_by_age()]

    def sizes_by_age(self) -> list[tuple[str, int]]:
        # By use where the books of a limit are kept; else in the order rows were made.
        order = self._policy.order if self._policy is not None else "rowid"
        with self._session("list the keys") as db:
            rows = db.execute(
                "SELECT key, length(value) FROM entries WHERE deadline IS NULL OR deadline > ? "
                f"ORDER BY {order}",
                (self.clock(),),
            ).fetchall()
        return [(_decoded(stored), size) for stored, size in rows]

    def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        wanted = {_encoded(key): key for key in keys}
        found = self._read_many(wanted)
        if found and self._notes_reads:
            self._record_use([name for name, key in wanted.items() if key in found])
        return found

    def _read_many(self, wanted: dict[bytes, str]) -> dict[str, tuple[Any, float | None]]:
        """The live values of the keys ``wanted`` (stored form: key) that exist, with
        their time left; not a use."""
        stored = list(wanted)
        found: dict[str, tuple[Any, float | None]] = {}
        expired = []
        now = self.clock()
        with self._session(f"read {len(stored)} keys") as db:
            for start in range(0, len(stored), _CHUNK):
                chunk = stored[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for name, value, deadline in db.execute(
                    f"SELECT key, value, deadline FROM entries WHERE key IN ({marks})", chunk
                ):
                    if deadline is None:
                        found[wanted[name]] = (value, None)
                    elif deadline > now:
                        found[wanted[name]] = (value, deadline - now)
                    else:
                        expired.append((name, deadline))
        if expired:
            self._remove_expired(expired)
        return found

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        deadline = None if ttl is None else self.clock() + ttl
        rows = [(_encoded(key), value, deadline) for key, value in items.items()]
        if "bytes" in self._bounds:
            for key, value in items.items():
                self._check_size(key, value)
        with self._transaction(f"write {len(rows)} keys") as db:
            db.executemany(_INSERT, rows)
            if self._bounds:
                self._trim(db)
        self._wrote(len(rows))

    def delete_many(self, keys: Iterable[str]) -> None:
        rows = [(_encoded(key),) for key in keys]
        with self._transaction(f"delete {len(rows)} keys") as db:
            db.executemany("DELETE FROM entries WHERE key = ?", rows)

    def tag_tokens(self, tags: Sequence[str], create: bool) -> dict[str, str]:
        wanted = {_encoded(tag): tag for tag in tags}
        found = self._read_tokens(wanted)
        if create and len(found) < len(wanted):
            # DO NOTHING: of writers that race to give a tag its token, the first wins.
            rows = [(name, new_token()) for name, tag in wanted.items() if tag not in found]
            with self._tags_session("give tags their tokens") as db:
                db.executemany(_NEW_TAG, rows)
            found = self._read_tokens(wanted)
        return found

    def _read_tokens(self, wanted: dict[bytes, str]) -> dict[str, str]:
        names = list(wanted)
        found = {}
        me = _gate.enter()
        try:
            db = self._db()
            for start in range(0, len(names), _CHUNK):
                chunk = names[start : start + _CHUNK]
                for name, token in db.execute(_select_tokens(len(chunk)), chunk):
                    found[wanted[name]] = token
        except sqlite3.OperationalError as exc:
            if str(exc).startswith("no such table"):
                return {}  # no tag was ever written here
            raise self._error(f"read the tokens of {len(names)} tags", exc) from exc
        except sqlite3.Error as exc:
            raise self._error(f"read the tokens of {len(names)} tags", exc) from exc
        finally:
            _gate.leave(me)
        return found

    def renew_tag(self, tag: str) -> None:
        with self._tags_session(f"invalidate the tag {tag!r}") as db:
            db.execute(_RENEW_TAG, (_encoded(tag), new_token()))

    @contextmanager
    def _tags_session(self, action: str) -> Iterator[sqlite3.Connection]:
        """A session that writes tags' tokens: their table, beside the entries, is made
        by the first write of a token (a database without tags never has it)."""
        with self._session(action) as db:
            if not self._tags_made:
                db.execute(_TAGS_SCHEMA)
                self._tags_made = True
            yield db

    def expire(self) -> int:
        with self._session("remove expired entries") as db:
            removed = db.execute(
                "DELETE FROM entries WHERE deadline <= ?", (self.clock(),)
            ).rowcount
        self._count_expired(removed)
        return removed

    def counters(self) -> dict[str, int]:
        # Named once there is something to count: an ``Expiry`` above names it always.
        counts = {"expirations": self._expirations} if self._expirations else {}
        if self._bounds:
            counts["evictions"] = self._evictions
        return counts

    def gauges(self) -> dict[str, int]:
        # The books of a bound tally the bytes in each write's transaction; without a
        # bound they would be a scan.
        policy = self._policy
        if policy is None:
            return {}
        with self._session("read the totals") as db:
            _, size = policy.totals(db)
        return {"bytes": size}

    def close(self) -> None:
        """Close this process's connections; a later call opens new ones. Reads not yet
        recorded for eviction by use are written if the database is free, and forgotten if
        another connection holds the write lock (the order of use lags by them)."""
        if self._uses:
            with self._transaction_now("record uses"):
                pass
        with self._lock:
            self._local = threading.local()
            self._header = None
            mine = self._mine[:]
            self._mine.clear()
        _close_all(mine)

    # -- bounds --------------------------------------------------------------------------

    def __repr__(self) -> str:
        """The fields, then the bounds that limits above handed down to SQL: those limits
        left the stack, and this is the only place that still shows them."""
        fields = [
            f"{field.name}={getattr(self, field.name)!r}"
            for field in attrs.fields(type(self))
            if field.repr
        ]
        for measure, name in (("entries", "limit"), ("bytes", "max_bytes")):
            if measure in self._bounds:
                fields.append(f"{name}={self._bounds[measure]!r}")
        if self._eviction is not None:
            fields.append(f"eviction={self._eviction!r}")
        return f"{type(self).__name__}({', '.join(fields)})"

    @property
    def removes_entries(self) -> bool:  # type: ignore[override]
        """Whether this database evicts: a ``Tier`` linked above it then is refused (one
        linked before it took a bound watches its evictions instead)."""
        return bool(self._bounds)

    def watch_evictions(self, watcher: Callable[[list[str]], None]) -> None:
        """Call ``watcher`` with the keys that each write of this object evicted to keep a
        bound, once the write is committed: a ``Tier`` above drops them from its front,
        so it never serves what the database evicted. Evictions by writes of other
        ``SQLite`` objects (other processes) are not told here: to this one they are
        writes of another process, as any other. ``watcher`` is a bound method, held
        weakly: a stack dropped is no longer told."""
        watching = weakref.WeakMethod(watcher)
        if watching not in self._eviction_watchers:
            self._eviction_watchers.append(watching)

    def take_bound(self, measure: Literal["entries", "bytes"], bound: int, eviction: str) -> bool:
        """Enforce the bound of a ``CountLimit``/``SizeLimit`` in SQL: each write and its
        evictions are one transaction, so the bound holds across processes (those that
        write through a stack with the same limit). Every ``eviction`` is kept here:
        ``"used"``, ``"stored"`` and ``"tinylfu"``, each by the books and SQL of
        ``sqlite_eviction.py``."""
        if self._eviction not in (None, eviction):
            raise ConfigurationError(
                "two limits over one SQLite must evict in the same order "
                f"({self._eviction!r} and {eviction!r})"
            )
        bounds = {**self._bounds, measure: min(bound, self._bounds.get(measure, bound))}
        # A frequency policy sizes its sketch and aging by the entries it will hold.
        policy = policy_for(eviction, bounds.get("entries", _GUESSED_ENTRIES))
        with self._session("keep the books of a limit") as db:
            # Made (and filled, one pass over the entries) once; later opens read the schema.
            keep_books(db, policy)
        self._bounds, self._eviction, self._policy = bounds, eviction, policy
        self._notes_reads = policy.notes_reads
        # A smaller bound than the database was kept to: trim it now, not at a write.
        with self._transaction("trim to the limit") as db:
            policy.keep(db, bounds)
            self._trim(db)
        return True

    def _check_size(self, key: str, value: bytes) -> None:
        most = self._bounds.get("bytes")
        if most is not None and len(value) > most:
            raise too_large(key, len(value), most, "bytes")

    def _trim(self, db: sqlite3.Connection) -> None:
        """Within a write transaction: beyond the bounds, remove the expired rows, then
        evict in the policy's order."""
        policy = self._policy
        assert policy is not None  # a bound was taken
        most = (self._bounds.get("entries", _UNBOUNDED), self._bounds.get("bytes", _UNBOUNDED))
        count, size = policy.totals(db)
        if count <= most[0] and size <= most[1]:
            return
        expired = db.execute("DELETE FROM entries WHERE deadline <= ?", (self.clock(),)).rowcount
        self._count_expired(expired)
        count, size = policy.totals(db)
        victims = policy.evict(db, count, size, most)
        self._local.evicted.extend(victims)
        with self._lock:
            self._evictions += len(victims)

    def _record_use(self, stored: list[bytes]) -> None:
        """Note reads for eviction by use. They are written in batches, first in the next write
        transaction of this object or every ``_USES_BATCH`` reads: a write per read would
        cost a read 6-10 times more (measured here), and the order may lag that much.

        The read that fills a batch tries to write it without waiting; while another
        connection holds the write lock, the uses are kept for a later try (the next
        write's, or a read's ``_USES_BATCH`` reads later), the last read of at most
        ``_USES_KEPT`` keys."""
        uses = self._uses
        uses.extend(stored)
        if len(uses) < self._uses_due:
            return
        with self._transaction_now("record uses") as db:
            if db is not None:
                return  # the transaction wrote the uses noted first
        with self._lock:
            last_first = list(dict.fromkeys(reversed(self._uses)))[:_USES_KEPT]
            self._uses = last_first[::-1]
            self._uses_due = len(self._uses) + _USES_BATCH

    def _write_uses(self, db: sqlite3.Connection) -> None:
        """Within a write transaction: make the rows read since the last call the most
        recently used, in the order of their last read."""
        with self._lock:
            uses, self._uses = self._uses, []
            self._uses_due = _USES_BATCH
        if uses:
            assert self._policy is not None  # only a policy notes reads
            self._policy.record(db, uses)

    # -- atomic operations: one statement, or one write transaction ----------------------

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        now = self.clock()
        row = (_encoded(key), value, None if ttl is None else now + ttl, now)
        if not self._bounds:
            with self._session(f"add {key!r}") as db:
                stored = db.execute(_ADD, row).rowcount > 0
        else:
            self._check_size(key, value)
            with self._transaction(f"add {key!r}") as db:
                stored = db.execute(_ADD, row).rowcount > 0
                if stored:
                    self._trim(db)
        if stored:
            self._wrote(1)
        return stored

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        stored = _encoded(key)
        # BEGIN IMMEDIATE takes the write lock before the read: no other writer of any
        # process can change the row between the two.
        with self._transaction(f"modify {key!r}") as db:
            row = db.execute(_SELECT, (stored,)).fetchone()
            now = self.clock()
            absent = row is None or (row[1] is not None and row[1] <= now)
            with _gate.outside():  # the caller's code: a fork must not wait for it
                value = change(ABSENT if absent else row[0])
            self._check_size(key, value)
            if absent:
                db.execute(_INSERT, (stored, value, None if ttl is None else now + ttl))
            else:
                db.execute("UPDATE entries SET value = ? WHERE key = ?", (value, stored))
            if self._bounds:
                self._trim(db)
        self._wrote(1)
        return value

    # -- memoize locks, across processes --------------------------------------------------

    def key_lock(self, key: str) -> AbstractContextManager[Any]:
        """A lease across processes: a row of the ``leases`` table (see ``_LEASES``)."""
        _encoded(key)  # a key that is no str fails here, as in every operation
        return Lease(self, key)

    def take_lease(self, key: str, token: str, seconds: float) -> str:
        """One try to take the lease of ``key`` (see ``pystorage.layers.leases``): one
        statement, atomic across processes; its deadline is in real time (``time.time``),
        whatever ``clock`` the entries' deadlines follow."""
        name, now = _encoded(key), time.time()
        with self._session(f"take the lock of key {key!r}") as db:
            try:
                taken = db.execute(_TAKE_LEASE, (name, token, now + seconds, now)).rowcount
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                db.execute(_LEASES)  # the first lock of this database
                taken = db.execute(_TAKE_LEASE, (name, token, now + seconds, now)).rowcount
            if taken:
                return token
            holder = db.execute(_LEASE_HOLDER, (name,)).fetchone()
        return "" if holder is None else str(holder[0])

    def end_lease(self, key: str, token: str) -> None:
        """Give the lease of ``key`` back if ``token`` still holds it."""
        with self._session(f"release the lock of key {key!r}") as db:
            try:
                db.execute(_END_LEASE, (_encoded(key), token))
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):  # no lease was ever taken here
                    raise

    # -- expiry --------------------------------------------------------------------------

    def _remove_expired(self, rows: list[tuple[bytes, float]]) -> None:
        """Delete those rows if they still hold the deadline judged: a row rewritten since
        has another deadline (or none), and stays. A read calls this: while another
        connection holds the write lock, the rows stay for a later read, write or sweep
        (no read returns them meanwhile)."""
        with self._transaction_now("remove expired entries") as db:
            if db is None:
                return
            removed = 0
            for stored, deadline in rows:
                removed += db.execute(
                    "DELETE FROM entries WHERE key = ? AND deadline = ?", (stored, deadline)
                ).rowcount
        self._count_expired(removed)

    def _wrote(self, count: int) -> None:
        """Every ``_SWEEP_EVERY`` writes, remove a bounded batch of expired rows."""
        # No lock: a count lost to a race only moves the next sweep a little.
        self._writes += count
        if self._writes >= _SWEEP_EVERY:
            self._writes = 0
            with self._session("remove expired entries") as db:
                removed = db.execute(
                    "DELETE FROM entries WHERE rowid IN (SELECT rowid FROM entries "
                    "WHERE deadline <= ? LIMIT ?)",
                    (self.clock(), _SWEEP_BATCH),
                ).rowcount
            self._count_expired(removed)

    def _count_expired(self, removed: int) -> None:
        if removed:
            with self._lock:
                self._expirations += removed

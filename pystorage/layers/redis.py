"""Redis: values in a Redis server or cluster, under a key prefix."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Literal

import attrs

from pystorage.errors import BackendError, ConfigurationError, not_a_str
from pystorage.layers.base import ABSENT, Backend, ValueKind, new_token
from pystorage.layers.defaults import DEFAULT_PREFIX as DEFAULT_PREFIX
from pystorage.layers.leases import LOCK_TIMEOUT, Lease, checked_lease
from pystorage.layers.limit import too_large

_SCAN_BATCH = 1000
#: Ends every prefix, so that a prefix never covers another one's keys by accident.
SEPARATOR = ":"
#: A byte that no key's UTF-8 holds: the names of things beside the entries (memoize's
#: locks) hold it, so that they are never entries of any storage, whatever its prefix.
_ASIDE = b"\xff"
# Deletes those of its keys that hold strings, and only those: a key of another type is
# never an entry. Atomic, so a key cannot change type between the check and the delete.
# A value and the milliseconds it has left, read at one instant (-1: no expiry).
# With KEYS[2] and KEYS[3] (the books' order and totals), the read is a use.
_GET_WITH_TTL = """
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then
    return nil
end
if KEYS[2] then
    redis.call('ZADD', KEYS[2], 'XX', redis.call('HINCRBY', KEYS[3], 'clock', 1), KEYS[1])
end
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
"""
_DELETE_STRINGS = """
local deleted = 0
for _, name in ipairs(KEYS) do
    if redis.call('TYPE', name).ok == 'string' then
        deleted = deleted + redis.call('DEL', name)
    end
end
return deleted
"""


# -- a bound kept by the server (take_bound) -----------------------------------------------
# Four records beside the entries (their names hold _ASIDE: never entries) keep the books
# of every entry of a prefix: "order", a sorted set of the entries' names by their last
# write (or use: eviction="used"); "sizes", a hash of each one's bytes; "totals", a hash
# with the total of those bytes, the clock that orders writes and uses, and "ready" once
# the entries written before the books were entered; "deadlines", a sorted set of the
# entries' deadlines (server milliseconds). Each script below is one round trip, and
# keeps the books and the entries in step atomically.
_BOOKS = r"""
local order, sizes, totals, deadlines = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function now()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function forget(name)
    local size = redis.call('HGET', sizes, name)
    if size then
        -- 0 - size, not -size: Lua's -0 goes to Redis as "-0", which HINCRBY refuses
        -- (an empty value could never be deleted, evicted or cleared).
        redis.call('HINCRBY', totals, 'bytes', 0 - tonumber(size))
        redis.call('HDEL', sizes, name)
    end
    redis.call('ZREM', order, name)
    redis.call('ZREM', deadlines, name)
end
local function enter(name, size, px, keep)
    local old = redis.call('HGET', sizes, name)
    redis.call('HSET', sizes, name, size)
    redis.call('HINCRBY', totals, 'bytes', size - tonumber(old or '0'))
    redis.call('ZADD', order, redis.call('HINCRBY', totals, 'clock', 1), name)
    if px > 0 then
        redis.call('ZADD', deadlines, now() + px, name)
    elseif not keep then
        redis.call('ZREM', deadlines, name)
    end
end
-- Evict until within the bounds (-1: none): expired entries first (their books are
-- stale: Redis removed them), then the least recent. Returns the live entries evicted.
local function trim(most_entries, most_bytes)
    local evicted = 0
    while true do
        local count = redis.call('ZCARD', order)
        local size = tonumber(redis.call('HGET', totals, 'bytes') or '0')
        if (most_entries < 0 or count <= most_entries)
            and (most_bytes < 0 or size <= most_bytes) then
            return evicted
        end
        local victim = redis.call('ZRANGEBYSCORE', deadlines, '-inf', now(), 'LIMIT', 0, 1)[1]
        if not victim then
            victim = redis.call('ZRANGE', order, 0, 0)[1]
            if not victim then return evicted end
            if redis.call('TYPE', victim).ok == 'string' then
                evicted = evicted + redis.call('DEL', victim)
            end
        elseif redis.call('TYPE', victim).ok == 'string' then
            redis.call('DEL', victim)
        end
        forget(victim)
    end
end
"""
# KEYS: the books, then the names to write; ARGV: the bounds, PX (0: none), the mode
# ("set", "add": only where no live key is; "keep": the deadline stays), the values.
# Returns the entries evicted, -1 if the books are not ready, -2 if "add" found the key.
_WRITE = (
    _BOOKS
    + r"""
if redis.call('HEXISTS', totals, 'ready') == 0 then return -1 end
local px, mode = tonumber(ARGV[3]), ARGV[4]
for i = 5, #KEYS do
    local name, value = KEYS[i], ARGV[i]
    if mode == 'add' and redis.call('EXISTS', name) == 1 then return -2 end
    if mode == 'keep' then
        redis.call('SET', name, value, 'KEEPTTL')
    elseif px > 0 then
        redis.call('SET', name, value, 'PX', px)
    else
        redis.call('SET', name, value)
    end
    enter(name, #value, px, mode == 'keep')
end
return trim(tonumber(ARGV[1]), tonumber(ARGV[2]))
"""
)
# KEYS: the books, then names: deletes those that hold strings, forgets them all.
_DELETE_BOOKED = (
    _BOOKS
    + r"""
local deleted = 0
for i = 5, #KEYS do
    if redis.call('TYPE', KEYS[i]).ok == 'string' then
        deleted = deleted + redis.call('DEL', KEYS[i])
    end
    forget(KEYS[i])
end
return deleted
"""
)
# KEYS: the books: deletes (and forgets) up to ARGV[1] of the entries they list.
_DROP_BOOKED = (
    _BOOKS
    + r"""
local names = redis.call('ZRANGE', order, 0, tonumber(ARGV[1]) - 1)
for _, name in ipairs(names) do
    if redis.call('TYPE', name).ok == 'string' then redis.call('DEL', name) end
    forget(name)
end
return #names
"""
)
# KEYS: the books, then names found by a SCAN: enters those that are strings and not in
# the books yet as the least recent entries (the entries written before the books).
_ENTER_FOUND = (
    _BOOKS
    + r"""
for i = 5, #KEYS do
    local name = KEYS[i]
    if redis.call('TYPE', name).ok == 'string' and not redis.call('ZSCORE', order, name) then
        local size = redis.call('STRLEN', name)
        redis.call('HSET', sizes, name, size)
        redis.call('HINCRBY', totals, 'bytes', size)
        redis.call('ZADD', order, 0, name)
        local left = redis.call('PTTL', name)
        if left > 0 then redis.call('ZADD', deadlines, now() + left, name) end
    end
end
if ARGV[1] == 'last' then redis.call('HSET', totals, 'ready', 1) end
return 0
"""
)
# KEYS: order, totals, then names; the values of those names that hold strings, each
# recorded as used (eviction="used").
_GET_USED = r"""
local found = {}
local clock = redis.call('HINCRBY', KEYS[2], 'clock', 1)
for i = 3, #KEYS do
    local value = redis.pcall('GET', KEYS[i])
    if type(value) == 'string' then
        redis.call('ZADD', KEYS[1], 'XX', clock, KEYS[i])
        found[i - 2] = value
    else
        found[i - 2] = false
    end
end
return found
"""


@attrs.frozen
class _Script:
    """A Lua script, run by its SHA1 (EVALSHA) once the server has it."""

    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _hash(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


# The memoize lock of a key: taken if free (or lapsed: Redis dropped it at its PX), else
# the holder's token; given back only by the token that holds it.
_TAKING = _Script(
    "if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return ARGV[1] end "
    "return redis.call('get', KEYS[1]) or ''"
)
_GIVING_BACK = _Script(
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
_WRITING = _Script(_WRITE)
_DELETING = _Script(_DELETE_BOOKED)
_DROPPING = _Script(_DROP_BOOKED)
_ENTERING = _Script(_ENTER_FOUND)
_READING = _Script(_GET_USED)
_UNINDEXED = -1
_PRESENT = -2
_NO_BOUND = -1


def _glob_escape(text: bytes) -> bytes:
    """``text`` as a literal in a Redis MATCH pattern."""
    for special in (b"\\", b"*", b"?", b"[", b"]"):
        text = text.replace(special, b"\\" + special)
    return text


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Redis(Backend):
    """Stores each key as one Redis string ``<prefix><key>``; expires entries natively.

    Give a client (``redis.Redis`` or ``redis.cluster.RedisCluster``) or a ``url``
    (``redis://host:port/db``, ``rediss://`` for TLS). The entries of a storage are the
    string keys named ``<prefix><UTF-8 of a key>``: keys of other Redis types, names
    that are not UTF-8 after the prefix, and memoize's locks are never entries. ``len``,
    iteration and ``clear`` SCAN that prefix (``TYPE string``), never ``KEYS`` or
    ``FLUSHDB``. ``prefix`` (default ``"pystorage:"``) ends with ``":"``; ``""`` makes
    every string key of the database an entry, and needs ``whole_database=True``.
    Batches are one round trip (MGET, MSET or a pipeline), split by slot on a cluster.
    A TTL is given to Redis (SET PX), not tracked here. ``add`` is ``SET NX``;
    ``modify`` (``incr``) is a WATCH/MULTI/EXEC transaction, retried when another client
    wrote the key meanwhile (on a cluster too: one key is one slot). Connection failures raise
    ``BackendError`` naming the server; the client reconnects by itself.
    """

    accepts: ClassVar[ValueKind] = "bytes"
    supports_ttl: ClassVar[bool] = True

    client: Any = attrs.field(default=None, repr=False)
    url: str | None = attrs.field(default=None, repr=False)  # may hold a password
    prefix: str = DEFAULT_PREFIX
    #: How long a memoize lock may be held before Redis frees it (a crashed holder).
    lock_timeout: float = attrs.field(default=LOCK_TIMEOUT, converter=checked_lease)
    #: With ``prefix=""``: yes, every string key of this database is an entry of this
    #: storage, and ``clear()`` deletes them all.
    whole_database: bool = attrs.field(default=False, kw_only=True)
    #: In an ``AsyncStorage``: how long a task waits for a free connection of the
    #: clients PyStorage makes when all ``max_connections`` are in use, before a
    #: ``BackendError`` (None: the ``timeout=`` of a redis:// URL, else 20 seconds).
    pool_timeout: float | None = attrs.field(default=None, kw_only=True)
    #: In an ``AsyncStorage``: the commands that the tasks of an event loop issue in one
    #: tick of the loop go to the server as one pipeline (autopipelining, see
    #: docs/async.md). False sends each command on a connection of its own, as
    #: redis.asyncio does. A sync storage sends each call's commands at once either way.
    autopipeline: bool = attrs.field(default=True, kw_only=True)
    #: Whether this object made its client (and closes it): from ``url``, or given a
    #: client made for it (the async twin of a Redis).
    owned: bool = attrs.field(default=False, kw_only=True, repr=False)
    _cluster: bool = attrs.field(init=False, default=False, repr=False)
    _decodes: bool = attrs.field(init=False, default=True, repr=False)
    _raw_prefix: bytes = attrs.field(init=False, repr=False)
    _endpoint: str = attrs.field(init=False, repr=False)
    _errors: tuple[type[Exception], ...] = attrs.field(init=False, repr=False)
    _watch_error: type[Exception] = attrs.field(init=False, repr=False)
    _no_script: type[Exception] = attrs.field(init=False, repr=False)
    # The bounds handed down by CountLimit / SizeLimit ("entries", "bytes"), their order,
    # whether a read is a use, and the names of the books that keep them.
    _bounds: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)
    _eviction: str | None = attrs.field(default=None, init=False, repr=False)
    _touches: bool = attrs.field(default=False, init=False, repr=False)
    # A limit whose eviction this server cannot keep (bound_per_process says so).
    _untaken: str | None = attrs.field(default=None, init=False, repr=False)
    _books: list[bytes] = attrs.field(factory=list, init=False, repr=False)
    _evictions: int = attrs.field(default=0, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        try:
            import redis
            import redis.cluster
        except ImportError as exc:
            raise ImportError(
                "Redis needs redis-py: pip install 'pystorage-layers[redis]'"
            ) from exc
        _check_prefix(self.prefix, self.whole_database)  # before a client is made
        if self.client is None and self.url is None:
            raise ConfigurationError("Redis needs a client= or a url=")
        if self.client is not None and self.url is not None:
            raise ConfigurationError("give Redis a client= or a url=, not both")
        if self.url is not None:
            self.client = redis.Redis.from_url(self.url)
            self.owned = True
        if self.pool_timeout is not None and not 0 < self.pool_timeout < float("inf"):
            raise ConfigurationError(
                "pool_timeout must be a finite positive number of seconds, "
                f"not {self.pool_timeout!r}"
            )
        if not isinstance(self.autopipeline, bool):
            raise ConfigurationError(
                f"autopipeline must be True or False, not {self.autopipeline!r}"
            )
        # The async twin's clients, one per event loop, are made after a template.
        probe = (
            getattr(self.client, "template", self.client)
            if _is_from(self.client, "pystorage.aio.clients", "LoopClients")
            else self.client
        )
        self._cluster = isinstance(probe, redis.cluster.RedisCluster) or (
            # The cluster client of redis.asyncio (or a subclass), for the async twin.
            _is_from(probe, "redis.asyncio.cluster", "RedisCluster")
        )
        self._decodes = _decodes_responses(probe)
        self._raw_prefix = self.prefix.encode("utf-8", "surrogatepass")
        self._endpoint = _describe(probe)  # never the URL: it may hold a password
        # A cluster with no reachable node raises RedisClusterException, not a RedisError.
        self._errors = (redis.RedisError, redis.exceptions.RedisClusterException)
        self._watch_error = redis.WatchError
        self._no_script = redis.exceptions.NoScriptError
        self._books = [
            self._raw_prefix + _ASIDE + kind for kind in (b"order", b"sizes", b"totals", b"ends")
        ]

    # -- keys --------------------------------------------------------------------------

    @property
    def client_is_cluster(self) -> bool:
        """Whether the client is a Redis Cluster's."""
        return self._cluster

    @property
    def client_is_async(self) -> bool:
        """Whether the client is one of ``redis.asyncio`` (for an ``AsyncStorage`` only)."""
        return any(
            kind.__module__.startswith("redis.asyncio.") for kind in type(self.client).__mro__
        )

    def connection_wait(self) -> float:
        """How long an async task waits for a free connection (see ``pool_timeout``)."""
        if self.pool_timeout is not None:
            return self.pool_timeout
        pool = getattr(self.client, "connection_pool", None)
        given = pool.connection_kwargs.get("timeout") if pool is not None else None
        return float(given) if isinstance(given, (int, float)) and given > 0 else 20.0

    def _name(self, key: str) -> bytes:
        if type(key) is not str:
            raise not_a_str(key)
        return self._raw_prefix + key.encode("utf-8", "surrogatepass")

    def _aside(self, kind: bytes, key: str) -> bytes:
        """The name of a ``kind`` of record about ``key`` that is not an entry."""
        if type(key) is not str:
            raise not_a_str(key)
        return self._raw_prefix + _ASIDE + kind + b":" + key.encode("utf-8", "surrogatepass")

    def _fail(self, action: str, exc: Exception) -> BackendError:
        return BackendError(f"Redis at {self._endpoint}: cannot {action}: {exc}")

    # -- a bound kept by the server ------------------------------------------------------

    @property
    def removes_entries(self) -> bool:  # type: ignore[override]
        """Whether this storage evicts: a ``Tier`` cannot sit above one that does."""
        return bool(self._bounds)

    @property
    def bounds(self) -> dict[str, int]:
        """The bounds this storage keeps ("entries", "bytes"), and (``eviction``) in
        which order it evicts."""
        return dict(self._bounds)

    @property
    def eviction(self) -> str | None:
        return self._eviction

    def take_bound(self, measure: Literal["entries", "bytes"], bound: int, eviction: str) -> bool:
        """Keep the bound of a ``CountLimit``/``SizeLimit`` in the server: each write, its
        books and its evictions are one script, so the bound holds across processes (those
        that write the prefix through a stack with the same limit). Not on a cluster: one
        index would pin every key to one slot (``bound_per_process`` says so)."""
        if self._cluster:
            return False
        if eviction == "tinylfu":
            self._untaken = eviction
            return False
        if self._eviction not in (None, eviction):
            raise ConfigurationError(
                "two limits over one Redis must evict in the same order "
                f"({self._eviction!r} and {eviction!r})"
            )
        self._bounds[measure] = min(bound, self._bounds.get(measure, bound))
        self._eviction = eviction
        self._touches = eviction == "used"
        return True

    def bound_per_process(self) -> str | None:
        """Why a limit above would be kept by each process apart (it did not take it)."""
        if self._cluster:
            return (
                "on a Redis Cluster, one index of every key would pin them all to one slot "
                "and undo the sharding. Bound the servers instead: maxmemory with "
                "maxmemory-policy allkeys-lru (or allkeys-lfu) on every node"
            )
        if self._untaken:
            return (
                f"Redis keeps a shared bound in order of use or of writes; "
                f"eviction={self._untaken!r} is not kept in Redis (yet): use 'used' or 'stored'"
            )
        return (
            "a layer between the limit and Redis (such as a Tier, whose front would "
            "outlive Redis's evictions) keeps the bound from Redis's own index"
        )

    def counters(self) -> dict[str, int]:
        return {"evictions": self._evictions} if self._bounds else {}

    def _script(self, script: _Script, names: list[bytes], args: list[Any]) -> Any:
        """Run ``script`` in one round trip (EVALSHA; EVAL once if the server lacks it)."""
        try:
            return self.client.evalsha(script.sha, len(names), *names, *args)
        except self._no_script:
            return self.client.eval(script.source, len(names), *names, *args)

    def _check_sizes(self, items: Mapping[str, Any]) -> None:
        most = self._bounds.get("bytes")
        if most is not None:
            for key, value in items.items():
                if len(value) > most:
                    raise too_large(key, len(value), most, "bytes")

    def _write_args(self, px: int | None, mode: bytes, values: Iterable[Any]) -> list[Any]:
        return [
            self._bounds.get("entries", _NO_BOUND),
            self._bounds.get("bytes", _NO_BOUND),
            px or 0,
            mode,
            *values,
        ]

    def _booked_write(self, named: Mapping[bytes, Any], px: int | None, mode: bytes) -> bool:
        """Write through the books; False if ``add`` found the key."""
        args = self._write_args(px, mode, named.values())
        while True:
            done = self._script(_WRITING, [*self._books, *named], args)
            if done != _UNINDEXED:
                break
            self._enter_found()
        if done == _PRESENT:
            return False
        self._evictions += int(done)
        return True

    def _enter_found(self) -> None:
        """Enter the entries that the books do not list (written before them) as the
        least recent, then mark the books ready: once per prefix, by whichever process
        writes first (twice at worst: entering a name twice changes nothing)."""
        batch: list[bytes] = []
        for key in self.keys():
            batch.append(self._name(key))
            if len(batch) == _SCAN_BATCH:
                self._script(_ENTERING, [*self._books, *batch], [b"more"])
                batch = []
        self._script(_ENTERING, [*self._books, *batch], [b"last"])

    # -- the protocol ------------------------------------------------------------------

    def get(self, key: str) -> Any:
        if self._touches:
            return self._get_used(key)
        name = self._name(key)
        try:
            value = self.client.get(name)
        except self._errors as exc:
            if _wrong_type(exc):  # another type under that name: not an entry
                raise KeyError(key) from None
            raise self._fail(f"read {key!r}", exc) from exc
        if value is None:
            raise KeyError(key)
        return _as_bytes(value)

    def _get_used(self, key: str) -> Any:
        name = self._name(key)
        try:
            (value,) = self._script(_READING, [self._books[0], self._books[2], name], [])
        except self._errors as exc:
            raise self._fail(f"read {key!r}", exc) from exc
        if value is None:
            raise KeyError(key)
        return _as_bytes(value)

    def _ttl_names(self, name: bytes) -> list[bytes]:
        """The keys of ``_GET_WITH_TTL`` for ``name``: with the books if a read is a use."""
        return [name, self._books[0], self._books[2]] if self._touches else [name]

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        names = self._ttl_names(self._name(key))
        try:
            found = self.client.eval(_GET_WITH_TTL, len(names), *names)
        except self._errors as exc:
            raise self._fail(f"read {key!r}", exc) from exc
        if found is None or int(found[1]) == 0:
            raise KeyError(key)
        value, left = found
        return _as_bytes(value), _seconds_left(left)

    def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        keys = list(dict.fromkeys(keys))
        if self._cluster:  # a cluster pipeline runs no scripts: one round trip per key
            each = {}
            for key in keys:
                try:
                    each[key] = self.get_with_ttl(key)
                except KeyError:
                    pass
            return each
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    names = self._ttl_names(self._name(key))
                    pipe.eval(_GET_WITH_TTL, len(names), *names)
                replies = pipe.execute()
        except self._errors as exc:
            raise self._fail(f"read {len(keys)} keys", exc) from exc
        return {
            key: (_as_bytes(value), _seconds_left(left))
            for key, reply in zip(keys, replies, strict=True)
            if reply is not None and int(reply[1]) != 0
            for value, left in [reply]
        }

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        name = self._name(key)
        if self._bounds:
            self._check_sizes({key: value})
            try:
                self._booked_write({name: value}, _optional_milliseconds(ttl), b"set")
            except self._errors as exc:
                raise self._fail(f"write {key!r}", exc) from exc
            return
        try:
            if ttl is None:
                self.client.set(name, value)
            else:
                self.client.set(name, value, px=_milliseconds(ttl))
        except self._errors as exc:
            raise self._fail(f"write {key!r}", exc) from exc

    def delete(self, key: str) -> None:
        name = self._name(key)
        try:
            if self._bounds:
                removed = self._script(_DELETING, [*self._books, name], [])
            else:
                removed = self.client.eval(_DELETE_STRINGS, 1, name)
        except self._errors as exc:
            raise self._fail(f"delete {key!r}", exc) from exc
        if not removed:
            raise KeyError(key)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        # SET NX: Redis itself decides, and an expired key is gone for it. A key of
        # another type under the name counts as present (it is not replaced).
        name = self._name(key)
        try:
            if self._bounds:
                self._check_sizes({key: value})
                return self._booked_write({name: value}, _optional_milliseconds(ttl), b"add")
            stored = self.client.set(name, value, nx=True, px=_optional_milliseconds(ttl))
        except self._errors as exc:
            raise self._fail(f"add {key!r}", exc) from exc
        return bool(stored)

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        # WATCH, GET, then MULTI/SET/EXEC: EXEC fails if any client wrote the key since the
        # WATCH, and redis-py's transaction() runs it all again. No INCRBY: it works only
        # on decimal text, and the bytes here are whatever the codec above made.
        name = self._name(key)
        px = _optional_milliseconds(ttl)
        try:
            # transaction=True: a cluster's pipeline WATCHes only in a transaction.
            with self.client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(name)  # from here the pipeline runs commands at once...
                        try:
                            current = pipe.get(name)
                        except self._errors as exc:
                            if not _wrong_type(exc):
                                raise
                            current = None  # another type under that name: replaced
                        value = change(ABSENT if current is None else _as_bytes(current))
                        if self._bounds:
                            self._check_sizes({key: value})
                        pipe.multi()  # ...and from here it queues them until execute
                        if self._bounds:  # the script in full: a transaction cannot load it
                            mode = b"set" if current is None else b"keep"
                            args = self._write_args(px if current is None else None, mode, [value])
                            pipe.eval(_WRITING.source, 5, *self._books, name, *args)
                        elif current is None:
                            pipe.set(name, value, px=px)
                        else:
                            pipe.set(name, value, keepttl=True)  # the deadline stays
                        (done,) = pipe.execute()
                        if self._bounds:
                            if done == _UNINDEXED:
                                self._enter_found()
                                continue
                            self._evictions += int(done)
                        return value
                    except self._watch_error:
                        continue  # another client wrote the key since the WATCH: again
        except self._errors as exc:
            raise self._fail(f"modify {key!r}", exc) from exc

    def contains(self, key: str) -> bool:
        name = self._name(key)
        try:
            return _as_bytes(self.client.type(name)) == b"string"
        except self._errors as exc:
            raise self._fail(f"check {key!r}", exc) from exc

    def keys(self) -> Iterator[str]:
        start = len(self._raw_prefix)
        pattern = _glob_escape(self._raw_prefix) + b"*"
        from redis.client import NEVER_DECODE

        # Names as bytes even from a client that decodes: a name need not be UTF-8.
        raw = {NEVER_DECODE: True}
        try:
            for name in self.client.scan_iter(
                match=pattern, count=_SCAN_BATCH, _type="string", **raw
            ):
                try:
                    yield name[start:].decode("utf-8", "surrogatepass")
                except UnicodeDecodeError:
                    continue  # no key is stored under that name (a lock, or not ours)
        except self._errors as exc:
            raise self._fail("list keys", exc) from exc

    def sizes_by_age(self) -> list[tuple[str, int]]:
        # Redis keeps no order of use to read back: the keys come in the order of a scan,
        # each with its value's length (STRLEN, a pipeline per batch: no value is read).
        keys = [key for key in self.keys()]
        sizes: list[tuple[str, int]] = []
        try:
            for start in range(0, len(keys), _SCAN_BATCH):
                chunk = keys[start : start + _SCAN_BATCH]
                with self.client.pipeline(transaction=False) as pipe:
                    for key in chunk:
                        pipe.strlen(self._name(key))
                    lengths = pipe.execute()
                # A key deleted since the scan reads as 0 bytes, like an empty value: it
                # weighs nothing, and the next count() that differs reconciles it away.
                sizes += [(key, int(n)) for key, n in zip(chunk, lengths, strict=True)]
        except self._errors as exc:
            raise self._fail("measure the values", exc) from exc
        return sizes

    def clear(self) -> None:
        batch: list[str] = []
        for key in self.keys():
            batch.append(key)
            if len(batch) == _SCAN_BATCH:
                self.delete_many(batch)
                batch = []
        self.delete_many(batch)
        if self._bounds:  # and what the books still list (expired, or not seen by the scan)
            try:
                while self._script(_DROPPING, self._books, [_SCAN_BATCH]):
                    pass
            except self._errors as exc:
                raise self._fail("clear the books", exc) from exc

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        if not keys:
            return {}
        names = [self._name(key) for key in keys]
        try:
            if self._touches:
                values = self._script(_READING, [self._books[0], self._books[2], *names], [])
            # A cluster's MGET must not span slots: redis-py splits it by slot.
            elif self._cluster:
                values = self.client.mget_nonatomic(names)
            else:
                values = self.client.mget(names)
        except self._errors as exc:
            raise self._fail(f"read {len(keys)} keys", exc) from exc
        found = {key: value for key, value in zip(keys, values, strict=True) if value is not None}
        if self._decodes:
            return {key: _as_bytes(value) for key, value in found.items()}
        return found

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        if not items:
            return
        named = {self._name(key): value for key, value in items.items()}
        try:
            if self._bounds:
                self._check_sizes(items)
                self._booked_write(named, _optional_milliseconds(ttl), b"set")
            elif ttl is None and not self._cluster:
                self.client.mset(named)
            else:
                pipe = self.client.pipeline(transaction=False)
                px = None if ttl is None else _milliseconds(ttl)
                for name, value in named.items():
                    pipe.set(name, value, px=px)
                pipe.execute()
        except self._errors as exc:
            raise self._fail(f"write {len(named)} keys", exc) from exc

    def delete_many(self, keys: Iterable[str]) -> None:
        names = [self._name(key) for key in keys]
        if not names:
            return
        try:
            if self._bounds:
                self._script(_DELETING, [*self._books, *names], [])
                return
            if not self._cluster:
                self.client.eval(_DELETE_STRINGS, len(names), *names)
                return
            # A script's keys must share a slot, and a cluster pipeline takes no scripts:
            # one call per slot, as redis-py does for a multi-key DEL on a cluster.
            by_slot: dict[int, list[bytes]] = {}
            for name in names:
                by_slot.setdefault(self.client.keyslot(name), []).append(name)
            for group in by_slot.values():
                self.client.eval(_DELETE_STRINGS, len(group), *group)
        except self._errors as exc:
            raise self._fail(f"delete {len(names)} keys", exc) from exc

    def tag_tokens(self, tags: Sequence[str], create: bool) -> dict[str, str]:
        # Each token is a string under the prefix, named with _ASIDE: never an entry. A
        # tag first used is given a token with SET NX, so writers that race agree on it.
        names = [self._aside(b"tag", tag) for tag in tags]
        if not names:
            return {}
        try:
            found = self._tag_values(names)
            unset = [name for name, token in zip(names, found, strict=True) if token is None]
            if create and unset:
                pipe = self.client.pipeline(transaction=False)
                for name in unset:
                    pipe.set(name, new_token(), nx=True)
                pipe.execute()
                found = self._tag_values(names)
        except self._errors as exc:
            raise self._fail(f"read the tokens of {len(names)} tags", exc) from exc
        return {
            tag: _as_bytes(token).decode("ascii")
            for tag, token in zip(tags, found, strict=True)
            if token is not None
        }

    def _tag_values(self, names: list[bytes]) -> list[Any]:
        if self._cluster:  # a cluster's MGET must not span slots: redis-py splits it
            return list(self.client.mget_nonatomic(names))
        return list(self.client.mget(names))

    def renew_tag(self, tag: str) -> None:
        try:
            self.client.set(self._aside(b"tag", tag), new_token())
        except self._errors as exc:
            raise self._fail(f"invalidate the tag {tag!r}", exc) from exc

    def key_lock(self, key: str) -> AbstractContextManager[Any]:
        """A lease across processes (``pystorage.layers.leases``): a string under the
        prefix that is never an entry (its name holds a byte no key has), ``SET NX PX``
        with a random token, deleted by a script only if it still holds that token."""
        self._aside(b"lock", key)  # a key that is no str fails here, as in every operation
        return Lease(self, key)

    def take_lease(self, key: str, token: str, seconds: float) -> str:
        """One try to take the lease of ``key``: the holder's token after it."""
        name = self._aside(b"lock", key)
        try:
            holder = self._script(_TAKING, [name], [token, max(1, round(seconds * 1000))])
        except self._errors as exc:
            raise self._fail(f"take the lock of key {key!r}", exc) from exc
        return holder.decode() if isinstance(holder, bytes) else str(holder)

    def end_lease(self, key: str, token: str) -> None:
        """Give the lease of ``key`` back if ``token`` still holds it."""
        try:
            self._script(_GIVING_BACK, [self._aside(b"lock", key)], [token])
        except self._errors as exc:
            raise self._fail(f"release the lock of key {key!r}", exc) from exc

    def close(self) -> None:
        if self.owned:
            self.client.close()


def _check_prefix(prefix: object, whole_database: bool) -> None:
    if not isinstance(prefix, str):
        raise ConfigurationError(f"prefix must be a str, not {prefix!r}")
    if prefix == "" and not whole_database:
        raise ConfigurationError(
            'prefix="" makes every string key of the database an entry of this storage, '
            "and clear() would delete them all: give a prefix such as 'app:', or pass "
            "whole_database=True if the database is this storage's alone"
        )
    if prefix and whole_database:
        raise ConfigurationError('whole_database=True goes with prefix="" only')
    if prefix and not prefix.endswith(SEPARATOR):
        raise ConfigurationError(
            f"prefix {prefix!r} must end with {SEPARATOR!r} (e.g. {prefix + SEPARATOR!r}): "
            "otherwise it also covers the entries of every prefix that starts with it, "
            f"such as {prefix + SEPARATOR!r} or {prefix + 'x' + SEPARATOR!r}"
        )


def _seconds_left(pttl: Any) -> float | None:
    """PTTL's answer in seconds (None: no expiry). Its 0, the last millisecond, is taken
    for expired by the callers: no write accepts a TTL of 0."""
    return None if int(pttl) < 0 else int(pttl) / 1000


def _wrong_type(exc: Exception) -> bool:
    return str(exc).startswith("WRONGTYPE")


def _decodes_responses(client: Any) -> bool:
    """Whether the client hands back str (``decode_responses=True``); unsure means yes."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        return bool(pool.connection_kwargs.get("decode_responses", False))
    getter = getattr(client, "get_connection_kwargs", None)
    return bool(getter().get("decode_responses", False)) if getter else True


def _as_bytes(value: bytes | str) -> bytes:
    # A client made with decode_responses=True hands back str: text codecs still work.
    return value if isinstance(value, bytes) else value.encode()


def _optional_milliseconds(ttl: float | None) -> int | None:
    return None if ttl is None else _milliseconds(ttl)


def _milliseconds(ttl: float) -> int:
    # Round up: an entry never outlives its TTL by less than asked, nor expires at once.
    return max(1, int(-(-ttl * 1000 // 1)))


def _is_from(client: Any, module: str, name: str) -> bool:
    """Whether ``client`` is a ``module.name`` (or of a subclass), without importing it."""
    return any(kind.__module__ == module and kind.__name__ == name for kind in type(client).__mro__)


def _describe(client: Any) -> str:
    """host:port of a client, for error messages (never its password)."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        options = pool.connection_kwargs
        if "path" in options:
            return f"unix:{options['path']}"
        return f"{options.get('host', '?')}:{options.get('port', '?')}/{options.get('db', 0)}"
    # The nodes it was given (those of a cluster's async client are only found at its
    # first command), sync or async.
    manager = getattr(client, "nodes_manager", None)
    nodes = list(getattr(manager, "startup_nodes", {}).values())
    return "cluster " + ",".join(f"{node.host}:{node.port}" for node in nodes)

"""Redis: values in a Redis server or cluster, under a key prefix."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import attrs

from pystorage.errors import BackendError, ConfigurationError, not_a_str
from pystorage.layers.base import ABSENT, Backend, ValueKind

_SCAN_BATCH = 1000
#: Where a storage keeps its entries when it is given no prefix.
DEFAULT_PREFIX = "pystorage:"
#: Ends every prefix, so that a prefix never covers another one's keys by accident.
SEPARATOR = ":"
#: A byte that no key's UTF-8 holds: the names of things beside the entries (memoize's
#: locks) hold it, so that they are never entries of any storage, whatever its prefix.
_ASIDE = b"\xff"
# Deletes those of its keys that hold strings, and only those: a key of another type is
# never an entry. Atomic, so a key cannot change type between the check and the delete.
# A value and the milliseconds it has left, read at one instant (-1: no expiry).
_GET_WITH_TTL = """
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then
    return nil
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
    lock_timeout: float = 60.0
    #: With ``prefix=""``: yes, every string key of this database is an entry of this
    #: storage, and ``clear()`` deletes them all.
    whole_database: bool = attrs.field(default=False, kw_only=True)
    #: In an ``AsyncStorage``: how long a task waits for a free connection of the
    #: clients PyStorage makes when all ``max_connections`` are in use, before a
    #: ``BackendError`` (None: the ``timeout=`` of a redis:// URL, else 20 seconds).
    pool_timeout: float | None = attrs.field(default=None, kw_only=True)
    #: Whether this object made its client (and closes it): from ``url``, or given a
    #: client made for it (the async twin of a Redis).
    owned: bool = attrs.field(default=False, kw_only=True, repr=False)
    _cluster: bool = attrs.field(init=False, default=False, repr=False)
    _decodes: bool = attrs.field(init=False, default=True, repr=False)
    _raw_prefix: bytes = attrs.field(init=False, repr=False)
    _endpoint: str = attrs.field(init=False, repr=False)
    _errors: tuple[type[Exception], ...] = attrs.field(init=False, repr=False)
    _watch_error: type[Exception] = attrs.field(init=False, repr=False)

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

    # -- the protocol ------------------------------------------------------------------

    def get(self, key: str) -> Any:
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

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        name = self._name(key)
        try:
            found = self.client.eval(_GET_WITH_TTL, 1, name)
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
                    pipe.eval(_GET_WITH_TTL, 1, self._name(key))
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
                        pipe.multi()  # ...and from here it queues them until execute
                        if current is None:
                            pipe.set(name, value, px=px)
                        else:
                            pipe.set(name, value, keepttl=True)  # the deadline stays
                        pipe.execute()
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

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        if not keys:
            return {}
        names = [self._name(key) for key in keys]
        try:
            # A cluster's MGET must not span slots: redis-py splits it by slot.
            values = self.client.mget_nonatomic(names) if self._cluster else self.client.mget(names)
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
            if ttl is None and not self._cluster:
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

    def key_lock(self, key: str) -> AbstractContextManager[Any]:
        # Under the prefix (for ACLs that allow only it), but never an entry.
        name = self._aside(b"lock", key)
        return _Guarded(
            self.client.lock(name, timeout=self.lock_timeout, blocking_timeout=self.lock_timeout),
            lambda exc: self._fail(f"lock {key!r}", exc),
            self._errors,
        )

    def close(self) -> None:
        if self.owned:
            self.client.close()


@attrs.define
class _Guarded:
    """A lock whose failure to be taken is a BackendError."""

    inner: Any
    translate: Callable[[Exception], BackendError]
    errors: tuple[type[Exception], ...]

    def __enter__(self) -> Any:
        try:
            return self.inner.__enter__()
        except self.errors as exc:
            raise self.translate(exc) from exc

    def __exit__(self, *details: Any) -> None:
        try:
            self.inner.__exit__(*details)
        except self.errors:
            # The lock expired while held (lock_timeout): there is nothing left to free,
            # and the work done under it stands.
            pass

    # The same, for a redis.asyncio lock (the key_lock of AsyncRedis).

    async def __aenter__(self) -> Any:
        try:
            return await self.inner.__aenter__()
        except self.errors as exc:
            raise self.translate(exc) from exc

    async def __aexit__(self, *details: Any) -> None:
        try:
            await self.inner.__aexit__(*details)
        except self.errors:
            pass  # expired while held, as above


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

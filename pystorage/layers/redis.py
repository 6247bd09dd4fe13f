"""Redis: values in a Redis server or cluster, under a key prefix."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import attrs

from pystorage.errors import BackendError, ConfigurationError, not_a_str
from pystorage.layers.base import Backend, ValueKind

_SCAN_BATCH = 1000


def _glob_escape(text: bytes) -> bytes:
    """``text`` as a literal in a Redis MATCH pattern."""
    for special in (b"\\", b"*", b"?", b"[", b"]"):
        text = text.replace(special, b"\\" + special)
    return text


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Redis(Backend):
    """Stores each key as one Redis string ``<prefix><key>``; expires entries natively.

    Give a client (``redis.Redis`` or ``redis.cluster.RedisCluster``) or a ``url``
    (``redis://host:port/db``, ``rediss://`` for TLS). A storage touches only keys under
    its ``prefix``: ``len``, iteration and ``clear`` SCAN that prefix, never ``KEYS`` or
    ``FLUSHDB``. Batches are one round trip (MGET, MSET or a pipeline), split by slot on
    a cluster. A TTL is given to Redis (SET PX), not tracked here. Connection failures
    raise ``BackendError`` naming the server; the client reconnects by itself.
    """

    accepts: ClassVar[ValueKind] = "bytes"
    supports_ttl: ClassVar[bool] = True

    client: Any = attrs.field(default=None, repr=False)
    url: str | None = attrs.field(default=None, repr=False)  # may hold a password
    prefix: str = ""
    #: How long a memoize lock may be held before Redis frees it (a crashed holder).
    lock_timeout: float = 60.0
    _owned: bool = attrs.field(init=False, default=False, repr=False)
    _cluster: bool = attrs.field(init=False, default=False, repr=False)
    _decodes: bool = attrs.field(init=False, default=True, repr=False)
    _raw_prefix: bytes = attrs.field(init=False, repr=False)
    _endpoint: str = attrs.field(init=False, repr=False)
    _errors: tuple[type[Exception], ...] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        try:
            import redis
            import redis.cluster
        except ImportError as exc:
            raise ImportError(
                "Redis needs redis-py: pip install 'pystorage-layers[redis]'"
            ) from exc
        if self.client is None and self.url is None:
            raise ConfigurationError("Redis needs a client= or a url=")
        if self.client is not None and self.url is not None:
            raise ConfigurationError("give Redis a client= or a url=, not both")
        if self.url is not None:
            self.client = redis.Redis.from_url(self.url)
            self._owned = True
        self._cluster = isinstance(self.client, redis.cluster.RedisCluster)
        self._decodes = _decodes_responses(self.client)
        if not isinstance(self.prefix, str):
            raise ConfigurationError(f"prefix must be a str, not {self.prefix!r}")
        self._raw_prefix = self.prefix.encode("utf-8", "surrogatepass")
        self._endpoint = _describe(self.client)  # never the URL: it may hold a password
        # A cluster with no reachable node raises RedisClusterException, not a RedisError.
        self._errors = (redis.RedisError, redis.exceptions.RedisClusterException)

    # -- keys --------------------------------------------------------------------------

    def _name(self, key: str) -> bytes:
        if type(key) is not str:
            raise not_a_str(key)
        return self._raw_prefix + key.encode("utf-8", "surrogatepass")

    def _fail(self, action: str, exc: Exception) -> BackendError:
        return BackendError(f"Redis at {self._endpoint}: cannot {action}: {exc}")

    # -- the protocol ------------------------------------------------------------------

    def get(self, key: str) -> Any:
        name = self._name(key)
        try:
            value = self.client.get(name)
        except self._errors as exc:
            raise self._fail(f"read {key!r}", exc) from exc
        if value is None:
            raise KeyError(key)
        return _as_bytes(value)

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
            removed = self.client.delete(name)
        except self._errors as exc:
            raise self._fail(f"delete {key!r}", exc) from exc
        if not removed:
            raise KeyError(key)

    def contains(self, key: str) -> bool:
        name = self._name(key)
        try:
            return bool(self.client.exists(name))
        except self._errors as exc:
            raise self._fail(f"check {key!r}", exc) from exc

    def keys(self) -> Iterator[str]:
        start = len(self._raw_prefix)
        pattern = _glob_escape(self._raw_prefix) + b"*"
        try:
            for name in self.client.scan_iter(match=pattern, count=_SCAN_BATCH):
                yield _as_bytes(name)[start:].decode("utf-8", "surrogatepass")
        except self._errors as exc:
            raise self._fail("list keys", exc) from exc

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
            read = self.client.mget_nonatomic if self._cluster else self.client.mget
            values = read(names)
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
            # A cluster client splits a multi-key DEL by slot itself.
            self.client.delete(*names)
        except self._errors as exc:
            raise self._fail(f"delete {len(names)} keys", exc) from exc

    def key_lock(self, key: str) -> AbstractContextManager[Any]:
        # Outside the prefix, so that locks never show up as entries.
        name = b"pystorage-lock:" + self._name(key)
        return _Guarded(
            self.client.lock(name, timeout=self.lock_timeout, blocking_timeout=self.lock_timeout),
            lambda exc: self._fail(f"lock {key!r}", exc),
            self._errors,
        )

    def close(self) -> None:
        if self._owned:
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


def _milliseconds(ttl: float) -> int:
    # Round up: an entry never outlives its TTL by less than asked, nor expires at once.
    return max(1, int(-(-ttl * 1000 // 1)))


def _describe(client: Any) -> str:
    """host:port of a client, for error messages (never its password)."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        options = pool.connection_kwargs
        if "path" in options:
            return f"unix:{options['path']}"
        return f"{options.get('host', '?')}:{options.get('port', '?')}/{options.get('db', 0)}"
    nodes = getattr(client, "startup_nodes", None) or []
    return "cluster " + ",".join(f"{node.host}:{node.port}" for node in nodes)

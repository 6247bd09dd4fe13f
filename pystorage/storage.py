"""Storage: the mapping users hold, on top of a stack of layers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pystorage.errors import ConfigurationError, not_a_str
from pystorage.interface import SyncStorage, check_tags, check_ttl, checked_delta, increment
from pystorage.layers.base import Layer, ValueKind, Wrapper, stack_from
from pystorage.layers.protocol import TagNames

if TYPE_CHECKING:  # memoize (asyncio, inspect, zoneinfo...) is imported by its first use
    from pystorage.layers.envelope import TagSnapshot
    from pystorage.memoize import Memoized, P, R
    from pystorage.stampede import Refresh

_MISSING: Any = object()


class Storage(MutableMapping[str, Any], SyncStorage):
    """A ``MutableMapping`` with ``str`` keys over a stack of layers.

    ``Storage(*layers)`` takes the layers outermost first and a backend last::

        Storage(Codec(Pickle() | Zstd()), Files("/var/cache/app"))

    The last argument may also be another ``Storage``: the new layers then sit on top of
    its stack, e.g. ``Storage(Tier(LRU(1000)), slow_storage)``.

    ``storage.get(key, default=None)`` is the top layer's ``lookup``, bound once: a miss
    in memory costs no exception.
    """

    __slots__ = ("_contains", "_delete", "_get", "_set", "get", "layers", "top")

    def __init__(self, *layers: Layer | Storage) -> None:
        if layers and getattr(layers[-1], "client_is_async", False):
            # Nothing here would await its commands: a write would return having written
            # nothing.
            raise ConfigurationError(
                f"{layers[-1]!r} was given a redis.asyncio client, which a Storage cannot "
                "await: use it in an AsyncStorage, or give a Storage a redis.Redis or "
                "redis.cluster.RedisCluster client"
            )
        self.top: Layer = assemble(layers)
        self.layers: tuple[Layer, ...] = tuple(stack_from(self.top))
        # Bound once: every mapping operation is one call into the top layer.
        self._get = self.top.get
        # storage.get(key, default) is the top layer's lookup itself: no hop on a miss.
        self.get = self.top.lookup  # type: ignore[method-assign]
        self._set = self.top.set
        self._delete = self.top.delete
        self._contains = self.top.contains

    def __getitem__(self, key: str) -> Any:
        return self._get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if type(key) is not str:
            raise not_a_str(key)
        self._set(key, value)

    def __delitem__(self, key: str) -> None:
        self._delete(key)

    def __contains__(self, key: object) -> bool:
        return type(key) is str and self._contains(key)

    def __iter__(self) -> Iterator[str]:
        return self.top.keys()

    def __len__(self) -> int:
        return self.top.count()

    def __repr__(self) -> str:
        return f"Storage({', '.join(map(repr, self.layers))})"

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value, or ``default`` if it is missing.

        Unlike the mixin, losing a race with another deleter is not an error: the value
        read is returned, as if this call had deleted it.
        """
        try:
            value = self._get(key)
        except KeyError:
            if default is _MISSING:
                raise
            return default
        try:
            self._delete(key)
        except KeyError:
            pass
        return value

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        """The value of ``key`` and the seconds it has left, or None if it never expires
        (``KeyError`` if it is missing). ``pystorage copy`` carries TTLs across with it."""
        return self.top.get_with_ttl(key)

    def set(
        self, key: str, value: Any, ttl: float | None = None, tags: TagNames | None = None
    ) -> None:
        """Store ``value``; with ``ttl`` (seconds) it expires, if the stack can expire it.

        With ``tags`` (a list of str, e.g. ``["user:7"]``) it is missing once any of them
        is invalidated (``invalidate_tag``); the stack needs a ``Tags`` layer on top
        (``tags=1`` in a URL), else ``ConfigurationError``."""
        if type(key) is not str:
            raise not_a_str(key)
        if ttl is not None:
            self._check_ttl(ttl)
        if tags is None:
            self._set(key, value, ttl)
        else:
            check_tags(self.top).set_tagged(key, value, ttl, tags)

    def add(
        self, key: str, value: Any, ttl: float | None = None, tags: TagNames | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` is missing (an expired entry is missing); True
        if it was stored. Atomic: of callers adding one key at once, in any threads or
        processes, exactly one gets True (see the atomic operations page for each
        backend). ``ttl`` as for ``set``; ``Expiry`` gives its own when none is given;
        ``tags`` as for ``set`` (an entry whose tag was invalidated is missing)."""
        if type(key) is not str:
            raise not_a_str(key)
        if ttl is not None:
            self._check_ttl(ttl)
        if tags is not None:
            return bool(check_tags(self.top).add_tagged(key, value, ttl, tags))
        return bool(self.top.add(key, value, ttl))

    def invalidate_tag(self, tag: str) -> None:
        """Make every entry stored with ``tag`` missing, in every process sharing the
        store: one write, whatever the number of entries (see ``Tags``)."""
        check_tags(self.top).invalidate_tag(tag)

    def snapshot_tags(self, tags: Sequence[str]) -> TagSnapshot:
        """The tokens of ``tags`` now. Read them before computing a value and store it
        with ``set(key, value, tags=snapshot)``: an invalidation while it was computed
        then makes it missing too (``memoize(tags=...)`` does so)."""
        from pystorage.layers.tags import checked_tags, snapshot

        return snapshot(tags, check_tags(self.top).tag_tokens(checked_tags(tags), True))

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Add ``delta`` to the ``int`` stored at ``key``, atomically, and return the sum.

        A missing key (or an expired one) counts as 0 and is created with ``ttl`` (or
        ``Expiry``'s TTL); an existing entry keeps its deadline, as Redis ``INCRBY``
        does. A value that is not an ``int`` (``True`` is not one) raises
        ``NotAnIntegerError`` and stays as it was. The value goes through the stack's
        codec as any other, so ``storage[key]`` reads the number back.
        """
        change = increment(key, delta)
        if ttl is not None:
            self._check_ttl(ttl)
        total: int = self.top.modify(key, change, ttl)
        return total

    def decr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Subtract ``delta`` from the ``int`` stored at ``key``: ``incr(key, -delta)``."""
        return self.incr(key, -checked_delta(delta), ttl)

    def clear(self) -> None:
        """Remove every entry of this storage (and only this storage's entries)."""
        self.top.clear()

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of those ``keys`` that exist, in one batch where the backend can."""
        return self.top.get_many(keys)

    def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        """As ``get_many``, each value with the seconds it has left (None: no deadline)."""
        return self.top.get_many_with_ttl(keys)

    def set_many(
        self,
        items: Mapping[str, Any],
        ttl: float | None = None,
        tags: TagNames | None = None,
    ) -> None:
        """Store every item, in one batch where the backend can; ``tags`` as for ``set``,
        given to every item."""
        for key in items:
            if type(key) is not str:
                raise not_a_str(key)
        if ttl is not None:
            self._check_ttl(ttl)
        if tags is None:
            self.top.set_many(items, ttl)
        else:
            check_tags(self.top).set_many_tagged(items, ttl, tags)

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove those ``keys`` that exist; missing keys are ignored."""
        self.top.delete_many(keys)

    def expire(self) -> int:
        """Remove every expired entry now (a full sweep); returns how many were removed.

        Expiry already happens on access; this is for callers who want the space back.
        """
        return self.top.expire()

    def memoize(
        self,
        ttl: float | None = None,
        key: str | None = None,
        typed: bool = False,
        key_func: Callable[..., Any] | None = None,
        refresh: Refresh | None = None,
        tags: Sequence[str] | Callable[..., Sequence[str]] | None = None,
    ) -> Callable[[Callable[P, R]], Memoized[P, R]]:
        """Cache a function's results here, keyed by the function and its arguments' values.

        A call's key is a hash of a stable encoding of the function's module and qualified
        name (a closure's cells and a bound method's object included) and of its arguments,
        so it is the same in every process and every run. Arguments must have a stable
        value: None, bool, int, float, str, bytes, tuples, lists, dicts, sets, enums,
        dataclass and attrs instances, namedtuples, datetime values, Decimal, UUID, paths
        and classes; anything else (an object with the default ``repr``, a file, a lambda)
        raises ``InvalidKeyError`` at the call. ``key_func(*args, **kwargs)`` returns the
        value to key on instead of the arguments (e.g. ``lambda self, x: (self.id, x)``).
        ``key`` names the entries instead of the function (and is then its whole
        identity). ``typed=True`` keeps ``f(1)``, ``f(1.0)`` and ``f(True)`` apart, which
        otherwise share an entry as they are equal. ``ttl`` needs a stack that can expire
        entries (``UnsupportedError`` when decorating otherwise).

        Callers that miss on the same key at once compute it once: the others wait for
        that result (a per-key lock in this process; a Redis lock across processes on a
        Redis stack; for an ``async def``, an asyncio lock per key in each event loop).
        The function gains ``invalidate(*args)``, ``cache_clear()`` and ``cache_key(*args)``.

        ``tags`` (a list of str, or a callable of the arguments returning one, e.g.
        ``lambda user_id: [f"user:{user_id}"]``) stores each result with those tags, read
        before the function runs: ``invalidate_tag`` while it runs leaves the result
        missing. The stack needs a ``Tags`` layer (``ConfigurationError`` when decorating).

        ``refresh=Refresh(early=1.0, stale=30, stale_if_error=300)`` (with a ``ttl``)
        keeps a hot key's expiry from sending every caller to the function: early
        recomputation (XFetch), stale-while-revalidate, stale-if-error (see
        ``pystorage.Refresh``); ``stats()`` of the function counts what it did.
        """
        from pystorage.memoize import memoize

        return memoize(
            self, ttl=ttl, key=key, typed=typed, key_func=key_func, refresh=refresh, tags=tags
        )

    def stats(self) -> dict[str, int]:
        """What the stack counted: hits, misses, writes and deletes (with a ``Stats``
        layer), evictions (``LRU``, ``CountLimit``) and expirations (``Expiry``)."""
        return self.top.counters()

    def close(self) -> None:
        """Release the backend's resources (connections, pools)."""
        self.top.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _check_ttl(self, ttl: float) -> None:
        check_ttl(self.top, ttl)


def assemble(layers: tuple[Any, ...], prepare: bool = True) -> Layer:
    """Link ``layers`` (outermost first, a backend or a storage last) into a stack, after
    checking that they fit; returns its top layer. With ``prepare``, each new layer then
    reads what it needs from the layers below it (bottom-up)."""
    if not layers:
        raise ConfigurationError("a Storage needs at least a backend, e.g. Memory()")
    *wrappers, last = layers
    bottom = last.top if isinstance(last, Storage) else last
    if isinstance(bottom, Wrapper) and not isinstance(last, Storage):
        raise ConfigurationError(
            f"the last layer must be a backend (Memory, Files, ...), not {bottom!r}"
        )
    above: list[Wrapper] = []
    for layer in wrappers:
        if not isinstance(layer, Wrapper):
            raise ConfigurationError(
                f"{layer!r} must be the last layer: only wrappers can have a layer below"
            )
        above.append(layer)
    _check_value_kinds((*above, *stack_from(bottom)))
    below: Layer = bottom
    for layer in reversed(above):
        layer.link(below)
        if not layer.leaves_stack():
            below = layer
            if prepare:
                layer.prepare()
    _check_envelopes(below)
    return below


def _check_envelopes(top: Layer) -> None:
    """A codec that stores envelopes needs a ``Tags`` layer above it to make them."""
    for layer in stack_from(top):
        if layer.keeps_tags:
            return
        if getattr(layer, "tagged", False):
            raise ConfigurationError(
                f"{layer!r} stores the envelopes of a Tags layer, and none is above it: "
                "build the stack with Tags() on top, in one Storage(...)"
            )


def _check_value_kinds(layers: tuple[Layer, ...]) -> None:
    kind: ValueKind = "object"
    for layer in layers:
        if layer.accepts == "bytes" and kind != "bytes":
            raise ConfigurationError(
                f"{type(layer).__name__} stores bytes: put a Codec layer above it, "
                f"e.g. Storage(Codec('pickle'), {type(layer).__name__}(...))"
            )
        kind = layer.value_kind_below(kind)

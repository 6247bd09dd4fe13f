"""AsyncStorage: the stacks of ``Storage``, awaited from asyncio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from pystorage.aio import layers as twins
from pystorage.aio.backend import OffLoop
from pystorage.aio.layers import AsyncLayer
from pystorage.aio.twins import twin_class
from pystorage.errors import ConfigurationError, not_a_str
from pystorage.interface import check_tags, check_ttl, checked_delta, increment
from pystorage.layers import LRU, Layer, Memory, Redis, Tier, Wrapper
from pystorage.layers.base import stack_from
from pystorage.layers.protocol import TagNames
from pystorage.storage import Storage, assemble

if TYPE_CHECKING:
    from pystorage.layers.envelope import TagSnapshot
    from pystorage.stampede import Refresh

#: The async twin of each wrapper layer (the generated ``pystorage.aio.layers``).
TWINS: dict[type[Layer], type[Layer]] = {
    sync: twin
    for twin in vars(twins).values()
    if isinstance(twin, type) and twin.__name__.startswith("Async")
    for sync in twin.__bases__[:1]
    if sync.__name__ == twin.__name__.removeprefix("Async")
}
#: Backends that do no I/O: their operations run on the event loop.
IN_MEMORY: tuple[type[Layer], ...] = (Memory, LRU)

_MISSING: Any = object()


class AsyncStorage:
    """A stack of layers, awaited: ``await storage.get(key)``.

    ``AsyncStorage(*layers)`` takes the same layers as ``Storage`` (outermost first, a
    backend last), or a ``Storage`` to serve from asyncio::

        AsyncStorage(Expiry(60), Codec("json"), Files("/var/cache/app"))
        AsyncStorage(StorageProvider().create(StorageProvider.STORAGE_SQLITE))

    Each wrapper layer becomes its async twin (``pystorage.aio.layers``, generated from
    the sync layer, so both behave alike; a wrapper of one's own gets its twin made from
    its source by the same rules, ``pystorage.aio.twins``); the backend's blocking
    operations run in a pool of threads (``Memory`` and ``LRU``, which never block, run
    on the loop). The first operation, or ``async with``, reads what the layers need
    from the backend (a limit's index), off the loop.
    """

    __slots__ = ("_prepared", "_preparing", "_preparing_lock", "layers", "top")

    top: AsyncLayer
    layers: tuple[Any, ...]
    _prepared: bool
    # A future of any thread: tasks of other event loops (other threads) wait for the
    # one preparation too, which an asyncio future of the loop that runs it cannot do.
    _preparing: concurrent.futures.Future[None] | None
    _preparing_lock: threading.Lock

    def __init__(self, *layers: Layer | Storage) -> None:
        if not layers:
            raise ConfigurationError("an AsyncStorage needs at least a backend, e.g. Memory()")
        *wrappers, last = layers
        if isinstance(last, Storage):
            wrappers += list(last.layers[:-1])
            last = last.layers[-1]
        built = assemble((*(_twin(layer) for layer in wrappers), _offloaded(last)), prepare=False)
        self.layers = tuple(stack_from(built))
        assert isinstance(built, AsyncLayer)  # every layer of the stack is an async one
        self.top = built
        self._preparing = None
        self._preparing_lock = threading.Lock()
        self._prepared = False

    def __repr__(self) -> str:
        return f"AsyncStorage({', '.join(map(repr, self.layers))})"

    async def _ready(self) -> AsyncLayer:
        """The top layer, once every layer has read what it needs (the first time only)."""
        with self._preparing_lock:
            preparing = self._preparing
            # A preparation that failed, or was cancelled with the loop that ran it, is
            # tried again: else its error (or a CancelledError) would answer every later
            # operation.
            if preparing is None or (
                preparing.done() and (preparing.cancelled() or preparing.exception() is not None)
            ):
                preparing = self._preparing = concurrent.futures.Future()
                task = asyncio.ensure_future(self._prepare())
                task.add_done_callback(functools.partial(_settle, preparing))
        await asyncio.shield(asyncio.wrap_future(preparing))
        self._prepared = True
        return self.top

    async def _prepare(self) -> None:
        for layer in reversed(self.layers[:-1]):
            await layer.prepare()

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it is missing."""
        top = self.top if self._prepared else await self._ready()
        return await top.lookup(key, default)

    async def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        """The value of ``key`` and the seconds it has left (None: no deadline);
        ``KeyError`` if it is missing."""
        top = self.top if self._prepared else await self._ready()
        return await top.get_with_ttl(key)

    async def set(
        self, key: str, value: Any, ttl: float | None = None, tags: TagNames | None = None
    ) -> None:
        """Store ``value``; with ``ttl`` (seconds) it expires, if the stack can expire it;
        ``tags`` as for ``Storage.set``."""
        if type(key) is not str:
            raise not_a_str(key)
        if ttl is not None:
            check_ttl(self.top, ttl)
        if tags is not None:
            check_tags(self.top)
        top = self.top if self._prepared else await self._ready()
        if tags is None:
            await top.set(key, value, ttl)
        else:
            await top.set_tagged(key, value, ttl, tags)

    async def add(
        self, key: str, value: Any, ttl: float | None = None, tags: TagNames | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` is missing; True if it was stored (atomic, as
        ``Storage.add``); ``tags`` as for ``Storage.set``."""
        if type(key) is not str:
            raise not_a_str(key)
        if ttl is not None:
            check_ttl(self.top, ttl)
        if tags is not None:
            check_tags(self.top)
        top = self.top if self._prepared else await self._ready()
        if tags is None:
            return bool(await top.add(key, value, ttl))
        return bool(await top.add_tagged(key, value, ttl, tags))

    async def invalidate_tag(self, tag: str) -> None:
        """Make every entry stored with ``tag`` missing (as ``Storage.invalidate_tag``)."""
        check_tags(self.top)
        top = self.top if self._prepared else await self._ready()
        await top.invalidate_tag(tag)

    async def snapshot_tags(self, tags: Sequence[str]) -> TagSnapshot:
        """The tokens of ``tags`` now (as ``Storage.snapshot_tags``)."""
        from pystorage.layers.tags import checked_tags, snapshot

        check_tags(self.top)
        top = self.top if self._prepared else await self._ready()
        return snapshot(tags, await top.tag_tokens(checked_tags(tags), True))

    async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Add ``delta`` to the ``int`` at ``key`` atomically and return the sum (as
        ``Storage.incr``: a missing key counts as 0)."""
        change = increment(key, delta)
        if ttl is not None:
            check_ttl(self.top, ttl)
        top = self.top if self._prepared else await self._ready()
        total: int = await top.modify(key, change, ttl)
        return total

    async def decr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Subtract ``delta`` from the ``int`` at ``key``: ``incr(key, -delta)``."""
        return await self.incr(key, -checked_delta(delta), ttl)

    async def delete(self, key: str) -> None:
        """Remove ``key``; ``KeyError`` if it is missing."""
        top = self.top if self._prepared else await self._ready()
        await top.delete(key)

    async def contains(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        if type(key) is not str:
            return False
        top = self.top if self._prepared else await self._ready()
        return await top.contains(key)

    async def keys(self) -> AsyncIterator[str]:
        """Every key, in no particular order (also ``async for key in storage``)."""
        top = self.top if self._prepared else await self._ready()
        async for key in top.keys():
            yield key

    def __aiter__(self) -> AsyncIterator[str]:
        return self.keys()

    async def count(self) -> int:
        """The number of entries."""
        top = self.top if self._prepared else await self._ready()
        return await top.count()

    async def clear(self) -> None:
        """Remove every entry of this storage (and only this storage's entries)."""
        top = self.top if self._prepared else await self._ready()
        await top.clear()

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of those ``keys`` that exist, in one batch where the backend can."""
        top = self.top if self._prepared else await self._ready()
        return await top.get_many(keys)

    async def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        """As ``get_many``, each value with the seconds it has left (None: no deadline)."""
        top = self.top if self._prepared else await self._ready()
        return await top.get_many_with_ttl(keys)

    async def set_many(
        self,
        items: Mapping[str, Any],
        ttl: float | None = None,
        tags: TagNames | None = None,
    ) -> None:
        """Store every item, in one batch where the backend can; ``tags`` as for
        ``Storage.set``, given to every item."""
        for key in items:
            if type(key) is not str:
                raise not_a_str(key)
        if ttl is not None:
            check_ttl(self.top, ttl)
        if tags is not None:
            check_tags(self.top)
        top = self.top if self._prepared else await self._ready()
        if tags is None:
            await top.set_many(items, ttl)
        else:
            await top.set_many_tagged(items, ttl, tags)

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Remove those ``keys`` that exist; missing keys are ignored."""
        top = self.top if self._prepared else await self._ready()
        await top.delete_many(keys)

    async def expire(self) -> int:
        """Remove every expired entry now; returns how many were removed."""
        top = self.top if self._prepared else await self._ready()
        return await top.expire()

    def stats(self) -> dict[str, int]:
        """What the stack counted (see ``Storage.stats``)."""
        return self.top.counters()

    def memoize(
        self,
        ttl: float | None = None,
        key: str | None = None,
        typed: bool = False,
        key_func: Callable[..., Any] | None = None,
        refresh: Refresh | None = None,
        tags: Sequence[str] | Callable[..., Sequence[str]] | None = None,
    ) -> Callable[[Callable[..., Any]], Any]:
        """Cache an ``async def``'s results here: see ``Storage.memoize`` (the same keys).

        Callers that miss on the same key at once await one call of the function; the
        others wait for its result (an asyncio lock per key). ``invalidate`` and
        ``cache_clear`` are coroutines here.
        """
        from pystorage.memoize import memoize

        return memoize(
            self, ttl=ttl, key=key, typed=typed, key_func=key_func, refresh=refresh, tags=tags
        )

    async def aclose(self) -> None:
        """Release the backend's resources (connections, pools, threads)."""
        await self.top.close()

    async def __aenter__(self) -> AsyncStorage:
        await self._ready()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()


def _settle(future: concurrent.futures.Future[None], task: asyncio.Future[None]) -> None:
    """Hand the outcome of a preparation to the tasks of every loop that wait for it."""
    if task.cancelled():
        future.cancel()
    elif task.exception() is not None:
        future.set_exception(task.exception())
    else:
        future.set_result(None)


def _twin(layer: Layer | Storage) -> Layer:
    """A new async twin of a sync wrapper layer, configured alike."""
    if not isinstance(layer, Wrapper):
        raise ConfigurationError(
            f"{layer!r} must be the last layer: only wrappers can have a layer below"
        )
    if isinstance(layer, AsyncLayer):
        return layer  # a twin written by hand (or made before): used as it is
    twin = TWINS.get(type(layer)) or twin_class(type(layer), TWINS)
    if isinstance(layer, Tier) and not isinstance(layer.front, IN_MEMORY):
        raise ConfigurationError(
            f"an async Tier needs a front in memory (LRU or Memory), not {layer.front!r}: "
            "its reads would block the event loop"
        )
    config = {
        field.alias: getattr(layer, field.name) for field in attrs.fields(type(layer)) if field.init
    }
    return twin(**config)


def _offloaded(backend: Layer | Storage) -> AsyncLayer:
    """The async form of a backend: Redis (and Redis Cluster) natively, the others
    through OffLoop."""
    if isinstance(backend, Storage):
        backend = backend.layers[-1]
    if isinstance(backend, Wrapper):
        raise ConfigurationError(
            f"the last layer must be a backend (Memory, Files, ...), not {backend!r}"
        )
    if isinstance(backend, Redis):
        # A redis.asyncio client (a cluster's too) is used as given, with every option its
        # owner built it with, on the event loop that first uses it, and left open for
        # them, as the sync layer does with a client. A sync one is the template of an
        # async client per event loop, to the same server or nodes.
        from pystorage.aio.clients import LoopClients

        given = backend.client_is_async
        if given:
            clients = LoopClients.given(backend.client, coalesce=backend.autopipeline)
        else:
            wait = backend.connection_wait()
            clients = LoopClients(
                backend.client,
                functools.partial(_async_client, backend.client, wait),
                gate=_per_node(backend.client) if backend.client_is_cluster else None,
                wait=wait,
                coalesce=backend.autopipeline,
            )
        twin = twins.AsyncRedis(
            client=clients,
            prefix=backend.prefix,
            lock_timeout=backend.lock_timeout,
            whole_database=backend.whole_database,
            pool_timeout=backend.pool_timeout,
            autopipeline=backend.autopipeline,
            owned=backend.owned if given else True,
        )
        # The bounds that the limits of a Storage handed to it (those limits left its stack).
        for measure, bound in backend.bounds.items():
            twin.take_bound(measure, bound, str(backend.eviction))  # type: ignore[arg-type]
        return twin
    return OffLoop(backend, threads=not isinstance(backend, IN_MEMORY))


def _accepted(kind: type, options: dict[str, Any]) -> dict[str, Any]:
    """Those ``options`` that ``kind`` (or a base of it) takes as arguments: redis-py keeps
    internal objects of its own among a sync client's options."""
    names = {
        name
        for cls in kind.__mro__
        if "__init__" in vars(cls)
        for name in inspect.signature(vars(cls)["__init__"]).parameters
    }
    return {name: value for name, value in options.items() if name in names}


def _per_node(client: Any) -> int:
    """The connections per node of the async twin of a sync cluster client."""
    import redis.asyncio.cluster

    options = _accepted(redis.asyncio.cluster.RedisCluster, client.get_connection_kwargs())
    return int(options.get("max_connections") or 100)


def _async_client(client: Any, wait: float) -> Any:
    """A redis.asyncio client to the server of a redis-py one, with its options; a burst
    of tasks waits up to ``wait`` seconds for one of its connections."""
    import redis.asyncio
    import redis.asyncio.cluster

    from pystorage.aio.clients import WaitingPool

    if not hasattr(client, "connection_pool"):  # a cluster: the same nodes and options
        options = _accepted(redis.asyncio.cluster.RedisCluster, client.get_connection_kwargs())
        nodes = [
            redis.asyncio.cluster.ClusterNode(node.host, node.port) for node in client.get_nodes()
        ]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, **options)
    pool = client.connection_pool
    kind = getattr(redis.asyncio.connection, pool.connection_class.__name__)
    options = _accepted(kind, pool.connection_kwargs)
    return redis.asyncio.Redis(
        connection_pool=WaitingPool(
            connection_class=kind,
            max_connections=pool.max_connections,
            timeout=wait,
            **options,
        )
    )

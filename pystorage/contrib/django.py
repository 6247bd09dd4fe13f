"""A Django cache backend over any PyStorage stack, named by a storage URL.

::

    CACHES = {
        "default": {
            "BACKEND": "pystorage.contrib.django.PyStorageCache",
            "LOCATION": "sqlite:///var/cache/myapp/django.db",
            "OPTIONS": {"MAX_ENTRIES": 10000},     # a CountLimit: limit=10000
        },
    }

Django's timeouts are per-key TTLs of the stack (``None``: no deadline; ``0`` or less:
nothing is stored, and an existing entry goes), its key prefixes, versions and key
functions make the keys, and values go through the URL's codec (pickle unless it names
another). ``add`` and ``incr`` are the stack's atomic operations, so they hold across
processes where the backend does (SQLite, files, Redis, S3). On a Redis stack the
``a*`` methods are awaited natively (``AsyncStorage``); elsewhere they run the sync
methods in a thread, as Django's own backends do.

Every backend object of one URL in a process shares one ``Storage`` (Django makes a
backend object per thread and per settings change): a stack is built once, as PyStorage
advises, and ``memory://`` is one memory per URL, as ``LocMemCache`` is per LOCATION.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar
from urllib.parse import urlencode, urlsplit

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from pystorage._fork import renew_in_child
from pystorage.errors import CodecError, ConfigurationError, StorageError, StorageProviderError
from pystorage.interface import increment
from pystorage.layers import Redis
from pystorage.layers.base import ABSENT
from pystorage.storage import Storage
from pystorage.urls import parse

if TYPE_CHECKING:
    from pystorage.aio.layers import AsyncLayer
    from pystorage.aio.storage import AsyncStorage

__all__ = ["KeyNotFoundError", "PyStorageCache", "UnpicklableValueError"]

_MISSING: Any = object()
P = ParamSpec("P")
R = TypeVar("R")
#: The TTL of a Django timeout of 0 or less: the entry expires at once, so none is kept.
_EXPIRED = 0.0


class KeyNotFoundError(StorageError, ValueError):
    """``incr`` or ``decr`` of a key that has no live entry (Django's API raises
    ``ValueError`` there, where PyStorage's own ``incr`` would start from 0)."""


class UnpicklableValueError(CodecError, pickle.PicklingError):
    """A value the pickle codec refused: a ``CodecError`` that is also the
    ``pickle.PickleError`` Django's pickling backends raise, so either is caught."""


class _Absent(Exception):
    """Raised inside ``modify`` to leave a missing key unwritten."""


class PyStorageCache(BaseCache):  # type: ignore[misc]  # django has no type hints
    """Django's cache API over the storage that ``LOCATION`` (a storage URL) names.

    ``OPTIONS``: ``MAX_ENTRIES`` becomes the URL's ``limit=`` (a bound the stack keeps:
    the least recently used entries go first, one at a time, rather than Django's cull
    of a ``CULL_FREQUENCY`` fraction, which is not used); any other key is a URL option
    (``{"lru": 1000}`` is ``&lru=1000``). The URL may not have a ``ttl=``: Django gives
    every write its timeout (``TIMEOUT``, 300 s by default), and ``None`` must mean none.
    """

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        url = _url(location, params.get("OPTIONS", {}))
        self._storage, self._async = _STORES.get(url)

    # --- the sync API: the source of each operation, async too ------------------------

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        """The value of ``key``, or ``default`` if it is missing or expired."""
        return self._storage.get(self.make_and_validate_key(key, version=version), default)

    def set(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Store ``value`` for ``timeout`` seconds (``None``: no deadline; ``0``: none)."""
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        if ttl == _EXPIRED:
            self._storage.delete_many((key,))
            return
        try:
            self._storage.set(key, value, ttl)
        except CodecError as exc:
            _reraise(exc)

    def add(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` has no live entry, atomically; True if it did."""
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        if ttl == _EXPIRED:
            # Added and expired at once: True if it could have been added, and nothing kept.
            return key not in self._storage
        try:
            return self._storage.add(key, value, ttl)
        except CodecError as exc:
            _reraise(exc)

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give ``key`` a new deadline; False if it has no live entry.

        A read and a write, not atomic: the stack has no operation that changes only a
        deadline, so a write of the key by another process between the two is overwritten
        by the value read (docs/django.md).
        """
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        value = self._storage.get(key, _MISSING)
        if value is _MISSING:
            return False
        if ttl == _EXPIRED:
            self._storage.delete_many((key,))
        else:
            self._storage.set(key, value, ttl)
        return True

    def delete(self, key: str, version: int | None = None) -> bool:
        """Remove ``key``; True if it had an entry."""
        try:
            del self._storage[self.make_and_validate_key(key, version=version)]
        except KeyError:
            return False
        return True

    def has_key(self, key: str, version: int | None = None) -> bool:
        """Whether ``key`` has a live entry."""
        return self.make_and_validate_key(key, version=version) in self._storage

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Add ``delta`` to the ``int`` at ``key`` atomically and return the sum; the entry
        keeps its deadline. ``KeyNotFoundError`` (a ``ValueError``) if it is missing,
        ``NotAnIntegerError`` (a ``TypeError``) if its value is not an ``int``."""
        key = self.make_and_validate_key(key, version=version)
        try:
            total: int = self._storage.top.modify(key, _existing(increment(key, delta)))
        except _Absent:
            raise KeyNotFoundError(f"Key {key!r} not found") from None
        return total

    def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        """The values of those ``keys`` that have live entries, in one batch."""
        made = {self.make_and_validate_key(key, version=version): key for key in keys}
        found = self._storage.get_many(made)
        return {made[key]: found[key] for key in made if key in found}

    def set_many(
        self, data: Mapping[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        """Store every item in one batch; returns the keys that failed: none (a failure
        raises)."""
        items = {self.make_and_validate_key(key, version=version): data[key] for key in data}
        ttl = self._ttl(timeout)
        if not items:
            return []
        if ttl == _EXPIRED:
            self._storage.delete_many(items)
            return []
        try:
            self._storage.set_many(items, ttl)
        except CodecError as exc:
            _reraise(exc)
        return []

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        """Remove those ``keys`` that have entries, in one batch."""
        made = [self.make_and_validate_key(key, version=version) for key in keys]
        if made:
            self._storage.delete_many(made)

    def clear(self) -> None:
        """Remove every entry of this storage, and only its entries (a Redis stack
        deletes the keys under its prefix, never ``FLUSHDB``)."""
        self._storage.clear()

    def close(self, **kwargs: Any) -> None:
        """Nothing to do: Django calls this at the end of every request, and the shared
        storage keeps its connections for the next one (as Django's Redis backend does)."""

    # --- the async API, GENERATED from the sync methods above by ---------------------
    # tools/generate_django_async.py (`make generate`): do not edit. Natively awaited on a
    # Redis stack (its AsyncStorage), else the sync method in a thread, as Django's own
    # backends do.

    async def aget(self, key: str, default: Any = None, version: int | None = None) -> Any:
        """``get``, awaited."""
        if self._async is None:
            return await _in_thread(self.get)(key, default, version)
        return await self._async.get(self.make_and_validate_key(key, version=version), default)

    async def aset(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """``set``, awaited."""
        if self._async is None:
            return await _in_thread(self.set)(key, value, timeout, version)
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        if ttl == _EXPIRED:
            await self._async.delete_many((key,))
            return
        try:
            await self._async.set(key, value, ttl)
        except CodecError as exc:
            _reraise(exc)

    async def aadd(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """``add``, awaited."""
        if self._async is None:
            return await _in_thread(self.add)(key, value, timeout, version)
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        if ttl == _EXPIRED:
            return not await self._async.contains(key)
        try:
            return await self._async.add(key, value, ttl)
        except CodecError as exc:
            _reraise(exc)

    async def atouch(
        self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """``touch``, awaited."""
        if self._async is None:
            return await _in_thread(self.touch)(key, timeout, version)
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        value = await self._async.get(key, _MISSING)
        if value is _MISSING:
            return False
        if ttl == _EXPIRED:
            await self._async.delete_many((key,))
        else:
            await self._async.set(key, value, ttl)
        return True

    async def adelete(self, key: str, version: int | None = None) -> bool:
        """``delete``, awaited."""
        if self._async is None:
            return await _in_thread(self.delete)(key, version)
        try:
            await self._async.delete(self.make_and_validate_key(key, version=version))
        except KeyError:
            return False
        return True

    async def ahas_key(self, key: str, version: int | None = None) -> bool:
        """``has_key``, awaited."""
        if self._async is None:
            return await _in_thread(self.has_key)(key, version)
        return await self._async.contains(self.make_and_validate_key(key, version=version))

    async def aincr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """``incr``, awaited."""
        if self._async is None:
            return await _in_thread(self.incr)(key, delta, version)
        key = self.make_and_validate_key(key, version=version)
        try:
            total: int = await (await self._top()).modify(key, _existing(increment(key, delta)))
        except _Absent:
            raise KeyNotFoundError(f"Key {key!r} not found") from None
        return total

    async def aget_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        """``get_many``, awaited."""
        if self._async is None:
            return await _in_thread(self.get_many)(keys, version)
        made = {self.make_and_validate_key(key, version=version): key for key in keys}
        found = await self._async.get_many(made)
        return {made[key]: found[key] for key in made if key in found}

    async def aset_many(
        self, data: Mapping[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        """``set_many``, awaited."""
        if self._async is None:
            return await _in_thread(self.set_many)(data, timeout, version)
        items = {self.make_and_validate_key(key, version=version): data[key] for key in data}
        ttl = self._ttl(timeout)
        if not items:
            return []
        if ttl == _EXPIRED:
            await self._async.delete_many(items)
            return []
        try:
            await self._async.set_many(items, ttl)
        except CodecError as exc:
            _reraise(exc)
        return []

    async def adelete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        """``delete_many``, awaited."""
        if self._async is None:
            return await _in_thread(self.delete_many)(keys, version)
        made = [self.make_and_validate_key(key, version=version) for key in keys]
        if made:
            await self._async.delete_many(made)

    async def aclear(self) -> None:
        """``clear``, awaited."""
        if self._async is None:
            return await _in_thread(self.clear)()
        await self._async.clear()

    # --- end of the generated async API ---

    # --- helpers ----------------------------------------------------------------------

    def _ttl(self, timeout: Any) -> float | None:
        """The stack's TTL for a Django timeout: None for none, ``_EXPIRED`` for 0 or less."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        return float(timeout) if timeout > 0 else _EXPIRED

    async def _top(self) -> AsyncLayer:
        """The top layer of the AsyncStorage, prepared (a limit reads its index first)."""
        assert self._async is not None
        return self._async.top if self._async._prepared else await self._async._ready()


def _in_thread(method: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """``method`` run by Django's sync-to-async (one thread, as Django's own backends)."""
    return sync_to_async(method, thread_sensitive=True)


def _existing(change: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``change`` for ``modify``, refusing a key with no live entry instead of creating it."""

    def changed(value: Any) -> Any:
        if value is ABSENT:
            raise _Absent
        return change(value)

    return changed


def _reraise(exc: CodecError) -> NoReturn:
    """Raise a codec's error, as an ``UnpicklableValueError`` when pickle refused the value."""
    if isinstance(exc.__cause__, pickle.PickleError):
        raise UnpicklableValueError(str(exc)) from exc
    raise exc


def _url(location: str, options: Mapping[str, Any]) -> str:
    """The storage URL of a LOCATION and its OPTIONS (MAX_ENTRIES as ``limit=``)."""
    if not isinstance(location, str) or not location:
        raise ConfigurationError(
            f"LOCATION of a PyStorageCache is a storage URL, e.g. sqlite:///var/cache/app.db, "
            f"not {location!r}"
        )
    extra = {}
    for name, value in options.items():
        if name == "CULL_FREQUENCY":
            continue  # the limit evicts one entry per entry over it: nothing to cull
        option = "limit" if name == "MAX_ENTRIES" else name
        extra[option] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    query = urlsplit(location).query
    url = location + ("&" if query else "?") + urlencode(extra) if extra else location
    parsed = parse(url)
    if parsed.ttl is not None:
        raise StorageProviderError(
            f"{parsed.shown!r}: a Django cache takes its timeouts from TIMEOUT and each "
            "call, not from ttl= (with it, timeout=None could not mean 'never expires')"
        )
    if parsed.codec is None:
        # memory:// keeps objects as they are: a value mutated after set() would change
        # in the cache. Pickled, as LocMemCache does, it comes back as it was written.
        url += ("&" if "?" in url else "?") + "codec=pickle"
    return url


class _Stores:
    """The storages of this process, one per URL, each with its async twin on Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: dict[str, tuple[Storage, AsyncStorage | None]] = {}
        renew_in_child(self, _Stores._renew)

    def _renew(self) -> None:
        self._lock = threading.Lock()

    def get(self, url: str) -> tuple[Storage, AsyncStorage | None]:
        """The storage of ``url`` (built on first use) and, for Redis, its async twin."""
        with self._lock:
            stores = self._stores.get(url)
            if stores is None:
                storage = parse(url).build()
                native = None
                if isinstance(storage.layers[-1], Redis):
                    from pystorage.aio.storage import AsyncStorage

                    native = AsyncStorage(storage)
                stores = self._stores[url] = (storage, native)
            return stores


_STORES = _Stores()

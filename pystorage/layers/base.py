"""The protocol every layer speaks, and the two kinds of layer.

A stack is a chain of ``Wrapper`` layers ending in one ``Backend``. Data goes
down on a write and up on a read, through each layer once. Every operation takes ``str``
keys; a missing key raises ``KeyError``.
"""

from __future__ import annotations

import secrets
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar

import attrs

from pystorage import _fork
from pystorage.errors import ConfigurationError, UnsupportedError
from pystorage.layers.protocol import Layer, ValueKind

__all__ = ["ABSENT", "MAX_TTL", "Backend", "Layer", "LockTable", "ValueKind", "Wrapper"]

if TYPE_CHECKING:  # asyncio is imported by the first async section, not by every program
    import asyncio

Slot = TypeVar("Slot")
AnyLock = TypeVar("AnyLock")


class _Absent:
    """The type of ``ABSENT``: one instance, private, so no stored value can be it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


#: What ``modify`` hands its ``change`` for a key with no live entry.
ABSENT: Final = _Absent()

#: The longest TTL a stack takes, in seconds: 100 years of 365.25 days. One bound for
#: every backend, checked before anything is written, so that a TTL one backend cannot
#: hold never passes the check and fails at each write: Redis takes milliseconds as a
#: signed 64-bit number added to its clock (``1e300`` seconds failed every write),
#: while Files, S3 and SQLite keep a float deadline that stays exact to the microsecond
#: this far out. A cache entry meant to outlive that has no TTL.
MAX_TTL: Final = 3_155_760_000


def new_token() -> str:
    """A token no other has: 128 random bits, for a tag (see ``Tags``) and for a lease's
    holder (random, so a forked child never repeats its parent's)."""
    return secrets.token_hex(16)


def checked_ttl(value: object, name: str = "ttl") -> float:
    """``value`` if it is a TTL every backend holds: a number of seconds above 0 and at
    most ``MAX_TTL``; else the one ``ConfigurationError`` that every check of a TTL
    raises (``Expiry(ttl)``, ``set(..., ttl=)``, presets, URLs)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TTL:
        raise ttl_error(name, value)
    return value


def ttl_error(name: str, value: object) -> ConfigurationError:
    """The error for a TTL (named ``name``) that is not ``checked_ttl``'s."""
    return ConfigurationError(
        f"{name} must be a finite number of seconds above 0 and at most {MAX_TTL} "
        f"(100 years), not {value!r}"
    )


class LockTable(Generic[Slot, AnyLock]):
    """Locks by slot, each kept while anyone holds or waits for it, then forgotten.

    A forked child starts with an empty table: it has none of the threads that held or
    waited for the parent's locks, which would otherwise stay held forever.
    """

    _mutex: threading.Lock
    _locks: dict[Slot, tuple[AnyLock, int]]

    def __init__(self) -> None:
        self._renew()
        _fork.renew_in_child(self, LockTable._renew)

    def _renew(self) -> None:
        self._mutex = threading.Lock()
        self._locks = {}

    def _borrow(self, slot: Slot, make: Callable[[], AnyLock]) -> AnyLock:
        """The lock of ``slot`` (made if none), counted as used until ``_give_back``."""
        with self._mutex:
            lock, users = self._locks.get(slot) or (make(), 0)
            self._locks[slot] = (lock, users + 1)
        return lock

    def _give_back(self, slot: Slot, lock: AnyLock) -> None:
        with self._mutex:
            held = self._locks.get(slot)
            if held is None or held[0] is not lock:
                return  # forgotten by a fork while this caller held it
            if held[1] == 1:
                del self._locks[slot]
            else:
                self._locks[slot] = (lock, held[1] - 1)


class _KeyLocks(LockTable[str, threading.Lock]):
    """One lock per key. Keys never share a lock: a memoized function that calls another
    one (or itself with other arguments) must not wait for a lock its own thread holds."""

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        lock = self._borrow(key, threading.Lock)
        try:
            with lock:
                yield
        finally:
            self._give_back(key, lock)

    def borrow(self, key: str) -> threading.Lock:
        """The lock of ``key``, for a caller that takes it itself (with a timeout); give
        it back with ``give_back`` once released, or if never taken."""
        return self._borrow(key, threading.Lock)

    def give_back(self, key: str, lock: threading.Lock) -> None:
        """Done with the lock ``borrow`` gave."""
        self._give_back(key, lock)


_KEY_LOCKS = _KeyLocks()


def key_locks() -> _KeyLocks:
    """The in-process lock per key of every backend (``Backend.key_lock``)."""
    return _KEY_LOCKS


class _Section(AbstractContextManager[bool], AbstractAsyncContextManager[bool]):
    """A backend's in-process exclusive section: for threads (``with``, re-entrant within
    a thread), and for the tasks of an event loop (``async with``, re-entrant within a
    task)."""

    def __init__(self) -> None:
        # A plain lock, with its holder noted for re-entry: an RLock would refuse to be
        # released by another thread than the one that took it, and an event loop's
        # pool of threads may enter a section in one thread and leave it in another.
        self._lock = threading.Lock()
        self._thread: int | None = None
        self._thread_depth = 0
        self._task_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._depth = 0

    def __enter__(self) -> bool:
        me = threading.get_ident()
        if self._thread != me:
            self._lock.acquire()
            self._thread = me
        self._thread_depth += 1
        return False  # no other process shares an in-process backend's section

    def __exit__(self, *details: object) -> None:
        self._thread_depth -= 1
        if self._thread_depth == 0:
            self._thread = None
            self._lock.release()

    async def __aenter__(self) -> bool:
        import asyncio  # loaded already: this coroutine runs in an event loop

        task = asyncio.current_task()
        if self._task is not task:
            loop = asyncio.get_running_loop()
            if self._task_lock is None or self._task_lock[0] is not loop:
                self._task_lock = (loop, asyncio.Lock())
            await self._task_lock[1].acquire()
            self._task = task
        self._depth += 1
        return False

    async def __aexit__(self, *details: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._task_lock is not None:
            self._task = None
            self._task_lock[1].release()


class _Sections:
    """The in-process exclusive section of each backend that has no other, made on first
    use, new in a forked child (a thread of the parent may have held it)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._made: weakref.WeakKeyDictionary[Any, tuple[int, _Section]] = (
            weakref.WeakKeyDictionary()
        )

    def of(self, owner: Any) -> _Section:
        with self._mutex:
            epoch, section = self._made.get(owner) or (-1, None)
            if section is None or epoch != _fork.epoch():
                section = _Section()
                self._made[owner] = (_fork.epoch(), section)
        return section


_SECTIONS = _Sections()


class Backend(Layer):
    """A terminal layer: it stores for real.

    It implements the core's ``get``, ``set``, ``delete``, ``contains`` and ``keys``;
    here are the defaults of the rest: the batch operations loop over single calls
    (backends whose engine does a batch in one round trip override them), the order of
    use is that of ``keys()``, the section and key locks are in-process. The ``atomic``
    capability has no default (a get then a set is not atomic): ``add`` and ``modify``
    raise ``UnsupportedError`` naming it until the backend implements them.
    """

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        return self.get(key), None

    def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        found = {}
        for key in keys:
            try:
                found[key] = self.get_with_ttl(key)
            except KeyError:
                pass
        return found

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key in keys:
            try:
                found[key] = self.get(key)
            except KeyError:
                pass
        return found

    def peek_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self.get_many(keys)

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        for key, value in items.items():
            self.set(key, value, ttl)

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.delete(key)
            except KeyError:
                pass

    def count(self) -> int:
        return len([key for key in self.keys()])

    def clear(self) -> None:
        self.delete_many([key for key in self.keys()])

    def close(self) -> None:
        pass

    def expire(self) -> int:
        return 0

    def touch(self, key: str) -> None:
        pass

    def keys_by_age(self) -> list[str]:
        return [key for key in self.keys()]

    def sizes_by_age(self) -> list[tuple[str, int]]:
        aged = self.keys_by_age()
        found = self.peek_many(aged)
        return [(key, len(found[key])) for key in aged if key in found]

    def read_note(self, name: str) -> bytes | None:
        return None  # no place for notes here: a policy begins afresh each process

    def write_note(self, name: str, note: bytes) -> None:
        pass

    def take_bound(self, measure: Literal["entries", "bytes"], bound: int, eviction: str) -> bool:
        return False

    def exclusive(self) -> AbstractContextManager[bool]:
        # One section at a time in this process (re-entrant: a CountLimit above a
        # SizeLimit nests them), so one thread's eviction never deletes what another
        # thread wrote meanwhile. Backends shared between processes override it.
        return _SECTIONS.of(self)

    def counters(self) -> dict[str, int]:
        return {}

    def key_lock(self, key: str) -> AbstractContextManager[Any]:
        return _KEY_LOCKS(key)

    def refuse_ttl(self, ttl: float | None) -> None:
        """Raise unless ``ttl`` is None: for backends with no native expiry."""
        if ttl is not None:
            raise UnsupportedError(
                f"{type(self).__name__} has no native expiry (the 'ttl' capability): put an "
                "Expiry layer above it to use a per-key ttl"
            )


# Layers validate their configuration when built; later assignments (runtime state such
# as counters) skip attrs' checks, which would otherwise cost more than an LRU hit.
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Wrapper(Layer):
    """A layer with an ``inner`` layer below it; by default it forwards everything down."""

    _inner: Layer = attrs.field(init=False, repr=False)

    @property
    def inner(self) -> Layer:
        """The layer below this one."""
        return self._inner

    def link(self, inner: Layer) -> None:
        """Attach the layer below. A layer belongs to one stack only."""
        if hasattr(self, "_inner"):
            raise ConfigurationError(f"{self!r} is already part of a stack; create a new one")
        self._inner = inner

    def get(self, key: str) -> Any:
        return self._inner.get(key)

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        return self._inner.get_with_ttl(key)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._inner.set(key, value, ttl)

    def delete(self, key: str) -> None:
        self._inner.delete(key)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        return self._inner.add(key, value, ttl)

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        return self._inner.modify(key, change, ttl)

    def contains(self, key: str) -> bool:
        return self._inner.contains(key)

    def keys(self) -> Iterator[str]:
        return self._inner.keys()

    def count(self) -> int:
        return self._inner.count()

    def clear(self) -> None:
        self._inner.clear()

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._inner.get_many(keys)

    def peek_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._inner.peek_many(keys)

    def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        return self._inner.get_many_with_ttl(keys)

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        self._inner.set_many(items, ttl)

    def delete_many(self, keys: Iterable[str]) -> None:
        self._inner.delete_many(keys)

    def close(self) -> None:
        self._inner.close()

    def expire(self) -> int:
        return self._inner.expire()

    def touch(self, key: str) -> None:
        self._inner.touch(key)

    def keys_by_age(self) -> list[str]:
        return self._inner.keys_by_age()

    def sizes_by_age(self) -> list[tuple[str, int]]:
        return self._inner.sizes_by_age()

    def read_note(self, name: str) -> bytes | None:
        return self._inner.read_note(name)

    def write_note(self, name: str, note: bytes) -> None:
        self._inner.write_note(name, note)

    def take_bound(self, measure: Literal["entries", "bytes"], bound: int, eviction: str) -> bool:
        return self._inner.take_bound(measure, bound, eviction)

    def leaves_stack(self) -> bool:
        """Whether this layer handed its work down when linked and stays out of the
        stack (a limit that the backend enforces itself)."""
        return False

    def exclusive(self) -> AbstractContextManager[bool]:
        return self._inner.exclusive()

    def counters(self) -> dict[str, int]:
        return self._inner.counters()

    def gauges(self) -> dict[str, int]:
        return self._inner.gauges()

    def tag_tokens(self, tags: Sequence[str], create: bool) -> dict[str, str]:
        return self._inner.tag_tokens(tags, create)

    def renew_tag(self, tag: str) -> None:
        self._inner.renew_tag(tag)

    def key_lock(self, key: str) -> AbstractContextManager[Any]:
        return self._inner.key_lock(key)

    def has_ttl(self) -> bool:
        return self.supports_ttl or self._inner.has_ttl()


def stack_from(layer: Layer) -> Iterator[Layer]:
    """``layer`` and every layer below it, down to the backend."""
    yield layer
    while isinstance(layer, Wrapper):
        layer = layer.inner
        yield layer

"""OffLoop: a sync backend awaited from asyncio, its blocking calls run in threads."""

from __future__ import annotations

import asyncio
import functools
import itertools
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, Literal, TypeVar

from pystorage import _fork
from pystorage.aio.layers import AsyncLayer
from pystorage.layers.base import Layer, ValueKind
from pystorage.layers.leases import Lease

T = TypeVar("T")
_CHUNK = 1000

#: Threads per backend: enough for the batch concurrency of S3 and parallel file reads,
#: few enough that a burst of tasks queues instead of starting hundreds of threads.
MAX_THREADS = 16


class OffLoop(AsyncLayer):
    """Awaitable operations over a sync backend.

    With ``threads=True`` (Files, SQLite, S3) each operation runs in a
    thread of a pool of this object's (at most ``MAX_THREADS``), so the event loop never
    waits for a disk or a socket; a task cancelled while its operation runs leaves the
    operation to finish in its thread, whole. With ``threads=False`` (Memory, LRU: no
    I/O, only a brief lock) operations run on the loop: a hop to a thread would cost more
    than the operation.
    """

    def __init__(self, backend: Layer, threads: bool) -> None:
        self.backend = backend
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        # Tasks of one process take the backend's exclusive section one at a time, waiting
        # on the loop: a task waiting in a thread would hold a thread that the holder of
        # the section may need for its own operations.
        self._exclusive: asyncio.Lock | None = None
        # The task in the section, and whether it was told of a change: a section it takes
        # inside it (a limit below another limit) is told the same.
        self._holder: asyncio.Task[Any] | None = None
        self._holder_changed = False
        _fork.renew_in_child(self, OffLoop._renew)

    def _renew(self) -> None:
        """In a forked child: the parent's threads are not there."""
        self._pool = None
        self._exclusive = None
        self._holder = None

    def __repr__(self) -> str:
        return f"OffLoop({self.backend!r})" if self.threads else repr(self.backend)

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        if not self.threads:
            return call(*args)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="pystorage")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(call, *args))

    # -- what the stack asks when it is assembled --------------------------------------

    @property
    def accepts(self) -> ValueKind:  # type: ignore[override]
        return self.backend.accepts

    @property
    def removes_entries(self) -> bool:  # type: ignore[override]
        return self.backend.removes_entries

    @property
    def clock(self) -> Callable[[], float]:
        """The backend's clock, for an ``Expiry(clock=...)`` above (AttributeError if
        the backend keeps none)."""
        return self.backend.clock  # type: ignore[attr-defined,no-any-return]

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        object.__setattr__(self.backend, "clock", clock)

    def has_ttl(self) -> bool:
        return self.backend.has_ttl()

    def take_bound(self, measure: Literal["entries", "bytes"], bound: int, eviction: str) -> bool:
        return self.backend.take_bound(measure, bound, eviction)

    @property
    def watch_evictions(self) -> Callable[[Callable[[list[str]], None]], None] | None:
        """The backend's, for a ``Tier`` above (None if it tells no evictions)."""
        return getattr(self.backend, "watch_evictions", None)

    def counters(self) -> dict[str, int]:
        return self.backend.counters()

    def gauges(self) -> dict[str, int]:
        return self.backend.gauges()

    def bound_per_process(self) -> str | None:
        """Why a limit above would be kept by each process apart (see ``Limit``)."""
        why = getattr(self.backend, "bound_per_process", None)
        return why() if why is not None else None

    def key_lock(self, key: str) -> AbstractAsyncContextManager[Any]:
        """The backend's lease (Files, SQLite, S3), its tries run off the loop; none
        where the backend's lock is of its process only: memoize's asyncio lock is the
        one in-process."""
        if not isinstance(self.backend.key_lock(key), Lease):
            return nullcontext()
        return Lease(_OffLoopLeasing(self), key)

    # -- the protocol ------------------------------------------------------------------

    async def get(self, key: str) -> Any:
        return await self._run(self.backend.get, key)

    async def lookup(self, key: str, default: Any = None) -> Any:
        return await self._run(self.backend.lookup, key, default)

    async def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        return await self._run(self.backend.get_with_ttl, key)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self._run(self.backend.set, key, value, ttl)

    async def delete(self, key: str) -> None:
        await self._run(self.backend.delete, key)

    async def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        return await self._run(self.backend.add, key, value, ttl)

    async def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        return await self._run(self.backend.modify, key, change, ttl)

    async def contains(self, key: str) -> bool:
        return await self._run(self.backend.contains, key)

    async def keys(self) -> AsyncIterator[str]:
        # A thousand keys per hop to a thread: a listing blocks (a folder, a bucket's
        # pages), and a whole one could be too large to hold at once.
        listing = await self._run(lambda: iter(self.backend.keys()))  # may list at once
        while chunk := await self._run(lambda: list(itertools.islice(listing, _CHUNK))):
            for key in chunk:
                yield key

    async def count(self) -> int:
        return await self._run(self.backend.count)

    async def clear(self) -> None:
        await self._run(self.backend.clear)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return await self._run(self.backend.get_many, list(keys))

    async def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        return await self._run(self.backend.get_many_with_ttl, list(keys))

    async def peek_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return await self._run(self.backend.peek_many, list(keys))

    async def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        await self._run(self.backend.set_many, dict(items), ttl)

    async def delete_many(self, keys: Iterable[str]) -> None:
        await self._run(self.backend.delete_many, list(keys))

    async def expire(self) -> int:
        return await self._run(self.backend.expire)

    async def touch(self, key: str) -> None:
        await self._run(self.backend.touch, key)

    async def keys_by_age(self) -> list[str]:
        return await self._run(self.backend.keys_by_age)

    async def sizes_by_age(self) -> list[tuple[str, int]]:
        return await self._run(self.backend.sizes_by_age)

    async def read_note(self, name: str) -> bytes | None:
        return await self._run(self.backend.read_note, name)

    async def write_note(self, name: str, note: bytes) -> None:
        await self._run(self.backend.write_note, name, note)

    async def tag_tokens(self, tags: Sequence[str], create: bool) -> dict[str, str]:
        return await self._run(self.backend.tag_tokens, list(tags), create)

    async def renew_tag(self, tag: str) -> None:
        await self._run(self.backend.renew_tag, tag)

    async def close(self) -> None:
        await self._run(self.backend.close)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def exclusive(self) -> AbstractAsyncContextManager[bool]:
        return self._exclusive_section()

    @asynccontextmanager
    async def _exclusive_section(self) -> AsyncIterator[bool]:
        task = asyncio.current_task()
        if task is not None and self._holder is task:  # already exclusive: not a deadlock
            yield self._holder_changed
            return
        if self._exclusive is None:
            self._exclusive = asyncio.Lock()
        async with self._exclusive:
            section = self.backend.exclusive()
            entering = asyncio.ensure_future(self._run(section.__enter__))
            try:
                # Shielded: a cancelled task must not leave a section its thread entered.
                changed = await asyncio.shield(entering)
            except asyncio.CancelledError:
                entering.add_done_callback(lambda done: _leave(self, section, done))
                raise
            self._holder, self._holder_changed = task, changed
            try:
                yield changed
            finally:
                self._holder = None
                details = sys.exc_info()
                await asyncio.shield(self._run(section.__exit__, *details))


class _OffLoopLeasing:
    """A sync backend's leases, awaited: each try and release in a thread of the pool."""

    def __init__(self, offloop: OffLoop) -> None:
        self._offloop = offloop
        self.lock_timeout: float = offloop.backend.lock_timeout  # type: ignore[attr-defined]

    async def take_lease(self, key: str, token: str, seconds: float) -> str:
        take = self._offloop.backend.take_lease  # type: ignore[attr-defined]
        return await self._offloop._run(take, key, token, seconds)

    async def end_lease(self, key: str, token: str) -> None:
        await self._offloop._run(self._offloop.backend.end_lease, key, token)  # type: ignore[attr-defined]


_LEAVING: set[asyncio.Future[Any]] = set()  # kept until done: a task no one holds may vanish


def _leave(backend: OffLoop, section: Any, entered: asyncio.Future[bool]) -> None:
    """Leave a section that a cancelled task's thread entered after all."""
    if not entered.cancelled() and entered.exception() is None:
        _LEAVING.add(
            leaving := asyncio.ensure_future(backend._run(section.__exit__, None, None, None))
        )
        leaving.add_done_callback(_LEAVING.discard)
